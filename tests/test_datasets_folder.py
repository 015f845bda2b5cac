"""Image-folder adapter: class folders -> one-hot columns, deterministic order, seeded split."""

import numpy as np
import pytest

from extract.datasets import get_adapter
from extract.datasets.folder import ImageFolderAdapter
from extract.errors import UserError
from tests.fake_trees import make_folder, write_image


@pytest.fixture
def folder(tmp_path):
    make_folder(tmp_path, {"dog": 10, "cat": 5, "golden retriever": 20})
    return tmp_path


def test_one_hot_columns_in_sorted_order(folder):
    write_image(folder / "cat" / "extra.JPEG")            # extension matched case-insensitively
    (folder / "cat" / "notes.txt").write_text("skip me")   # not an image
    (folder / ".cache").mkdir()                            # hidden folder, not a class
    write_image(folder / ".cache" / "x.png")
    meta = get_adapter("folder", folder).metadata()
    assert meta.columns.tolist() == ["image_id", "path", "split", "cat", "dog", "golden_retriever"]
    assert meta["path"].tolist() == sorted(meta["path"].tolist())
    assert meta["path"].iat[0] == "cat/000.png" and meta["path"].iat[5] == "cat/extra.JPEG"
    assert meta["image_id"].tolist() == meta["path"].tolist()
    one_hot = meta[["cat", "dog", "golden_retriever"]].to_numpy()
    assert (one_hot.sum(axis=1) == 1).all() and one_hot.dtype == np.int8
    np.testing.assert_array_equal(one_hot.sum(axis=0), [6, 10, 20])
    expected_class = meta["path"].str.split("/").str[0].map({"cat": 0, "dog": 1, "golden retriever": 2})
    np.testing.assert_array_equal(one_hot.argmax(axis=1), expected_class)


def test_seeded_split_is_stratified_and_reproducible(folder):
    meta = ImageFolderAdapter(folder, seed=1).metadata()
    counts = meta.groupby(meta["path"].str.split("/").str[0])["split"].value_counts().unstack()
    assert counts.loc["golden retriever"].to_dict() == {"test": 4, "train": 12, "val": 4}
    assert counts.loc["cat"].to_dict() == {"test": 1, "train": 3, "val": 1}
    assert meta["split"].tolist() == ImageFolderAdapter(folder, seed=1).metadata()["split"].tolist()
    assert meta["split"].tolist() != ImageFolderAdapter(folder, seed=2).metadata()["split"].tolist()


def test_split_folders(tmp_path):
    make_folder(tmp_path / "train", {"a": 3, "b": 2})
    make_folder(tmp_path / "test", {"a": 1, "c": 1})
    meta = ImageFolderAdapter(tmp_path, split_folders=True).metadata()
    assert meta["path"].tolist() == ["train/a/000.png", "train/a/001.png", "train/a/002.png",
                                     "train/b/000.png", "train/b/001.png", "test/a/000.png", "test/c/000.png"]
    assert meta["split"].tolist() == ["train"] * 5 + ["test"] * 2
    np.testing.assert_array_equal(meta["c"], [0, 0, 0, 0, 0, 0, 1])
    assert ImageFolderAdapter(tmp_path, split_folders=True).open_image(6).size == (8, 8)


def test_hash_stable_and_tracks_labels(folder):
    a = ImageFolderAdapter(folder)
    assert a.manifest_hash() == ImageFolderAdapter(folder).manifest_hash()
    (folder / "dog" / "000.png").rename(folder / "cat" / "moved.png")
    assert ImageFolderAdapter(folder).manifest_hash() != a.manifest_hash()


def test_layout_errors(tmp_path):
    with pytest.raises(UserError, match="one sub-folder per class"):
        ImageFolderAdapter(tmp_path / "absent")
    write_image(tmp_path / "loose.png")  # images directly in the root are not in a class folder
    with pytest.raises(UserError, match="no .png/.jpg/.jpeg image was found.*expects <root>/<class>"):
        ImageFolderAdapter(tmp_path).metadata()
    with pytest.raises(UserError, match="no train/val/test folder"):
        ImageFolderAdapter(tmp_path, split_folders=True).metadata()
    write_image(tmp_path / "a b" / "1.png")
    write_image(tmp_path / "a-b" / "1.png")
    with pytest.raises(UserError, match="clash"):
        ImageFolderAdapter(tmp_path).metadata()


def test_corrupt_image(folder):
    (folder / "dog" / "003.png").write_bytes(b"junk")
    adapter = ImageFolderAdapter(folder)
    row = adapter.metadata()["path"].tolist().index("dog/003.png")
    with pytest.raises(UserError, match="corrupt"):
        adapter.open_image(row)
