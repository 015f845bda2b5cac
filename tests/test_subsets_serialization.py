"""Specs round-trip through JSON and reproduce their rows; every kind is seeded."""

import json

import numpy as np
import pandas as pd
import pytest

from analyze.subsets import (
    SPEC_KINDS,
    Correlation,
    Natural,
    SalienceSets,
    Skew,
    SubSelection,
    TestResample,
    Underrepresentation,
    spec_from_dict,
)
from extract.errors import UserError


def make_frame():
    rng = np.random.default_rng(11)
    n = 2400
    y = (rng.random(n) < 0.45).astype(np.int8)
    s = np.where(rng.random(n) < 0.75, y, 1 - y).astype(np.int8)
    split = rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.7, 0.1, 0.2])
    return pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "split": split, "y": y, "s": s})


META = make_frame()

SPECS = [
    Correlation("y", "s", 0.3, n=64, seed=3),
    Correlation("y", "s", np.float64(0.7), size=100, val_fraction=0.25, pool="all"),
    SubSelection("y", "s", 0.4, base_n=200, seed=1),
    SubSelection("y", "s", 0.1, base_n=100, base_level=0.2),
    Skew("y", "s", 0.2, n=100, seed=np.int64(8)),
    Natural("y", "s", n=50, seed=2),
    Underrepresentation("y", "s", 0.6, n=80, pos_prop=0.4, seed=5),
    SalienceSets("y", "s", arrangement="inverted", n=40, seed=6),
    TestResample("y", "s", seed=7),
    TestResample("y", "s", level=0.5, pool="val"),
]


def rows_of(spec):
    """Every row array a spec yields: [train, val] for split kinds, [rows] for test sets."""
    return list(spec.split_indices(META)) if hasattr(spec, "split_indices") else [spec.indices(META)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_json_round_trip_reproduces_rows(spec):
    d = spec.to_dict()
    assert d["kind"] == spec.kind
    again = spec_from_dict(json.loads(json.dumps(d)))
    assert again == spec and type(again) is type(spec)
    assert type(spec).from_dict(d) == spec
    for a, b in zip(rows_of(spec), rows_of(again), strict=True):
        assert a.dtype == np.int64 and len(a) > 0 and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_other_seed_gives_other_rows(spec):
    other = type(spec).from_dict({**spec.to_dict(), "seed": spec.seed + 100})
    a = spec.indices(META)
    assert a.tobytes() == spec.indices(META).tobytes()
    assert a.tobytes() != other.indices(META).tobytes()


def test_every_kind_is_registered_and_covered():
    assert set(SPEC_KINDS) == {s.kind for s in SPECS}


def test_specs_are_frozen_and_hashable():
    spec = SPECS[0]
    with pytest.raises(AttributeError):
        spec.level = 0.9
    assert len({spec, Correlation("y", "s", 0.3, n=64, seed=3)}) == 1


def test_bad_dicts():
    with pytest.raises(UserError, match="unknown"):
        spec_from_dict({"kind": "nonsense"})
    with pytest.raises(UserError, match=r"unknown field\(s\) \['colour'\]"):
        spec_from_dict({**SPECS[0].to_dict(), "colour": "red"})
    with pytest.raises(UserError, match="cannot be read as"):
        Skew.from_dict(SPECS[0].to_dict())


# Pinned before the specs shared a base class (issue 24): the dict (key order included), the
# record name and the rows of every spec above must never change, or old records stop matching.
PINNED = [
    ('{"kind": "correlation", "target": "y", "sensitive": "s", "level": 0.3, "n": 64, "size": null, "seed": 3, '
     '"pool": "train", "val_fraction": 0.2}',
     "probe__b__correlation__targety__sensitives__level0.3__n64__seed3__3ccf7405ec", "319c4daafb776ccb"),
    ('{"kind": "correlation", "target": "y", "sensitive": "s", "level": 0.7, "n": null, "size": 100, "seed": 0, '
     '"pool": "all", "val_fraction": 0.25}',
     "probe__b__correlation__targety__sensitives__level0.7__seed0__66d5925ad6", "d641fea69a51dc22"),
    ('{"kind": "subselection", "target": "y", "sensitive": "s", "level": 0.4, "base_n": 200, "base_level": null, '
     '"seed": 1, "pool": "train", "val_fraction": 0.2}',
     "probe__b__subselection__targety__sensitives__level0.4__seed1__6f03e792e4", "573eeb191ad22137"),
    ('{"kind": "subselection", "target": "y", "sensitive": "s", "level": 0.1, "base_n": 100, "base_level": 0.2, '
     '"seed": 0, "pool": "train", "val_fraction": 0.2}',
     "probe__b__subselection__targety__sensitives__level0.1__seed0__23b9cb8c09", "9135d54e55125a2d"),
    ('{"kind": "skew", "target": "y", "sensitive": "s", "p": 0.2, "n": 100, "seed": 8, "pool": "train", '
     '"val_fraction": 0.2}',
     "probe__b__skew__targety__sensitives__p0.2__n100__seed8__587026f945", "c46d70aa671cd33b"),
    ('{"kind": "natural", "target": "y", "sensitive": "s", "n": 50, "seed": 2, "pool": "train", "val_fraction": 0.2}',
     "probe__b__natural__targety__sensitives__n50__seed2__2dfe62e1c1", "de6da87c912d3fc7"),
    ('{"kind": "underrepresentation", "attr_a": "y", "attr_b": "s", "share_a": 0.6, "n": 80, "pos_prop": 0.4, '
     '"seed": 5, "pool": "train", "val_fraction": 0.2}',
     "probe__b__underrepresentation__attr_ay__attr_bs__share_a0.6__n80__seed5__5fc7a6d8db", "caa355cc38e81891"),
    ('{"kind": "salience", "target": "y", "sensitive": "s", "arrangement": "inverted", "n": 40, "seed": 6, '
     '"pool": "train", "test_pool": "test", "val_fraction": 0.2}',
     "probe__b__salience__targety__sensitives__n40__seed6__1dea9187a1", "ab5bec5c6d88b82d"),
    ('{"kind": "test_resample", "target": "y", "sensitive": "s", "level": null, "seed": 7, "pool": "test", '
     '"natural_pool": "train"}',
     "probe__b__test_resample__targety__sensitives__seed7__75600060fd", "f3e0c5304bcaec3c"),
    ('{"kind": "test_resample", "target": "y", "sensitive": "s", "level": 0.5, "seed": 0, "pool": "val", '
     '"natural_pool": "train"}',
     "probe__b__test_resample__targety__sensitives__level0.5__seed0__c41a737844", "93513de4bd174063"),
]


@pytest.mark.parametrize(("spec", "pinned"), list(zip(SPECS, PINNED, strict=True)), ids=lambda s: getattr(s, "kind", ""))
def test_dict_record_name_and_rows_are_pinned(spec, pinned):
    import hashlib

    from analyze.results.records import cell_id

    text, name, rows = pinned
    assert json.dumps(spec.to_dict()) == text
    assert cell_id(runner="probe", backbone="b", spec=spec.to_dict()) == name
    assert hashlib.sha256(b"".join(r.tobytes() for r in rows_of(spec))).hexdigest()[:16] == rows


def test_domain_mix_dict_and_record_name_are_pinned():
    from analyze.results.records import cell_id
    from analyze.subsets import DomainMix

    spec = DomainMix(("dollarstreet", "coco"), 0.25, n=64, seed=4, targets=("a", "b"))
    assert json.dumps(spec.to_dict()) == (
        '{"kind": "domain_mix", "sources": ["dollarstreet", "coco"], "share": 0.25, "n": 64, "seed": 4, '
        '"pool": "train", "val_fraction": 0.2, "targets": ["a", "b"], "size": null}')
    assert cell_id(runner="probe", backbone="b", spec=spec.to_dict()) == "probe__b__domain_mix__share0.25__n64__seed4__61e3da515f"
    assert repr(spec) == ("DomainMix(sources=('dollarstreet', 'coco'), share=0.25, n=64, seed=4, pool='train', "
                          "val_fraction=0.2, targets=('a', 'b'), size=None)")
