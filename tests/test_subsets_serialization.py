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
