"""Generic CSV manifest adapter and the split helpers the real-data adapters share."""

import numpy as np
import pytest

from extract.datasets import get_adapter
from extract.datasets.manifest import (
    ManifestAdapter,
    carve_validation,
    column_name,
    seeded_split,
)
from extract.errors import UserError
from tests.fake_trees import write_csv, write_image


@pytest.fixture
def tree(tmp_path):
    for k, rel in enumerate(["imgs/a.png", "imgs/b.jpg", "imgs/sub/c.png", "d.png"]):
        write_image(tmp_path / rel, seed=k)
    return tmp_path


def write_manifest(root, header, rows, name="manifest.csv"):
    return write_csv(root / name, header, rows)


def test_full_manifest(tree):
    write_manifest(tree, ["path", "image_id", "split", "smiling", "hat"], [
        ["imgs/a.png", "007", "train", 1, 0], ["imgs/b.jpg", "008", "Val", 0, -1],
        ["imgs/sub/c.png", "009", "test", 1, 1], ["d.png", "010", "train", 0, 0]])
    meta = get_adapter("manifest", tree).metadata()
    assert meta.columns.tolist() == ["image_id", "path", "split", "smiling", "hat"]
    assert meta["image_id"].tolist() == ["007", "008", "009", "010"]  # ids stay text
    assert meta["split"].tolist() == ["train", "val", "test", "train"]
    np.testing.assert_array_equal(meta["hat"], [0, -1, 1, 0])
    assert meta["hat"].dtype == np.int8
    assert ManifestAdapter(tree).open_image(2).size == (8, 8)


def test_defaults_image_id_and_seeded_split(tree):
    rows = [[f"imgs/{k}.png", k % 2] for k in range(50)]
    write_manifest(tree, ["path", "label"], rows, name="labels.csv")
    meta = ManifestAdapter(tree, manifest="labels.csv", seed=4).metadata()
    assert meta["image_id"].tolist() == meta["path"].tolist()
    assert meta["split"].value_counts().to_dict() == {"train": 30, "val": 10, "test": 10}
    again = ManifestAdapter(tree, manifest=tree / "labels.csv", seed=4)  # absolute manifest path
    assert again.metadata()["split"].tolist() == meta["split"].tolist()
    other = ManifestAdapter(tree, manifest="labels.csv", seed=5).metadata()
    assert other["split"].tolist() != meta["split"].tolist()
    custom = ManifestAdapter(tree, manifest="labels.csv", split_fractions=(0.5, 0.0, 0.5)).metadata()
    assert custom["split"].value_counts().to_dict() == {"train": 25, "test": 25}


@pytest.mark.parametrize("bad_path", ["../x.png", "imgs/../../x.png", "/etc/passwd"])
def test_paths_escaping_root_rejected(tree, bad_path):
    write_manifest(tree, ["path", "label"], [["imgs/a.png", 1], [bad_path, 0]])
    with pytest.raises(UserError, match="escapes the dataset root"):
        ManifestAdapter(tree).metadata()


@pytest.mark.parametrize("values", [[0, 2], [-1, 1, 0.5], [1, ""], ["yes", "no"]])
def test_non_binary_column_rejected(tree, values):
    rows = [[f"imgs/{k}.png", v] for k, v in enumerate(values)]
    write_manifest(tree, ["path", "label"], rows)
    with pytest.raises(UserError, match="'label' of manifest is not binary"):
        ManifestAdapter(tree).metadata()


def test_layout_errors(tree, tmp_path):
    with pytest.raises(UserError, match="manifest.csv is missing; the manifest adapter expects .*'path' column"):
        ManifestAdapter(tree).metadata()
    write_manifest(tree, ["file", "label"], [["imgs/a.png", 1]])
    with pytest.raises(UserError, match=r"lacks the column\(s\) \['path'\]"):
        ManifestAdapter(tree).metadata()
    (tree / "manifest.csv").write_bytes(b"path,label\n\"imgs/a.png,1\n\xff\xfe")
    with pytest.raises(UserError, match="cannot be parsed as a table"):
        ManifestAdapter(tree).metadata()
    write_manifest(tree, ["path", "split"], [["imgs/a.png", "holdout"]])
    with pytest.raises(UserError, match="unknown split"):
        ManifestAdapter(tree).metadata()
    write_manifest(tree, ["path", "image_id"], [["imgs/a.png", "x"], ["imgs/b.jpg", "x"]])
    with pytest.raises(UserError, match="repeats image_id"):
        ManifestAdapter(tree).metadata()
    with pytest.raises(UserError, match="split_fractions"):
        ManifestAdapter(tree, split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(UserError, match="does not exist"):
        ManifestAdapter(tmp_path / "absent")


def test_open_image_missing_or_corrupt(tree):
    (tree / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_manifest(tree, ["path", "label"], [["imgs/gone.png", 1], ["imgs/broken.png", 0]])
    adapter = ManifestAdapter(tree)
    with pytest.raises(UserError, match="gone.png is missing"):
        adapter.open_image(0)
    with pytest.raises(UserError, match="broken.png is corrupt"):
        adapter.open_image(1)


def test_manifest_hash_stable_and_sensitive(tree):
    rows = [["imgs/a.png", 1, "train"], ["imgs/b.jpg", 0, "test"]]
    write_manifest(tree, ["path", "label", "split"], rows)
    first, second = ManifestAdapter(tree).manifest_hash(), ManifestAdapter(tree).manifest_hash()
    assert first == second and len(first) == 64
    write_manifest(tree, ["path", "label", "split"], [["imgs/a.png", 1, "train"], ["imgs/b.jpg", 1, "test"]])
    assert ManifestAdapter(tree).manifest_hash() != first
    write_manifest(tree, ["path", "label", "split"], [["imgs/a.png", 1, "train"], ["imgs/b.jpg", 0, "val"]])
    assert ManifestAdapter(tree).manifest_hash() != first


def test_seeded_split_stratified_sizes():
    strata = np.array(["a"] * 10 + ["b"] * 20)
    split = seeded_split(30, fractions=(0.6, 0.2, 0.2), seed=0, strata=strata)
    for group, n in [("a", 10), ("b", 20)]:
        part = split[strata == group]
        assert (part == "val").sum() == round(0.2 * n) and (part == "test").sum() == round(0.2 * n)
    np.testing.assert_array_equal(split, seeded_split(30, seed=0, strata=strata))


def test_carve_validation_only_touches_train():
    split = np.array(["train"] * 20 + ["test"] * 5, dtype=object)
    carved = carve_validation(split, val_fraction=0.25, seed=0)
    assert (carved[:20] == "val").sum() == 5 and (carved[20:] == "test").all()
    assert (split == "train").sum() == 20  # the input is not modified
    np.testing.assert_array_equal(carve_validation(split, val_fraction=0, seed=0), split)


def test_column_name():
    assert column_name("dining table") == "dining_table"
    assert column_name("Latino_Hispanic") == "Latino_Hispanic"
    assert column_name(" East  Asian ") == "East_Asian"
