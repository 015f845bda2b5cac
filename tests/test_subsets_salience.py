"""Salience sets: aligned rows all have y == s, inverted all y != s, test has four equal quadrants."""

import numpy as np
import pandas as pd
import pytest

from analyze.subsets import SalienceSets


def make_frame():
    rng = np.random.default_rng(7)
    n = 3000
    y = (rng.random(n) < 0.4).astype(np.int8)
    s = np.where(rng.random(n) < 0.7, y, 1 - y).astype(np.int8)  # correlated, all cells populated
    s[rng.random(n) < 0.05] = -1  # unknown sensitive values are left out
    split = rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.6, 0.1, 0.3])
    return pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "split": split, "y": y, "s": s})


META = make_frame()


def cells(pool="train"):
    sub = META[(META.split == pool) & (META.s >= 0)]
    return {(a, b): int(((sub.y == a) & (sub.s == b)).sum()) for a in (0, 1) for b in (0, 1)}


def test_aligned_rows_all_have_y_equal_s_and_are_balanced():
    spec = SalienceSets("y", "s", seed=2)
    split = spec.aligned_split(META)
    for rows in split:
        sub = META.iloc[rows]
        assert (sub.y == sub.s).all() and (sub.split == "train").all()
        assert (sub.y == 1).sum() == (sub.y == 0).sum()
    h = min(cells()[1, 1], cells()[0, 0])
    h_train = h - int(np.floor(0.2 * h + 0.5))
    assert len(split.train) == 2 * h_train and len(split.val) == 2 * (h - h_train)
    assert len(np.intersect1d(split.train, split.val)) == 0
    assert np.array_equal(spec.indices(META), split.train)


def test_inverted_rows_all_have_y_different_from_s():
    spec = SalienceSets("y", "s", seed=2)
    inverted = spec.inverted_split(META)
    for rows in inverted:
        sub = META.iloc[rows]
        assert (sub.y != sub.s).all() and (sub.s >= 0).all()
        assert (sub.y == 1).sum() == (sub.y == 0).sum()
    assert len(np.intersect1d(inverted.train, spec.aligned(META))) == 0  # not the aligned set twice
    h = min(cells()[1, 0], cells()[0, 1])
    assert len(inverted.train) == 2 * (h - int(np.floor(0.2 * h + 0.5)))
    as_field = SalienceSets("y", "s", seed=2, arrangement="inverted")
    assert np.array_equal(as_field.indices(META), inverted.train)


def test_test_set_has_four_equal_quadrants_from_the_test_split():
    rows = SalienceSets("y", "s", seed=4).test(META)
    sub = META.iloc[rows]
    assert (sub.split == "test").all()
    quadrants = sub.groupby(["y", "s"]).size()
    assert len(quadrants) == 4 and quadrants.nunique() == 1
    assert quadrants.iloc[0] == min(cells(pool="test").values())


@pytest.mark.parametrize("n", [2, 3, 10, 101])
def test_n_training_rows_keep_both_classes(n):
    for arrangement in ("aligned", "inverted"):
        rows = SalienceSets("y", "s", arrangement=arrangement, n=n, seed=1).indices(META)
        labels = META.y.to_numpy()[rows]
        assert len(rows) == n and labels.sum() == (n + 1) // 2


def test_seeds():
    a, b = SalienceSets("y", "s", seed=0), SalienceSets("y", "s", seed=1)
    assert a.test(META).tobytes() == SalienceSets("y", "s", seed=0).test(META).tobytes()
    assert a.test(META).tobytes() != b.test(META).tobytes()
    assert a.inverted(META).tobytes() != b.inverted(META).tobytes()
