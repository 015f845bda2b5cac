"""Dollar Street adapter on a fake metadata_full_dollar_street.json in the released format."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from extract.datasets import get_adapter
from extract.datasets.dollarstreet import (
    DollarStreetAdapter,
    income_bucket,
    load_class_map,
)
from extract.datasets.targets import coco_classes, target_set
from extract.errors import UserError
from tests.fake_trees import make_dollarstreet

RECORDS = [
    {"id": "5d4bea", "label": "sofas", "country": "India", "region": "Asia", "income": 147.0},
    {"id": "5d4beb", "label": "toothbrushes", "country": "Burundi", "region": "Africa", "income": 27},
    {"id": "5d4bec", "label": "street_view", "country": "Sweden", "region": "Europe", "income": 6000},  # unmapped
    {"id": "5d4bed", "label": "kids_bed", "country": "USA", "region": "The Americas", "income": "2500"},
    {"id": "5d4bee", "label": "beds", "country": "China", "region": "Asia", "income": 890.5},
    {"id": "5d4bef", "label": "wall_clocks", "country": "Nigeria", "region": "Africa", "income": None},
    {"id": "5d4bea", "label": "cups", "country": "India", "region": "Asia", "income": 147.0},  # repeated id
    {"id": "5d4bf0", "label": "tvs", "country": "Brazil", "region": "", "income": 0},
]
KEPT = [0, 1, 3, 4, 5, 7]


@pytest.fixture
def dollarstreet(tmp_path):
    make_dollarstreet(tmp_path, RECORDS)
    return tmp_path


def test_class_map_is_the_papers():
    topics = load_class_map(DollarStreetAdapter.__init__.__globals__["DEFAULT_CLASS_MAP"])
    assert len(topics) == 15
    assert topics["sofas"] == ["couch"] and topics["kids_bed"] == topics["beds"] == ["bed"]
    assert topics["tvs"] == ["tv"] and topics["wall_clocks"] == ["clock"] and topics["kitchen_sinks"] == ["sink"]
    classes = coco_classes()
    assert len(classes) == 80 and classes[0] == "person" and classes[-1] == "toothbrush"
    assert "dining_table" in classes and target_set("coco-objects") == classes


def test_income_bucket_rule():
    incomes = [27, 147.0, 890.5, 2500, 6000, 1.0, 0, -3, float("nan")]
    expected = [round(math.log(x) / 3) if not math.isnan(x) and x > 0 else -1 for x in incomes]
    assert income_bucket(incomes).tolist() == expected == [1, 2, 2, 3, 3, 0, -1, -1, -1]


def test_columns_labels_and_descriptors(dollarstreet):
    adapter = get_adapter("dollarstreet", dollarstreet)
    meta = adapter.metadata()
    kept = [RECORDS[i] for i in KEPT]
    assert meta["image_id"].tolist() == [r["id"] for r in kept]
    assert meta["path"].tolist() == [f"images/{r['id']}.jpg" for r in kept]
    classes = coco_classes()
    assert adapter.label_columns == classes
    assert meta.columns.tolist()[3:3 + 80] == classes
    labels = meta[classes].to_numpy()
    assert (labels.sum(axis=1) == 1).all()
    hot = [classes[j] for j in labels.argmax(axis=1)]
    assert hot == ["couch", "toothbrush", "bed", "bed", "clock", "tv"]
    assert meta.filter(like="region_").columns.tolist() == [
        "region_Africa", "region_Asia", "region_The_Americas"]
    np.testing.assert_array_equal(meta["region_Asia"], [1, 0, 0, 1, 0, -1])
    np.testing.assert_array_equal(meta["region_The_Americas"], [0, 0, 1, 0, 0, -1])
    assert meta.filter(like="income_bucket_").columns.tolist() == ["income_bucket_1", "income_bucket_2",
                                                                   "income_bucket_3"]
    np.testing.assert_array_equal(meta["income_bucket_2"], [1, 0, 0, 1, -1, -1])
    np.testing.assert_array_equal(meta["income_bucket_3"], [0, 0, 1, 0, -1, -1])
    desc = adapter.descriptors()
    assert desc["image_id"].tolist() == meta["image_id"].tolist()
    assert desc["topic"].tolist() == ["sofas", "toothbrushes", "kids_bed", "beds", "wall_clocks", "tvs"]
    assert desc["income_bucket"].tolist() == [2, 1, 3, 2, -1, -1]
    np.testing.assert_allclose(desc["income"].to_numpy()[:4], [147.0, 27, 2500, 890.5])
    assert np.isnan(desc["income"].iat[4])
    assert desc["region"].tolist()[:5] == ["Asia", "Africa", "The Americas", "Asia", "Africa"]
    assert pd.isna(desc["region"].iat[5])
    assert all(meta[c].dtype == np.int8 for c in meta.columns[3:])


def test_seeded_split_is_stratified_and_reproducible(tmp_path):
    records = [{"id": f"{t}{k}", "label": t, "country": "X", "region": "Asia", "income": 100 + k}
               for t in ("cars", "cups") for k in range(10)]
    make_dollarstreet(tmp_path, records, images=False)
    split = DollarStreetAdapter(tmp_path, seed=4).metadata()["split"].to_numpy()
    for half in (split[:10], split[10:]):  # per topic
        assert (half == "train").sum() == 6 and (half == "val").sum() == 2 and (half == "test").sum() == 2
    assert split.tolist() == DollarStreetAdapter(tmp_path, seed=4).metadata()["split"].tolist()
    others = [DollarStreetAdapter(tmp_path, seed=s).metadata()["split"].tolist() for s in range(5, 9)]
    assert any(o != split.tolist() for o in others)


def test_custom_class_map_and_classes(dollarstreet, tmp_path):
    (tmp_path / "map.toml").write_text('[topics]\nsofas = ["couch", "chair"]\ncups = ["cup"]\n')
    (tmp_path / "classes.txt").write_text("# mine\nchair\ncouch\ncup\n")
    adapter = DollarStreetAdapter(dollarstreet, class_map=tmp_path / "map.toml", classes=tmp_path / "classes.txt")
    meta = adapter.metadata()
    assert meta["image_id"].tolist() == ["5d4bea"]  # the repeated id keeps its first record (sofas)
    assert adapter.label_columns == ["chair", "couch", "cup"]
    assert meta[["chair", "couch", "cup"]].to_numpy().tolist() == [[1, 1, 0]]
    (tmp_path / "map.toml").write_text('[topics]\nsofas = ["settee"]\n')
    with pytest.raises(UserError, match=r"names the class\(es\) \['settee'\]"):
        DollarStreetAdapter(dollarstreet, class_map=tmp_path / "map.toml").metadata()
    (tmp_path / "map.toml").write_text('sofas = "couch"\n')
    with pytest.raises(UserError, match=r"needs a \[topics\] table"):
        DollarStreetAdapter(dollarstreet, class_map=tmp_path / "map.toml").metadata()


def test_images_and_hash(dollarstreet):
    a, b = DollarStreetAdapter(dollarstreet), DollarStreetAdapter(dollarstreet)
    assert a.open_image(0).size == (8, 8)
    assert a.manifest_hash() == b.manifest_hash()
    path = dollarstreet / "metadata_full_dollar_street.json"
    path.write_text(path.read_text().replace('"income": 27', '"income": 9000'))
    assert DollarStreetAdapter(dollarstreet).manifest_hash() != a.manifest_hash()


@pytest.mark.parametrize("content, message", [
    (None, "is missing; the dollarstreet adapter expects <root>/metadata_full_dollar_street.json"),
    ("{not json", "not valid JSON"),
    (json.dumps({"data": []}), "not a JSON list of records"),
    (json.dumps([{"id": "a", "label": "cups", "country": "X"}]), r"lack the field\(s\) \['region', 'income'\]"),
    (json.dumps([{"id": "a", "label": "x", "country": "X", "region": "Asia", "income": 5}]), "no record"),
])
def test_malformed_metadata(dollarstreet, content, message):
    path = dollarstreet / "metadata_full_dollar_street.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        DollarStreetAdapter(dollarstreet).metadata()


def test_missing_root_and_image_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist; the dollarstreet adapter expects"):
        DollarStreetAdapter(tmp_path / "absent")
    make_dollarstreet(tmp_path, RECORDS, images=False)
    (tmp_path / "images").rmdir()
    with pytest.raises(UserError, match="image folder .*images is missing"):
        DollarStreetAdapter(tmp_path).metadata()


def test_escaping_image_dir_rejected(dollarstreet):
    with pytest.raises(UserError, match="escapes the dataset root"):
        DollarStreetAdapter(dollarstreet, image_dir="../elsewhere").metadata()
