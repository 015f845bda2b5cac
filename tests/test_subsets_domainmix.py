"""DomainMix: exact per-source counts, determinism, nesting, serialisation and infeasible requests."""

import json

import numpy as np
import pandas as pd
import pytest

from analyze.subsets import DomainMix, spec_from_dict
from extract.errors import UserError


def fake_meta(n, *, seed, test_share=0.25, unknown=0):
    rng = np.random.default_rng(seed)
    split = np.where(rng.random(n) < test_share, "test", "train")
    label = rng.integers(0, 2, size=n).astype(np.int8)
    label[:unknown] = -1
    return pd.DataFrame({"image_id": [f"{seed}-{i}" for i in range(n)], "path": "x", "split": split,
                         "cup": label})


@pytest.fixture
def metas():
    return {"dollarstreet": fake_meta(400, seed=1, unknown=10), "coco": fake_meta(900, seed=2)}


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_exact_counts_pool_and_disjoint(metas, share):
    spec = DomainMix(("dollarstreet", "coco"), share, n=128, seed=3, targets=("cup",))
    parts = spec.split_indices(metas)
    first = round(share * 128 + 1e-9)  # no exact halves among these shares
    assert len(parts["dollarstreet"].train) == first and len(parts["coco"].train) == 128 - first
    for source, split in parts.items():
        meta = metas[source]
        rows = np.concatenate([split.train, split.val])
        assert len(np.intersect1d(split.train, split.val)) == 0
        assert (meta["split"].to_numpy()[rows] == "train").all() and (meta["cup"].to_numpy()[rows] >= 0).all()
        assert split.train.dtype == np.int64 and (np.diff(split.train) > 0).all()
    val = {s: len(p.val) for s, p in parts.items()}
    total_val = sum(val.values())
    if 0 < share < 1:
        assert val["dollarstreet"] == pytest.approx(share * total_val, abs=1)
    assert spec.counts(metas) == {s: {"train": len(p.train), "val": len(p.val)} for s, p in parts.items()}


def test_deterministic_nested_and_seeded(metas):
    spec = DomainMix(("dollarstreet", "coco"), 0.3, n=128, seed=5)
    a, b = spec.split_indices(metas), DomainMix(("dollarstreet", "coco"), 0.3, n=128, seed=5).split_indices(metas)
    for s in spec.sources:
        np.testing.assert_array_equal(a[s].train, b[s].train)
        np.testing.assert_array_equal(a[s].val, b[s].val)
    small = DomainMix(("dollarstreet", "coco"), 0.3, n=64, seed=5).split_indices(metas)
    for s in spec.sources:
        assert np.isin(small[s].train, a[s].train).all()
        np.testing.assert_array_equal(small[s].val, a[s].val)  # the validation part does not depend on n
    other = DomainMix(("dollarstreet", "coco"), 0.3, n=128, seed=6).split_indices(metas)
    assert not np.array_equal(other["coco"].train, a["coco"].train)
    # Each source draws from its own stream: reordering the other table leaves a source's rows alone.
    shuffled = dict(metas, coco=metas["coco"].sample(frac=1.0, random_state=0).reset_index(drop=True))
    np.testing.assert_array_equal(spec.split_indices(shuffled)["dollarstreet"].train, a["dollarstreet"].train)


def test_whole_training_part_and_round_trip(metas):
    spec = DomainMix(["dollarstreet", "coco"], 0.5, seed=1, targets=["cup"])
    parts = spec.split_indices(metas)
    # 390 known train-pool rows of dollarstreet bound the 50/50 set; coco has more.
    n_ds = int(((metas["dollarstreet"]["split"] == "train") & (metas["dollarstreet"]["cup"] >= 0)).sum())
    assert len(parts["dollarstreet"].train) + len(parts["dollarstreet"].val) == n_ds
    ds, co = len(parts["dollarstreet"].train), len(parts["coco"].train)
    assert ds == (ds + co + 1) // 2 and co == (ds + co) // 2  # half of an odd total rounds up for sources[0]
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.to_dict()["kind"] == "domain_mix"


def test_infeasible_names_the_limiting_source(metas):
    with pytest.raises(UserError, match=r"n=1000 is infeasible: source 'dollarstreet' has \d+ train-pool rows.*"
                                        r"largest feasible n is \d+"):
        DomainMix(("dollarstreet", "coco"), 0.9, n=1000).split_indices(metas)
    with pytest.raises(UserError, match=r"source 'coco' has \d+ train-pool rows"):
        DomainMix(("dollarstreet", "coco"), 0.0, n=1000).split_indices(metas)
    largest = DomainMix(("dollarstreet", "coco"), 0.9).counts(metas)
    n_max = sum(c["train"] for c in largest.values())
    assert sum(c["train"] for c in DomainMix(("dollarstreet", "coco"), 0.9, n=n_max).counts(metas).values()) == n_max


def test_papers_set_size(metas):
    # W&R: int(128 / 0.8) + 5 = 165 rows, 132 of them for training, 128 kept
    spec = DomainMix(("dollarstreet", "coco"), 0.3, n=128, size=165, seed=2)
    parts = spec.split_indices(metas)
    assert {s: len(p.train) for s, p in parts.items()} == {"dollarstreet": 38, "coco": 90}
    assert sum(len(p.val) for p in parts.values()) == 33
    # the set is 50 + 115 rows; its training part 40 + 92, of which 38 + 90 are kept
    assert {s: len(p.val) for s, p in parts.items()} == {"dollarstreet": 10, "coco": 23}
    with pytest.raises(UserError, match=r"n=140 is infeasible: size=165 makes the set 165 rows, .* the largest "
                                        r"feasible n is 132"):
        DomainMix(("dollarstreet", "coco"), 0.3, n=140, size=165).split_indices(metas)
    with pytest.raises(UserError, match=r"size=5000 is infeasible: source 'coco' has \d+ train-pool rows"):
        DomainMix(("dollarstreet", "coco"), 0.3, size=5000).split_indices(metas)


@pytest.mark.parametrize("kwargs, message", [
    ({"sources": ("coco", "coco"), "share": 0.5}, "two different sources"),
    ({"sources": ("coco",), "share": 0.5}, "two different sources"),
    ({"sources": ("a", "b"), "share": 1.5}, "share=1.5 is outside"),
    ({"sources": ("a", "b"), "share": 0.5, "n": 1}, "n must be an integer >= 2"),
    ({"sources": ("a", "b"), "share": 0.5, "pool": "dev"}, "pool 'dev'"),
])
def test_bad_specs(kwargs, message):
    with pytest.raises(UserError, match=message):
        DomainMix(**kwargs)


def test_missing_source_or_column(metas):
    with pytest.raises(UserError, match="needs the metadata of source 'geode'"):
        DomainMix(("geode", "coco"), 0.5, n=10).split_indices(metas)
    with pytest.raises(UserError, match="has no column 'bowl'"):
        DomainMix(("dollarstreet", "coco"), 0.5, n=10, targets=("bowl",)).split_indices(metas)
