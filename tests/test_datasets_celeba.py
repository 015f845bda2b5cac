"""CelebA adapter on fake trees in the official file format."""

import numpy as np
import pytest

from extract.datasets import get_adapter
from extract.datasets.celeba import CelebAAdapter
from extract.errors import UserError
from tests.fake_trees import CELEBA_ATTRIBUTES, make_celeba


@pytest.fixture
def celeba(tmp_path):
    return tmp_path, make_celeba(tmp_path, n=7)


def test_columns_dtypes_and_minus_one_mapping(celeba):
    root, truth = celeba
    meta = get_adapter("celeba", root).metadata()
    assert list(meta.columns) == ["image_id", "path", "split", *CELEBA_ATTRIBUTES]
    assert meta["image_id"].tolist() == truth["files"]
    assert meta["path"].tolist() == [f"img_align_celeba/{f}" for f in truth["files"]]
    for k, name in enumerate(CELEBA_ATTRIBUTES):
        assert meta[name].dtype == np.int8
        expected = np.where(truth["attributes"][:, k] == 1, 1, 0)
        np.testing.assert_array_equal(meta[name].to_numpy(), expected)
    # the fixture must exercise both values, or the mapping test could not fail
    assert set(np.unique(truth["attributes"])) == {-1, 1}


def test_official_partitions_become_splits(celeba):
    root, truth = celeba
    meta = CelebAAdapter(root).metadata()
    expected = np.array(["train", "val", "test"])[truth["partitions"]]
    np.testing.assert_array_equal(meta["split"].to_numpy(dtype=str), expected)


def test_partition_file_in_another_order_is_aligned_by_name(celeba):
    root, truth = celeba
    lines = (root / "list_eval_partition.txt").read_text().splitlines()
    (root / "list_eval_partition.txt").write_text("\n".join(reversed(lines)) + "\n")
    meta = CelebAAdapter(root).metadata()
    assert meta["image_id"].tolist() == truth["files"]  # row order follows the attribute file
    expected = np.array(["train", "val", "test"])[truth["partitions"]]
    np.testing.assert_array_equal(meta["split"].to_numpy(dtype=str), expected)


def test_attribute_subset(celeba):
    root, _ = celeba
    adapter = CelebAAdapter(root, attributes=["Male", "Bangs"])
    assert adapter.attributes == ["Male", "Bangs"]
    with pytest.raises(UserError, match="Smiling"):
        CelebAAdapter(root, attributes=["Smiling"]).metadata()


def test_open_image_and_hash(celeba):
    root, _ = celeba
    a, b = CelebAAdapter(root), CelebAAdapter(root)
    assert a.open_image(2).size == (8, 8) and a.open_image(2).mode == "RGB"
    assert a.manifest_hash() == b.manifest_hash()


def test_label_change_changes_hash(celeba):
    root, _ = celeba
    before = CelebAAdapter(root).manifest_hash()
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    fields = lines[2].split()
    fields[1] = "1" if fields[1] == "-1" else "-1"
    lines[2] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    assert CelebAAdapter(root).manifest_hash() != before


def test_missing_root_lists_layout(tmp_path):
    with pytest.raises(UserError, match="list_attr_celeba.txt.*list_eval_partition.txt.*img_align_celeba"):
        CelebAAdapter(tmp_path / "nowhere")


@pytest.mark.parametrize("missing", ["list_attr_celeba.txt", "list_eval_partition.txt"])
def test_missing_file(celeba, missing):
    root, _ = celeba
    (root / missing).unlink()
    with pytest.raises(UserError, match=f"{missing} is missing.*expects"):
        CelebAAdapter(root).metadata()


def test_missing_image_folder(tmp_path):
    make_celeba(tmp_path, images=False)
    (tmp_path / "img_align_celeba").rmdir()
    with pytest.raises(UserError, match="img_align_celeba is missing"):
        CelebAAdapter(tmp_path).metadata()


@pytest.mark.parametrize("edit, message", [
    (lambda lines: ["seven", *lines[1:]], "image count"),
    (lambda lines: [lines[0], "Male Male", *lines[2:]], "distinct attribute names"),
    (lambda lines: ["99", *lines[1:]], "announces 99 images"),
    (lambda lines: [*lines[:2], lines[2].replace("-1", "0", 1).replace(" 1", " 0", 1), *lines[3:]], "other than -1"),
    (lambda lines: [*lines[:2], lines[2].rsplit(" ", 1)[0], *lines[3:]], "wrong length"),
])
def test_malformed_attribute_file(celeba, edit, message):
    root, _ = celeba
    path = root / "list_attr_celeba.txt"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(UserError, match=message):
        CelebAAdapter(root).metadata()


def test_mismatched_file_lists(celeba):
    root, _ = celeba
    path = root / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000003.jpg", "999999.jpg"))
    with pytest.raises(UserError, match="list different images"):
        CelebAAdapter(root).metadata()
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(UserError, match="list different images"):
        CelebAAdapter(root).metadata()


def test_bad_partition_value(celeba):
    root, _ = celeba
    path = root / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000001.jpg 0", "000001.jpg 3"))
    with pytest.raises(UserError, match="partition values"):
        CelebAAdapter(root).metadata()


def test_missing_and_corrupt_images(celeba):
    root, truth = celeba
    (root / "img_align_celeba" / truth["files"][0]).unlink()
    (root / "img_align_celeba" / truth["files"][1]).write_bytes(b"not a jpeg")
    adapter = CelebAAdapter(root)
    with pytest.raises(UserError, match="is missing"):
        adapter.open_image(0)
    with pytest.raises(UserError, match="corrupt"):
        adapter.open_image(1)
