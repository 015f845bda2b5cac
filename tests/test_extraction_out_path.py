"""``extract --out``: a trailing slash names a folder, and a file the toolkit did not write is never replaced."""

from __future__ import annotations

import shutil

import pytest

from analyze.cli import main
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STORE_NAME = "avatars__smallcnn.scratch.h5"


def _argv(cache, out, *extra):
    return ["extract", "--dataset", "avatars", "--root", str(cache), "--backbone", "smallcnn.scratch",
            "--image-size", "32", "--device", "cpu", "--workers", "0", "--out", out, *extra]


@pytest.mark.parametrize("exists", [False, True], ids=["new-folder", "existing-folder"])
def test_trailing_slash_puts_the_store_in_the_folder(avatar_cache, tmp_path, capsys, exists):
    folder = tmp_path / "stores"
    if exists:
        folder.mkdir()
    assert main(_argv(avatar_cache, str(folder) + "/")) == 0
    assert folder.is_dir(), "a trailing slash must name a folder, not a store file"
    assert sorted(p.name for p in folder.iterdir()) == [STORE_NAME]
    assert capsys.readouterr().out.strip() == f"wrote {folder / STORE_NAME}"
    assert FeatureStore.open(folder / STORE_NAME).n_rows == 600
    # a rerun finds the same store and keeps it
    assert main(_argv(avatar_cache, str(folder) + "/")) == 0
    assert capsys.readouterr().out.startswith(f"kept {folder / STORE_NAME}")


def test_trailing_slash_from_python(avatar_cache, tmp_path):
    backbone = create_backbone("smallcnn.scratch", image_size=32)
    path = extract_features(AvatarAdapter(avatar_cache), backbone, f"{tmp_path / 'py'}/", options=ExtractOptions(device="cpu", num_workers=0, progress=False))
    assert path == tmp_path / "py" / STORE_NAME and path.is_file()


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_an_unrelated_file_is_never_replaced(avatar_cache, tmp_path, capsys, overwrite):
    existing = tmp_path / "existing.txt"
    existing.write_text("my notes\n")
    argv = _argv(avatar_cache, str(existing), *(["--overwrite"] if overwrite else []))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"biastransfer extract: error: {existing} exists and is not a feature store (it is not an HDF5 "
                   "file), and extract never replaces a file it did not write; choose another --out.")
    assert "delete" not in err
    assert existing.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]  # no partial store either


def test_an_avatar_cache_is_not_replaced_by_a_store(avatar_cache, tmp_path, capsys):
    cache = tmp_path / "cache.h5"
    shutil.copyfile(avatar_cache, cache)
    before = cache.read_bytes()
    assert main(_argv(avatar_cache, str(cache), "--overwrite")) == 2
    err = capsys.readouterr().err.strip()
    assert "is an HDF5 file but not a feature store" in err and err.endswith("choose another --out.")
    assert "delete" not in err
    assert cache.read_bytes() == before
    with pytest.raises(UserError, match="not a feature store"):  # the Python API refuses it too
        extract_features(AvatarAdapter(avatar_cache), create_backbone("smallcnn.scratch", image_size=32), cache, options=ExtractOptions(device="cpu", num_workers=0, progress=False, overwrite=True))
