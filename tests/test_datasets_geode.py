"""GeoDE adapter on a fake index.csv in the released format."""

import numpy as np
import pandas as pd
import pytest

from extract.datasets import get_adapter
from extract.datasets.geode import GeodeAdapter
from extract.errors import UserError
from tests.fake_trees import make_geode

ROWS = [
    ["bag/Africa_bag_0001.jpg", "bag", "Africa", "Nigeria"],
    ["hand soap/EastAsia_hand soap_0001.jpg", "hand soap", "EastAsia", "China"],
    ["bag/Europe_bag_0002.jpg", "bag", "Europe", "Italy"],
    ["stove/WestAsia_stove_0001.jpg", "stove", "WestAsia", "Turkey"],
    ["stove/Americas_stove_0002.jpg", "stove", "Americas", "Mexico"],
    ["hand soap/Africa_hand soap_0003.jpg", "hand soap", "", "Ghana"],
]


@pytest.fixture
def geode(tmp_path):
    make_geode(tmp_path, ROWS)
    return tmp_path


def test_columns_values_and_descriptors(geode):
    adapter = get_adapter("geode", geode)
    meta = adapter.metadata()
    assert meta.columns.tolist() == ["image_id", "path", "split", "bag", "hand_soap", "stove",
                                     "region_Africa", "region_Americas", "region_EastAsia", "region_Europe",
                                     "region_WestAsia"]
    assert meta["image_id"].tolist() == [r[0] for r in ROWS]
    assert meta["path"].tolist() == ["images/" + r[0] for r in ROWS]
    assert adapter.label_columns == ["bag", "hand_soap", "stove"]
    objects = meta[adapter.label_columns].to_numpy()
    assert (objects.sum(axis=1) == 1).all()
    assert [adapter.label_columns[j] for j in objects.argmax(axis=1)] == ["bag", "hand_soap", "bag", "stove",
                                                                          "stove", "hand_soap"]
    np.testing.assert_array_equal(meta["region_Africa"], [1, 0, 0, 0, 0, -1])
    assert all(meta[c].dtype == np.int8 for c in meta.columns[3:])
    desc = adapter.descriptors()
    assert desc.columns.tolist() == ["image_id", "object", "region", "ip_country"]
    assert desc["ip_country"].tolist() == [r[3] for r in ROWS]
    assert pd.isna(desc["region"].iat[5]) and desc["object"].iat[1] == "hand soap"


def test_split_seeded_and_stratified(tmp_path):
    rows = [[f"{o}/{k}.jpg", o, "Africa", "Kenya"] for o in ("bag", "tree") for k in range(25)]
    make_geode(tmp_path, rows, images=False)
    split = GeodeAdapter(tmp_path, seed=2).metadata()["split"].to_numpy()
    for part in (split[:25], split[25:]):
        assert (part == "test").sum() == 5 and (part == "val").sum() == 4 and (part == "train").sum() == 16
    assert split.tolist() == GeodeAdapter(tmp_path, seed=2).metadata()["split"].tolist()
    assert split.tolist() != GeodeAdapter(tmp_path, seed=3).metadata()["split"].tolist()
    with pytest.raises(UserError, match="split_fractions"):
        GeodeAdapter(tmp_path, split_fractions=(0.5, 0.5, 0.5))


def test_images_and_hash(geode):
    a = GeodeAdapter(geode)
    assert a.open_image(1).mode == "RGB"
    assert a.manifest_hash() == GeodeAdapter(geode).manifest_hash()
    path = geode / "index.csv"
    path.write_text(path.read_text().replace("bag,Europe", "bag,Africa"))
    assert GeodeAdapter(geode).manifest_hash() != a.manifest_hash()


def test_missing_index_and_columns(geode, tmp_path):
    path = geode / "index.csv"
    path.write_text("file_path,object\nbag/1.jpg,bag\n")
    with pytest.raises(UserError, match=r"lacks the column\(s\) \['region'\]; the geode adapter expects"):
        GeodeAdapter(geode).metadata()
    path.write_text("file_path,object,region\n,bag,Africa\n")
    with pytest.raises(UserError, match="row 2 .* has an empty file_path or object"):
        GeodeAdapter(geode).metadata()
    path.unlink()
    with pytest.raises(UserError, match="index.csv is missing; the geode adapter expects <root>/index.csv"):
        GeodeAdapter(geode).metadata()
    with pytest.raises(UserError, match="does not exist"):
        GeodeAdapter(tmp_path / "absent")


def test_missing_image_folder_and_escape(tmp_path):
    make_geode(tmp_path, ROWS, images=False)
    (tmp_path / "images" / "stove").rmdir()
    with pytest.raises(UserError, match="image folder .*stove is missing"):
        GeodeAdapter(tmp_path).metadata()
    make_geode(tmp_path, ROWS + [["../secret.jpg", "bag", "Africa", "Kenya"]], images=False)
    with pytest.raises(UserError, match="escapes the dataset root"):
        GeodeAdapter(tmp_path).metadata()


def test_repeated_file_rejected(tmp_path):
    make_geode(tmp_path, ROWS + [ROWS[0]])
    with pytest.raises(UserError, match="repeats image_id"):
        GeodeAdapter(tmp_path).metadata()
