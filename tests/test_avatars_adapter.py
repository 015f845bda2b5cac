"""AvatarAdapter contract, atomic cache writes, bad inputs and the contact sheet."""

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from extract.datasets import avatars, get_adapter
from extract.datasets.avatars import (
    RenderSpec,
    ATTRIBUTES,
    AvatarAdapter,
    contact_sheet,
    render_dataset,
)
from extract.errors import UserError

N, SIZE = 40, 32


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp("cache") / "avatars.h5", spec=RenderSpec(n=N, size=SIZE, seed=2, preset="independent", signal_sample=4), workers=1, progress=False)


def test_metadata_contract(cache):
    adapter = get_adapter("avatars", cache)
    assert isinstance(adapter, AvatarAdapter) and len(adapter) == N
    meta = adapter.metadata()
    assert list(meta.columns) == ["image_id", "path", "split", *ATTRIBUTES]
    assert adapter.attributes == list(ATTRIBUTES)
    assert meta["image_id"].is_unique and meta["image_id"].iat[0] == "avatar_000000"
    assert (meta["path"] == meta["image_id"] + ".png").all()
    assert set(meta["split"]) <= {"train", "val", "test"}
    assert all(meta[c].dtype == np.int8 and set(meta[c]) <= {0, 1} for c in ATTRIBUTES)
    assert adapter.sensitive_attribute == "dark_skin" and adapter.targets == list(ATTRIBUTES[1:])
    assert set(adapter.signal_strength) == set(ATTRIBUTES)
    assert adapter.generator["preset"] == "independent" and adapter.image_shape == (SIZE, SIZE, 3)
    digest = adapter.manifest_hash()
    assert len(digest) == 64 and digest == AvatarAdapter(cache).manifest_hash()


def test_metadata_matches_plain_h5py(cache):
    meta = AvatarAdapter(cache).metadata()
    with h5py.File(cache, "r") as h5:
        np.testing.assert_array_equal(meta["blazer"].to_numpy(), h5["metadata/blazer"][()])
        assert meta["split"].tolist() == [s.decode() for s in h5["metadata/split"][()]]


def test_images_fast_path_and_open_image(cache):
    adapter = AvatarAdapter(cache)
    with h5py.File(cache, "r") as h5:
        reference = h5["images"][()]
    picked = adapter.read_images([5, 0, 5, N - 1])
    assert picked.shape == (4, SIZE, SIZE, 3) and picked.dtype == np.uint8
    np.testing.assert_array_equal(picked, reference[[5, 0, 5, N - 1]])
    np.testing.assert_array_equal(adapter.read_images(np.arange(3)), reference[:3])
    image = adapter.open_image(7)
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(image), reference[7])
    with pytest.raises(IndexError):
        adapter.open_image(N)


def test_layout_errors(tmp_path, cache):
    with pytest.raises(UserError, match="avatar cache"):
        AvatarAdapter(tmp_path / "missing.h5")
    with pytest.raises(UserError, match="not a file"):
        AvatarAdapter(tmp_path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match="HDF5"):
        AvatarAdapter(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["images"] = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(UserError, match="not a complete avatar cache"):
        AvatarAdapter(other)


def test_failed_render_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, cache):
    out = tmp_path / "avatars.h5"

    def broken(*args):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(avatars.cache, "toggle_changes", broken)  # fails after /images is written
    with pytest.raises(RuntimeError):
        render_dataset(out, spec=RenderSpec(n=8, size=SIZE, signal_sample=2), workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(cache.read_bytes())
    with pytest.raises(RuntimeError):
        render_dataset(out, spec=RenderSpec(n=8, size=SIZE, signal_sample=2), workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avatars.h5"]
    assert len(AvatarAdapter(out)) == N  # the previous cache is untouched


@pytest.mark.parametrize(
    "kwargs",
    [dict(n=0), dict(n=2.5), dict(size=31), dict(size=129), dict(preset="nope"), dict(seed=-1),
     dict(workers=0), dict(sensitive_rate=0.0), dict(signal_sample=0)],
)
def test_bad_inputs_raise_user_error(tmp_path, kwargs):
    options = dict(n=4, size=SIZE, signal_sample=1) | kwargs
    workers = options.pop("workers", 1)
    with pytest.raises(UserError):
        render_dataset(tmp_path / "x.h5", spec=RenderSpec(**options), workers=workers, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_raises_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError):
        render_dataset(blocker / "sub" / "x.h5", spec=RenderSpec(n=2, size=SIZE), workers=1, progress=False)
    with pytest.raises(UserError, match="folder"):
        render_dataset(tmp_path, spec=RenderSpec(n=2, size=SIZE), workers=1, progress=False)


def test_contact_sheet(cache, tmp_path):
    out = contact_sheet(cache, tmp_path / "sheets" / "sheet.png", n=10, columns=4, seed=1)
    with Image.open(out) as sheet:
        assert sheet.mode == "RGB"
        width, height = sheet.size
    assert width > 4 * 100 and height > 3 * 100  # 4 x 3 grid of enlarged tiles
    assert out.read_bytes() == contact_sheet(cache, tmp_path / "again.png", n=10, columns=4, seed=1).read_bytes()
    with pytest.raises(UserError):
        contact_sheet(tmp_path / "missing.h5", tmp_path / "s.png")


def test_metadata_is_a_dataframe_copy_safe(cache):
    adapter = AvatarAdapter(cache)
    assert isinstance(adapter.metadata(), pd.DataFrame)
    with pytest.raises(ValueError):
        adapter.read_images()[0, 0, 0, 0] = 1  # the cached array is read-only


def test_read_images_accepts_a_boolean_mask(cache):
    adapter = AvatarAdapter(cache)
    mask = (adapter.metadata()["split"] == "train").to_numpy()
    np.testing.assert_array_equal(adapter.read_images(mask), adapter.read_images(np.flatnonzero(mask)))


def test_malformed_attributes_are_a_layout_error(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5["images"] = np.zeros((1, 32, 32, 3), np.uint8)
        h5.create_group("metadata")
        h5.attrs["format"] = avatars.FORMAT
        h5.attrs["generator"] = "{not json"
    with pytest.raises(UserError, match="malformed"):
        AvatarAdapter(bad)
