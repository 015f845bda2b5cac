"""COCO 2014 adapter: the paper's caption-gender rule and object columns on fake annotation files."""

import json

import numpy as np
import pytest

from extract.datasets import get_adapter
from extract.datasets.coco import COCOAdapter, caption_gender, gender_from_captions
from extract.errors import UserError
from tests.fake_trees import make_coco

# (captions, expected ``female``): 1 female, 0 male, -1 unknown
GENDER_CASES = [
    (["A man riding a horse", "a horse in a field"], 0),
    (["Two WOMEN at a table", "ladies eating"], 1),
    (["A man and a woman on a bench"], -1),            # both genders in one caption
    (["A man on a bench", "a lady on a bench"], -1),   # both genders across captions
    (["A man.", "the gentleman, smiling"], -1),        # punctuation stays attached: no match
    (["a dog", "a cat"], -1),                          # neither
    (["A  boy  with a kite\n", " girls"], -1),         # split(' ') then strip: both match
    (["Boys playing", "MEN watching"], 0),
    (["the female surfer"], 1),
    (["a manhole cover", "a womanly shape"], -1),       # whole words only
    ([], -1),                                           # no captions
]


def test_caption_gender_rule():
    for captions, expected in GENDER_CASES:
        assert caption_gender(captions) == expected, captions


def test_vectorised_rule_matches_reference():
    rng = np.random.default_rng(0)
    words = ["a", "man", "woman", "boy.", "girls", "Lady", "dog", "men,", "gentlemen", "table", "on", "the"]
    caption_ids = rng.integers(0, 200, size=400)
    captions = [" ".join(rng.choice(words, size=rng.integers(1, 4))) for _ in caption_ids]
    image_ids = np.arange(210)  # at least ten images without captions
    got = gender_from_captions(image_ids, caption_ids, captions)
    expected = [caption_gender([c for c, i in zip(captions, caption_ids) if i == img]) for img in image_ids]
    np.testing.assert_array_equal(got, expected)
    assert set(got) == {-1, 0, 1}


@pytest.fixture
def coco(tmp_path):
    train = [{"id": 100 + k, "captions": caps, "objects": [1, 67] if k % 2 else [47, 47]}
             for k, (caps, _) in enumerate(GENDER_CASES)]
    val = [{"id": 9, "captions": ["a woman holding a cup"], "objects": [47, 1]},
           {"id": 7, "captions": ["an empty room"], "objects": []}]
    make_coco(tmp_path, {"train2014": train, "val2014": val})
    return tmp_path


def test_metadata_columns_values_and_splits(coco):
    meta = get_adapter("coco", coco, val_fraction=0).metadata()
    assert list(meta.columns) == ["image_id", "path", "split", "female", "person", "cup", "dining_table"]
    assert meta["image_id"].tolist() == [str(100 + k) for k in range(len(GENDER_CASES))] + ["9", "7"]
    assert meta["path"].iat[0] == "train2014/COCO_train2014_000000000100.jpg"
    assert meta["path"].iat[-1] == "val2014/COCO_val2014_000000000007.jpg"
    assert meta["split"].tolist() == ["train"] * len(GENDER_CASES) + ["test", "test"]
    np.testing.assert_array_equal(meta["female"].to_numpy(), [g for _, g in GENDER_CASES] + [1, -1])
    odd = np.arange(len(GENDER_CASES)) % 2 == 1
    np.testing.assert_array_equal(meta["person"].to_numpy(), np.r_[odd, 1, 0])
    np.testing.assert_array_equal(meta["dining_table"].to_numpy(), np.r_[odd, 0, 0])
    np.testing.assert_array_equal(meta["cup"].to_numpy(), np.r_[~odd, 1, 0])  # repeated instances count once
    assert all(meta[c].dtype == np.int8 for c in ["female", "person", "cup", "dining_table"])


def test_seeded_val_carve_out(coco):
    split = COCOAdapter(coco, val_fraction=0.3, seed=1).metadata()["split"]
    n_train = len(GENDER_CASES)
    assert (split[:n_train] == "val").sum() == round(0.3 * n_train)
    assert (split[n_train:] == "test").all()
    again = COCOAdapter(coco, val_fraction=0.3, seed=1).metadata()["split"]
    assert split.tolist() == again.tolist()
    others = [COCOAdapter(coco, val_fraction=0.3, seed=s).metadata()["split"].tolist() for s in range(2, 8)]
    assert any(o != split.tolist() for o in others)


def test_category_subset_and_parts(coco):
    adapter = COCOAdapter(coco, categories=["dining table", "cup"], parts=("val2014",))
    assert adapter.attributes == ["female", "dining_table", "cup"]
    assert adapter.metadata()["split"].tolist() == ["test", "test"]
    with pytest.raises(UserError, match="toaster"):
        COCOAdapter(coco, categories=["toaster"]).metadata()
    with pytest.raises(UserError, match="test2015"):
        COCOAdapter(coco, parts=("test2015",))


def test_open_image_and_hash(coco):
    a, b = COCOAdapter(coco), COCOAdapter(coco)
    assert a.open_image(len(a) - 1).size == (8, 8)
    assert a.manifest_hash() == b.manifest_hash()
    path = coco / "annotations" / "captions_val2014.json"
    path.write_text(path.read_text().replace("an empty room", "a man in an empty room"))
    assert COCOAdapter(coco).manifest_hash() != a.manifest_hash()


@pytest.mark.parametrize("missing", ["annotations/instances_train2014.json", "annotations/captions_val2014.json"])
def test_missing_file_lists_layout(coco, missing):
    (coco / missing).unlink()
    with pytest.raises(UserError, match=r"is missing; the coco adapter expects .*instances_\{train,val\}2014"):
        COCOAdapter(coco).metadata()


def test_missing_image_folder_and_root(coco, tmp_path):
    (coco / "val2014" / "COCO_val2014_000000000007.jpg").unlink()
    (coco / "val2014" / "COCO_val2014_000000000009.jpg").unlink()
    (coco / "val2014").rmdir()
    with pytest.raises(UserError, match="val2014 is missing"):
        COCOAdapter(coco).metadata()
    with pytest.raises(UserError, match="does not exist"):
        COCOAdapter(tmp_path / "absent")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"images": []}), "lacks the list"),
    (json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}), "lacks a COCO field"),
])
def test_malformed_instances(coco, content, message):
    (coco / "annotations" / "instances_train2014.json").write_text(content)
    with pytest.raises(UserError, match=message):
        COCOAdapter(coco).metadata()


def test_annotation_of_unlisted_image(coco):
    path = coco / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 123456
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="not listed"):
        COCOAdapter(coco).metadata()


def test_bad_val_fraction(coco):
    with pytest.raises(UserError, match="val_fraction"):
        COCOAdapter(coco, val_fraction=1.5)
