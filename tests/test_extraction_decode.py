"""Device-side JPEG decoding (``decode="device"``) against the default host decoding, on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from analyze.cli import main
from extract.backbones import create_backbone
from extract.datasets.folder import ImageFolderAdapter
from extract.device_decode import DeviceDecoder, read_encoded
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore, partial_path

BATCH = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """21 photo-like JPEGs (several sizes, one grayscale, one named .png) and one PNG, in two class folders."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80]
    for i in range(22):
        folder = root / "ab"[i % 2]
        folder.mkdir(exist_ok=True)
        height, width = (48, 60) if i % 3 else (40 + i, 52 + 2 * i)  # groups of equal size, and odd ones
        smooth = np.stack([np.sin(xx / (5 + i % 4) + c) * np.cos(yy / (7 + c)) for c in range(3)], axis=-1)
        pixels = np.clip(127 + 100 * smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels[:height, :width])
        if i == 5:
            image.convert("L").save(folder / f"{i:02d}.jpg", quality=90)
        elif i == 7:
            image.save(folder / f"{i:02d}.png")  # decoded on the host, transparently
        elif i == 9:
            image.save(folder / f"{i:02d}.png", format="JPEG", quality=85)  # a JPEG whatever its name
        else:
            image.save(folder / f"{i:02d}.jpg", quality=90)
    return root


def _extract(root, out, **options):
    options = {"batch_size": BATCH, "device": "cpu", "num_workers": 0, "progress": False, **options}
    return extract_features(ImageFolderAdapter(root), create_backbone("smallcnn.scratch", image_size=32), out,
                            options=ExtractOptions(**options))


def test_device_decode_matches_host_decode(photos, tmp_path):
    host = FeatureStore.open(_extract(photos, tmp_path / "host.h5"))
    device = FeatureStore.open(_extract(photos, tmp_path / "device.h5", decode="device", num_workers=1))
    assert device.provenance["extraction"]["decode"] == "device"
    assert host.provenance["extraction"]["decode"] == "host"
    assert device.metadata.equals(host.metadata)  # ids, splits, attributes and row order
    device.check_same_rows(host)
    a, b = device.features.astype(np.float64), host.features.astype(np.float64)
    relative = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    assert relative.max() < 0.02, relative  # different JPEG decoders differ in the last bits at most


def test_read_encoded_sends_jpeg_bytes_and_decodes_others(photos):
    adapter = ImageFolderAdapter(photos)
    backbone = create_backbone("smallcnn.scratch", image_size=32)
    paths = [adapter.image_path(i).name for i in range(len(adapter))]
    batch = read_encoded(adapter, np.arange(len(adapter)), backbone.preprocess)
    assert [paths[i] for i in batch["host_rows"]] == ["07.png"]
    assert "09.png" in [paths[i] for i in batch["jpeg_rows"]]
    assert int(batch["lengths"].sum()) == batch["jpeg"].numel()
    images = DeviceDecoder(backbone.preprocess, torch.device("cpu"))(batch)
    assert images.shape == (len(adapter), 3, 32, 32) and images.dtype == torch.uint8


def test_corrupt_jpeg_is_one_sentence(photos, tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    good = (photos / "a" / "00.jpg").read_bytes()
    for i in range(3):
        (root / "a" / f"{i}.jpg").write_bytes(good)
    (root / "a" / "3.jpg").write_bytes(good[:40])  # a JPEG header, then nothing
    with pytest.raises(UserError, match=r"image file \S*3\.jpg is corrupt or not an image"):
        _extract(root, tmp_path / "out.h5", decode="device")
    assert not (tmp_path / "out.h5").exists()


def test_device_decode_refuses_in_memory_datasets_and_unknown_modes(avatar_cache, photos, tmp_path):
    from extract.datasets.avatars import AvatarAdapter

    with pytest.raises(UserError, match="holds decoded images in memory.*use `decode='host'`"):
        extract_features(AvatarAdapter(avatar_cache), create_backbone("smallcnn.scratch", image_size=32), tmp_path / "a.h5", options=ExtractOptions(device="cpu", decode="device", progress=False))
    with pytest.raises(UserError, match="`decode` 'gpu' is not a decode mode"):
        _extract(photos, tmp_path / "b.h5", decode="gpu")
    assert not partial_path(tmp_path / "a.h5").exists() and not partial_path(tmp_path / "b.h5").exists()


def test_cli_decode_option(photos, tmp_path, capsys):
    argv = ["extract", "--dataset", "folder", "--root", str(photos), "--backbone", "smallcnn.scratch",
            "--image-size", "32", "--batch-size", str(BATCH), "--device", "cpu", "--workers", "0",
            "--out", str(tmp_path / "cli.h5"), "--decode", "device"]
    assert main(argv) == 0
    assert FeatureStore.open(tmp_path / "cli.h5").provenance["extraction"]["decode"] == "device"
