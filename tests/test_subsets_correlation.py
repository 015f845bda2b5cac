"""Correlation-level and sub-selection sets: exact cell counts, balance, splits, seeds."""

import numpy as np
import pandas as pd
import pytest

from analyze.subsets import Correlation, SubSelection, natural_level


def make_frame(cells, *, split="train", extra=None, seed=0):
    """Shuffled metadata with ``cells[(y, s)]`` rows per cell in ``split`` (+ ``extra`` rows)."""
    parts = [(y, s, split) for (y, s), k in cells.items() for _ in range(k)]
    parts += list(extra or [])
    y, s, sp = zip(*parts)
    frame = pd.DataFrame({"split": sp, "y": np.array(y, np.int8), "s": np.array(s, np.int8)})
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame.insert(0, "image_id", [f"img{i}" for i in range(len(frame))])
    return frame


def cell_counts(meta, rows):
    sub = meta.iloc[rows]
    return {(y, s): int(((sub.y == y) & (sub.s == s)).sum()) for y in (0, 1) for s in (0, 1)}


# L = 150 (the (1, 1) cell); the training half is 120 and the validation half 30, so every
# level k/10 is met exactly: 15k counter rows per label in the set, 12k in train, 3k in val.
EXACT = make_frame({(1, 0): 400, (1, 1): 150, (0, 0): 230, (0, 1): 610})


@pytest.mark.parametrize("k", range(11))
def test_every_tenth_level_has_exact_cell_counts(k):
    split = Correlation("y", "s", k / 10, seed=4).split_indices(EXACT)
    assert cell_counts(EXACT, split.train) == {(1, 0): 120 - 12 * k, (1, 1): 12 * k, (0, 0): 12 * k, (0, 1): 120 - 12 * k}
    assert cell_counts(EXACT, split.val) == {(1, 0): 30 - 3 * k, (1, 1): 3 * k, (0, 0): 3 * k, (0, 1): 30 - 3 * k}
    train = EXACT.iloc[split.train]
    assert (train.y == 1).sum() == (train.y == 0).sum() == 120
    assert (train.s == 1).sum() == (train.s == 0).sum() == 120
    assert train.s[train.y == 1].mean() == pytest.approx(k / 10, abs=1e-12)
    assert 1 - train.s[train.y == 0].mean() == pytest.approx(k / 10, abs=1e-12)


def test_rounding_is_nearest_per_level():
    # L = 120: training half 120 - round(24) = 96, counter rows round(9.6 k), hand-computed.
    meta = make_frame({(1, 0): 300, (1, 1): 120, (0, 0): 200, (0, 1): 500})
    expected = [0, 10, 19, 29, 38, 48, 58, 67, 77, 86, 96]
    for k, r in enumerate(expected):
        split = Correlation("y", "s", k / 10).split_indices(meta)
        assert cell_counts(meta, split.train) == {(1, 0): 96 - r, (1, 1): r, (0, 0): r, (0, 1): 96 - r}
        assert cell_counts(meta, split.val)[1, 1] == 12 * k - r


def test_half_levels_round_up_on_the_decimal_not_the_float():
    # 0.15 * 120 = 18 exactly; 0.15 as a float is 0.1499..., which must not round down.
    meta = make_frame({(1, 0): 150, (1, 1): 150, (0, 0): 150, (0, 1): 150})
    train = Correlation("y", "s", 0.15, n=20).indices(meta)  # 10 positives: 1.5 -> 2 counter rows
    assert cell_counts(meta, train)[1, 1] == 2


@pytest.mark.parametrize("n", [2, 3, 7, 50, 101, 240])
def test_n_keeps_balance_and_level(n):
    train = Correlation("y", "s", 0.3, n=n, seed=1).indices(EXACT)
    counts = cell_counts(EXACT, train)
    pos, neg = (n + 1) // 2, n // 2
    assert len(train) == n
    assert counts[1, 0] + counts[1, 1] == pos and counts[0, 0] + counts[0, 1] == neg
    assert counts[1, 1] == int(np.floor(0.3 * pos + 0.5)) and counts[0, 0] == int(np.floor(0.3 * neg + 0.5))


def test_small_n_rows_are_nested_in_larger_n():
    small = Correlation("y", "s", 0.4, n=16, seed=9).indices(EXACT)
    large = Correlation("y", "s", 0.4, n=128, seed=9).indices(EXACT)
    full = Correlation("y", "s", 0.4, seed=9).split_indices(EXACT)
    assert np.isin(small, large).all() and np.isin(large, full.train).all()
    assert not np.isin(full.val, large).any()


def test_same_seed_identical_other_seed_different():
    a = Correlation("y", "s", 0.3, n=100, seed=5).split_indices(EXACT)
    b = Correlation("y", "s", 0.3, n=100, seed=5).split_indices(EXACT)
    c = Correlation("y", "s", 0.3, n=100, seed=6).split_indices(EXACT)
    assert a.train.tobytes() == b.train.tobytes() and a.val.tobytes() == b.val.tobytes()
    assert a.train.tobytes() != c.train.tobytes()
    assert a.train.dtype == np.int64 and (np.diff(a.train) > 0).all() and (np.diff(a.val) > 0).all()


def test_rows_come_only_from_the_pool_with_known_values():
    other = [(1, 1, "test")] * 500 + [(0, 0, "val")] * 500 + [(1, -1, "train")] * 300 + [(-1, 0, "train")] * 300
    meta = make_frame({(1, 0): 60, (1, 1): 40, (0, 0): 50, (0, 1): 70}, extra=other)
    split = Correlation("y", "s", 0.5).split_indices(meta)
    rows = meta.iloc[np.concatenate([split.train, split.val])]
    assert (rows.split == "train").all() and rows.y.isin([0, 1]).all() and rows.s.isin([0, 1]).all()
    assert len(np.intersect1d(split.train, split.val)) == 0
    assert len(split.train) + len(split.val) == 80  # L = 40
    test_rows = Correlation("y", "s", 0.5, pool="test", size=10).split_indices(meta.assign(split="test"))
    assert len(test_rows.train) + len(test_rows.val) == 20


def test_requested_size_uses_only_needed_cells():
    meta = make_frame({(1, 0): 500, (1, 1): 0, (0, 0): 0, (0, 1): 500})
    split = Correlation("y", "s", 0.0, size=400).split_indices(meta)
    assert cell_counts(meta, split.train) == {(1, 0): 320, (1, 1): 0, (0, 0): 0, (0, 1): 320}


def test_natural_level_is_share_of_s1_among_positives():
    meta = make_frame({(1, 0): 30, (1, 1): 10, (0, 0): 5, (0, 1): 5}, extra=[(1, 1, "test")] * 99)
    assert natural_level(meta, "y", "s") == 0.25


def test_subselection_matches_the_papers_constrain_nums():
    # base: level 0.2, 1024 training rows -> 102 counter and 410 stereotypical rows per label;
    # the paper truncates where this rounds (910 -> 912 at 0.1: 46 counter + 410 per label).
    meta = make_frame({(1, 0): 700, (1, 1): 700, (0, 0): 700, (0, 1): 700})
    base = Correlation("y", "s", 0.2, n=1024, seed=2).split_indices(meta)
    for level, n in [(0.2, 1024), (0.3, 682), (0.5, 408), (0.8, 256), (0.0, 820), (0.1, 912)]:
        spec = SubSelection("y", "s", level, base_n=1024, base_level=0.2, seed=2)
        split = spec.split_indices(meta)
        assert len(split.train) == n, level
        assert np.isin(split.train, base.train).all() and np.isin(split.val, base.val).all()
        counts = cell_counts(meta, split.train)
        assert counts[1, 1] + counts[1, 0] == counts[0, 0] + counts[0, 1] == n // 2
        assert counts[1, 1] == int(np.floor(level * n / 2 + 0.5))
        # the cell that would have to grow is held at its base count
        assert counts[1, 1] == 102 if level > 0.2 else counts[1, 0] == 410


def test_random_cells_and_levels_stay_balanced_within_rounding():
    rng = np.random.default_rng(123)
    for _ in range(25):
        sizes = dict(zip([(1, 0), (1, 1), (0, 0), (0, 1)], rng.integers(5, 90, size=4).tolist()))
        meta = make_frame(sizes, seed=int(rng.integers(1000)))
        level = float(rng.random())
        val_fraction = float(rng.choice([0.0, 0.1, 0.2, 0.5]))
        split = Correlation("y", "s", level, val_fraction=val_fraction, seed=int(rng.integers(1000))).split_indices(meta)
        counts = cell_counts(meta, split.train)
        h = counts[1, 0] + counts[1, 1]
        assert h == counts[0, 0] + counts[0, 1] == counts[0, 0] + counts[1, 0]  # labels and groups balanced
        assert abs(counts[1, 1] - level * h) <= 0.5 and counts[1, 1] == counts[0, 0]
        lowest = min(sizes.values())
        assert len(split.train) + len(split.val) == 2 * lowest
        assert len(np.intersect1d(split.train, split.val)) == 0
