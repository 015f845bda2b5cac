"""Extraction: bad input gives one sentence; the fast path matches the per-image path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from extract.backbones import create_backbone
from extract.datasets.base import Adapter
from extract.devices import resolve_device
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features, prepare_uint8
from extract.store.reader import FeatureStore, partial_path

N_IMAGES = 12


class FolderAdapter(Adapter):
    """``0.png`` ... ``{n-1}.png`` under ``root``, read by the base class's ``open_image``."""

    name = "folder-test"

    def __init__(self, root, n=N_IMAGES):
        super().__init__(root)
        self.n = n

    def _build_metadata(self) -> pd.DataFrame:
        return pd.DataFrame({"image_id": [f"im{i}" for i in range(self.n)], "path": [f"{i}.png" for i in range(self.n)],
                             "split": ["train"] * self.n, "odd": (np.arange(self.n) % 2).astype(np.int8)})


class InMemoryAdapter(FolderAdapter):
    """The same images through the ``read_images`` fast path (as the avatar adapter has)."""

    def read_images(self, indices):
        return np.stack([np.asarray(Image.open(self.root / f"{i}.png").convert("RGB")) for i in indices])


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def _run(adapter, out, backbone=None, **options):
    backbone = backbone or create_backbone("smallcnn.scratch", image_size=32)
    options = {"batch_size": 5, "device": "cpu", "num_workers": 0, "progress": False, **options}
    return extract_features(adapter, backbone, out, options=ExtractOptions(**options))


def test_store_matches_the_adapter_and_the_fast_path_matches_per_image(folder, tmp_path):
    per_image = FeatureStore.open(_run(FolderAdapter(folder), tmp_path / "a.h5"))
    fast = FeatureStore.open(_run(InMemoryAdapter(folder), tmp_path / "b.h5"))
    np.testing.assert_array_equal(per_image.features, fast.features)
    assert np.abs(per_image.features.astype(np.float32)).sum() > 0
    meta = FolderAdapter(folder).metadata()
    assert list(per_image.metadata["image_id"]) == list(meta["image_id"])
    np.testing.assert_array_equal(per_image.metadata["odd"], meta["odd"])
    assert per_image.provenance["manifest_hash"] == FolderAdapter(folder).manifest_hash()
    per_image.check_same_rows(fast)


def test_features_match_a_direct_forward_pass(folder, tmp_path):
    backbone = create_backbone("smallcnn.scratch", image_size=32)
    store = FeatureStore.open(_run(FolderAdapter(folder), tmp_path / "a.h5", backbone=backbone))
    image = torch.from_numpy(np.asarray(Image.open(folder / "3.png").convert("RGB")).copy()).permute(2, 0, 1)
    x = (prepare_uint8(image, backbone.preprocess).float()[None] / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = backbone.model(x)[0].numpy()
    np.testing.assert_allclose(store.features[3].astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_unwritable_output_is_refused_before_any_work(folder, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write to the output folder"):
        _run(FolderAdapter(folder), blocker / "out.h5")
    with pytest.raises(UserError, match="is a folder"):
        _run(FolderAdapter(folder), tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_refused(folder, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="cannot write to the output folder"):
        _run(FolderAdapter(folder), locked / "out.h5")


def test_empty_dataset(folder, tmp_path):
    with pytest.raises(UserError, match="has no images"):
        _run(FolderAdapter(folder, n=0), tmp_path / "out.h5")
    assert not partial_path(tmp_path / "out.h5").exists()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_corrupt_and_missing_images_surface_as_one_sentence(folder, tmp_path, num_workers):
    (folder / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UserError) as info:
        _run(FolderAdapter(folder), tmp_path / "out.h5", num_workers=num_workers)
    message = str(info.value)
    assert "7.png is corrupt" in message and "\n" not in message and "Traceback" not in message
    (folder / "7.png").unlink()
    with pytest.raises(UserError, match="7.png is missing"):
        _run(FolderAdapter(folder), tmp_path / "out.h5", num_workers=num_workers)
    # the rows before the bad batch are kept for a resume once the image is fixed
    assert partial_path(tmp_path / "out.h5").exists()


class NaNAfter(nn.Module):
    """Wraps a model and poisons the features of one global row."""

    def __init__(self, inner, row):
        super().__init__()
        self.inner, self.row, self.seen = inner, row, 0

    def forward(self, x):
        out = self.inner(x).clone()
        if self.seen <= self.row < self.seen + len(out):
            out[self.row - self.seen, 0] = float("nan")
        self.seen += len(out)
        return out


def test_nan_features_are_refused(folder, tmp_path):
    backbone = create_backbone("smallcnn.scratch", image_size=32)
    backbone.model = NaNAfter(backbone.model, row=6)
    with pytest.raises(UserError, match="NaN or infinite features for image 'im6' \\(row 6"):
        _run(FolderAdapter(folder), tmp_path / "out.h5", backbone=backbone)
    assert not (tmp_path / "out.h5").exists()


def test_bad_options(folder, tmp_path):
    with pytest.raises(UserError, match="`batch_size` 0 is invalid"):
        _run(FolderAdapter(folder), tmp_path / "out.h5", batch_size=0)
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert isinstance(Path(_run(FolderAdapter(folder), tmp_path / "ok.h5")), Path)
