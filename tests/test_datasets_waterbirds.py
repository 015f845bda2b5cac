"""Waterbirds adapter on a fake ``metadata.csv`` in the released format."""

import numpy as np
import pytest

from extract.datasets import get_adapter
from extract.datasets.waterbirds import WaterbirdsAdapter
from extract.errors import UserError
from tests.fake_trees import make_waterbirds

ROWS = [
    [1, "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, 0, 1, "/o/ocean/00002178.jpg"],
    [2, "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, 1, 0, "/b/bamboo_forest/00001.jpg"],
    [3, "014.Indigo_Bunting/Indigo_Bunting_0001_12469.jpg", 0, 2, 1, "/l/lake/natural/00000065.jpg"],
    [4, "014.Indigo_Bunting/Indigo_Bunting_0002_13503.jpg", 0, 0, 0, "/b/bamboo_forest/00002.jpg"],
]


@pytest.fixture
def waterbirds(tmp_path):
    make_waterbirds(tmp_path, ROWS)
    return tmp_path


def test_columns_values_and_splits(waterbirds):
    meta = get_adapter("waterbirds", waterbirds).metadata()
    assert meta.columns.tolist() == ["image_id", "path", "split", "waterbird", "water_background"]
    assert meta["image_id"].tolist() == ["1", "2", "3", "4"]
    assert meta["path"].tolist() == [r[1] for r in ROWS]
    assert meta["split"].tolist() == ["train", "val", "test", "train"]
    np.testing.assert_array_equal(meta["waterbird"], [r[2] for r in ROWS])
    np.testing.assert_array_equal(meta["water_background"], [r[4] for r in ROWS])
    assert meta["waterbird"].dtype == np.int8 and meta["water_background"].dtype == np.int8


def test_images_and_hash(waterbirds):
    a = WaterbirdsAdapter(waterbirds)
    assert a.open_image(3).size == (8, 8)
    assert a.manifest_hash() == WaterbirdsAdapter(waterbirds).manifest_hash()
    path = waterbirds / "metadata.csv"
    path.write_text(path.read_text().replace("Indigo_Bunting_0002_13503.jpg,0,0,0", "Indigo_Bunting_0002_13503.jpg,0,0,1"))
    assert WaterbirdsAdapter(waterbirds).manifest_hash() != a.manifest_hash()


def test_missing_root_and_file(tmp_path):
    with pytest.raises(UserError, match="metadata.csv with columns img_id,img_filename"):
        WaterbirdsAdapter(tmp_path / "absent")
    with pytest.raises(UserError, match="metadata.csv is missing; the waterbirds adapter expects"):
        WaterbirdsAdapter(tmp_path).metadata()


def test_malformed_metadata(waterbirds):
    path = waterbirds / "metadata.csv"
    text = path.read_text()
    path.write_text(text.replace("img_filename", "filename"))
    with pytest.raises(UserError, match="lacks the column"):
        WaterbirdsAdapter(waterbirds).metadata()
    path.write_text(text.replace("Black_Footed_Albatross_0046_18.jpg,1,0,1", "Black_Footed_Albatross_0046_18.jpg,1,5,1"))
    with pytest.raises(UserError, match="split value '5'"):
        WaterbirdsAdapter(waterbirds).metadata()
    path.write_text(text.replace("Black_Footed_Albatross_0046_18.jpg,1,0,1", "Black_Footed_Albatross_0046_18.jpg,2,0,1"))
    with pytest.raises(UserError, match="'waterbird' of waterbirds is not binary"):
        WaterbirdsAdapter(waterbirds).metadata()


def test_missing_image_folder(tmp_path):
    make_waterbirds(tmp_path, ROWS, images=False)
    with pytest.raises(UserError, match="image folder .*001.Black_footed_Albatross is missing"):
        WaterbirdsAdapter(tmp_path).metadata()


def test_corrupt_image(waterbirds):
    (waterbirds / ROWS[0][1]).write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(UserError, match="corrupt or not an image"):
        WaterbirdsAdapter(waterbirds).open_image(0)
