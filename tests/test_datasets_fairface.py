"""FairFace adapter on fake label CSVs in the released format."""

import numpy as np
import pytest

from extract.datasets import get_adapter
from extract.datasets.fairface import FairFaceAdapter, parse_age_bin
from extract.errors import UserError
from tests.fake_trees import make_fairface

TRAIN = [
    ["train/1.jpg", "50-59", "Male", "East Asian", "True"],
    ["train/2.jpg", "more than 70", "Female", "White", "False"],
    ["train/3.jpg", "20-29", "Female", "Latino_Hispanic", "True"],
    ["train/4.jpg", "3-9", "Male", "Black", "False"],
    ["train/5.jpg", "40-49", "Male", "White", "True"],
]
VAL = [
    ["val/1.jpg", "0-2", "Female", "Middle Eastern", "True"],
    ["val/2.jpg", "30-39", "Male", "White", "False"],
]


@pytest.fixture
def fairface(tmp_path):
    make_fairface(tmp_path, TRAIN, VAL)
    return tmp_path


def test_columns_and_values(fairface):
    meta = get_adapter("fairface", fairface, val_fraction=0).metadata()
    assert meta.columns.tolist() == [
        "image_id", "path", "split", "male",
        "race_Black", "race_East_Asian", "race_Latino_Hispanic", "race_Middle_Eastern", "race_White",
        "age_0_2", "age_3_9", "age_20_29", "age_30_39", "age_40_49", "age_50_59", "age_70_plus", "age_40_plus",
    ]
    rows = TRAIN + VAL
    assert meta["path"].tolist() == meta["image_id"].tolist() == [r[0] for r in rows]
    assert meta["split"].tolist() == ["train"] * 5 + ["test"] * 2
    np.testing.assert_array_equal(meta["male"], [r[2] == "Male" for r in rows])
    np.testing.assert_array_equal(meta["race_White"], [r[3] == "White" for r in rows])
    np.testing.assert_array_equal(meta["race_East_Asian"], [r[3] == "East Asian" for r in rows])
    np.testing.assert_array_equal(meta["age_70_plus"], [r[1] == "more than 70" for r in rows])
    np.testing.assert_array_equal(meta["age_40_plus"], [1, 1, 0, 0, 1, 0, 0])
    race = meta.filter(like="race_").to_numpy()
    age = meta.filter(regex=r"^age_\d+_(\d+|plus)$").drop(columns="age_40_plus").to_numpy()
    assert (race.sum(axis=1) == 1).all() and (age.sum(axis=1) == 1).all()  # one-hot
    assert all(meta[c].dtype == np.int8 for c in meta.columns[3:])


def test_missing_labels_are_unknown(tmp_path):
    make_fairface(tmp_path, TRAIN + [["train/6.jpg", "", "", "", ""]], VAL)
    meta = FairFaceAdapter(tmp_path, val_fraction=0).metadata()
    last = meta[meta["image_id"] == "train/6.jpg"].iloc[0]
    assert (last.iloc[3:] == -1).all()


def test_age_threshold(fairface):
    meta = FairFaceAdapter(fairface, age_threshold=20).metadata()
    np.testing.assert_array_equal(meta["age_20_plus"], [1, 1, 1, 0, 1, 0, 1])
    assert "age_40_plus" not in meta.columns
    assert not any(c.endswith("_plus") and c != "age_70_plus" for c in FairFaceAdapter(fairface, age_threshold=None).attributes)
    with pytest.raises(UserError, match="falls inside the age bin"):
        FairFaceAdapter(fairface, age_threshold=45).metadata()


def test_parse_age_bin():
    assert parse_age_bin("10-19") == (10, 19)
    assert parse_age_bin("more than 70") == (70, None)
    with pytest.raises(ValueError):
        parse_age_bin("old")


def test_val_carve_out_is_seeded(fairface):
    split = FairFaceAdapter(fairface, val_fraction=0.4, seed=3).metadata()["split"].tolist()
    assert split[:5].count("val") == 2 and split[5:] == ["test", "test"]
    assert split == FairFaceAdapter(fairface, val_fraction=0.4, seed=3).metadata()["split"].tolist()


def test_hash_and_images(fairface):
    a, b = FairFaceAdapter(fairface), FairFaceAdapter(fairface)
    assert a.manifest_hash() == b.manifest_hash()
    assert a.open_image(0).mode == "RGB"
    path = fairface / "fairface_label_val.csv"
    path.write_text(path.read_text().replace("val/2.jpg,30-39,Male", "val/2.jpg,30-39,Female"))
    assert FairFaceAdapter(fairface).manifest_hash() != a.manifest_hash()


@pytest.mark.parametrize("missing", ["fairface_label_train.csv", "fairface_label_val.csv"])
def test_missing_file_lists_layout(fairface, missing):
    (fairface / missing).unlink()
    with pytest.raises(UserError, match=f"{missing} is missing; the fairface adapter expects"):
        FairFaceAdapter(fairface).metadata()


def test_malformed_files(fairface):
    path = fairface / "fairface_label_train.csv"
    path.write_text("file,gender\ntrain/1.jpg,Male\n")
    with pytest.raises(UserError, match=r"lacks the column\(s\) \['age', 'race'\]"):
        FairFaceAdapter(fairface).metadata()
    path.write_text("file,age,gender,race\ntrain/1.jpg,elderly,Male,White\n")
    with pytest.raises(UserError, match="'elderly' is not a FairFace age bin"):
        FairFaceAdapter(fairface).metadata()


def test_missing_image_folder(tmp_path):
    make_fairface(tmp_path, TRAIN, VAL, images=False)
    (tmp_path / "val").rmdir()
    with pytest.raises(UserError, match="image folder .*val is missing"):
        FairFaceAdapter(tmp_path).metadata()


def test_paths_escaping_root_rejected(tmp_path):
    make_fairface(tmp_path, TRAIN, VAL)
    path = tmp_path / "fairface_label_val.csv"
    path.write_text(path.read_text().replace("val/1.jpg", "../val/1.jpg"))
    with pytest.raises(UserError, match="escapes the dataset root"):
        FairFaceAdapter(tmp_path).metadata()
