"""Skewed, natural, underrepresentation and resampled-test sets: marginals and small-n guarantees."""

import numpy as np
import pandas as pd
import pytest

from analyze.subsets import (
    Natural,
    Skew,
    TestResample,
    Underrepresentation,
    natural_level,
)
from analyze.subsets.balanced import balanced_demand
from analyze.subsets.core import both_classes, exact, share_of


def make_frame(cells, *, cols=("y", "s"), extra_split=None):
    """``cells[(a, b)]`` train rows per cell; ``extra_split = {"test": {...}}`` adds other splits."""
    rows = [(a, b, "train") for (a, b), k in cells.items() for _ in range(k)]
    for split, more in (extra_split or {}).items():
        rows += [(a, b, split) for (a, b), k in more.items() for _ in range(k)]
    a, b, split = zip(*rows)
    order = np.random.default_rng(1).permutation(len(a))
    frame = pd.DataFrame({cols[0]: np.array(a, np.int8), cols[1]: np.array(b, np.int8), "split": np.array(split)})
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(0, "image_id", [f"i{i}" for i in range(len(frame))])
    return frame


def counts(meta, rows, cols=("y", "s")):
    sub = meta.iloc[rows]
    return {(a, b): int(((sub[cols[0]] == a) & (sub[cols[1]] == b)).sum()) for a in (0, 1) for b in (0, 1)}


META = make_frame({(1, 0): 300, (1, 1): 120, (0, 0): 200, (0, 1): 500})


def test_skew_cell_counts_by_hand():
    # p = 0.2: positives limited by (1,0): 300 = 80% of 375; negatives by (0,1): 500 = 80% of 625.
    split = Skew("y", "s", 0.2).split_indices(META)
    # training part: 800 rows, 300 positives (share 375/1000), 20% of each label in the named cell
    assert counts(META, split.train) == {(1, 0): 240, (1, 1): 60, (0, 0): 100, (0, 1): 400}
    assert counts(META, split.val) == {(1, 0): 60, (1, 1): 15, (0, 0): 25, (0, 1): 100}
    # p = 0.8: (1,1) and (0,0) are now the majority cells and are taken whole
    full = Skew("y", "s", 0.8, val_fraction=0.0).indices(META)
    assert counts(META, full) == {(1, 0): 30, (1, 1): 120, (0, 0): 200, (0, 1): 50}


@pytest.mark.parametrize("p", [0.0, 0.2, 0.37, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("n", [None, 2, 9, 200])
def test_skew_level_within_rounding(p, n):
    train = Skew("y", "s", p, n=n, seed=3).indices(META)
    c = counts(META, train)
    pos, neg = c[1, 0] + c[1, 1], c[0, 0] + c[0, 1]
    assert pos >= 1 and neg >= 1
    assert abs(c[1, 1] - p * pos) <= 0.5 and abs(c[0, 0] - p * neg) <= 0.5
    if n is not None:
        assert pos + neg == n


def test_natural_keeps_pool_shares_and_covers_the_pool():
    split = Natural("y", "s").split_indices(META)
    assert len(np.intersect1d(split.train, split.val)) == 0
    assert len(split.train) + len(split.val) == 1120 and len(split.val) == 224
    assert counts(META, split.train) == {(1, 0): 240, (1, 1): 96, (0, 0): 160, (0, 1): 400}


@pytest.mark.parametrize("n", [2, 3, 4, 5, 16])
def test_small_n_has_both_classes_even_when_rare(n):
    rare = make_frame({(1, 0): 3, (1, 1): 2, (0, 0): 500, (0, 1): 495})
    for seed in range(5):
        labels = rare.y.to_numpy()[Natural("y", "s", n=n, seed=seed).indices(rare)]
        assert len(labels) == n and 0 < labels.sum() < n


def test_underrepresentation_composition_by_hand():
    meta = make_frame({(1, 0): 300, (0, 1): 200, (0, 0): 700, (1, 1): 100}, cols=("a", "b"))
    spec = Underrepresentation("a", "b", 0.7)
    split = spec.split_indices(meta)
    # whole set 858 rows (429 positives: 300 A-only + 129 B-only); training 686 = 343 + 343
    assert counts(meta, split.train, ("a", "b")) == {(1, 0): 240, (0, 1): 103, (0, 0): 343, (1, 1): 0}
    assert counts(meta, split.val, ("a", "b")) == {(1, 0): 60, (0, 1): 26, (0, 0): 86, (1, 1): 0}
    labels = spec.labels(meta)
    assert ((labels == 1) == ((meta.a == 1) | (meta.b == 1))).all()


@pytest.mark.parametrize("k", range(11))
def test_underrepresentation_paper_sets(k):
    meta = make_frame({(1, 0): 300, (0, 1): 300, (0, 0): 700, (1, 1): 50}, cols=("a", "b"))
    train = Underrepresentation("a", "b", (10 - k) / 10, n=128, seed=k).indices(meta)
    c = counts(meta, train, ("a", "b"))
    assert c[1, 1] == 0 and c[0, 0] == 64
    assert c[1, 0] == int(np.floor(6.4 * (10 - k) + 0.5)) and c[1, 0] + c[0, 1] == 64


def test_underrepresentation_pos_prop():
    meta = make_frame({(1, 0): 300, (0, 1): 300, (0, 0): 700}, cols=("a", "b"))
    c = counts(meta, Underrepresentation("a", "b", 0.5, n=100, pos_prop=0.3).indices(meta), ("a", "b"))
    assert c[1, 0] + c[0, 1] == 30 and c[1, 0] == 15 and c[0, 0] == 70


def test_test_resample_defaults_to_the_natural_train_level():
    meta = make_frame(
        {(1, 0): 80, (1, 1): 20, (0, 0): 50, (0, 1): 50},
        extra_split={"test": {(1, 0): 300, (1, 1): 40, (0, 0): 70, (0, 1): 500}},
    )
    assert natural_level(meta, "y", "s") == 0.2
    rows = TestResample("y", "s", seed=1).indices(meta)
    assert (meta.split.iloc[rows] == "test").all()
    # largest h with round(0.2 h) <= 40 and <= 70, h - round(0.2 h) <= 300 and <= 500: h = 202
    assert counts(meta, rows) == {(1, 0): 162, (1, 1): 40, (0, 0): 40, (0, 1): 162}
    explicit = TestResample("y", "s", level=0.5).indices(meta)
    assert counts(meta, explicit) == {(1, 0): 40, (1, 1): 40, (0, 0): 40, (0, 1): 40}


@pytest.mark.parametrize("level", [0.0, 0.1, 0.33, 0.5, 0.77, 1.0])
def test_compositions_are_monotone_in_the_total(level):
    # the closed-form largest n (= the training total) relies on this
    demand = balanced_demand(exact(level))
    previous = demand(0)
    for total in range(1, 400):
        current = demand(total)
        assert sum(current.values()) == total
        assert all(current[k] >= previous[k] for k in current)
        previous = current
    for total in range(2, 400):
        pos, neg = both_classes(total, exact(level * 0.9 + 0.05))
        pos_1, neg_1 = both_classes(total + 1, exact(level * 0.9 + 0.05))
        assert pos >= 1 and neg >= 1 and pos_1 >= pos and neg_1 >= neg
        rest, k = share_of(total, exact(level))
        rest_1, k_1 = share_of(total + 1, exact(level))
        assert rest_1 >= rest and k_1 >= k
