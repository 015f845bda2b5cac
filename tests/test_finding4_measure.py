"""Finding 4's measurement as W&R's vary_corr.py: the threshold set on the run's validation rows, the test rows
resampled to the dataset's natural level, the TPR gap, FPR gap and AUC (r4_* columns), checked against a direct
numpy computation on constructed scores; and the columns flowing from a finetune record through collect."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from analyze.config import RunContext
from analyze.finetune.evaluate import R4_COLUMNS, dataset_level, finding4_metrics, natural_test_rows
from analyze.finetune.runner import finetune_cells
from analyze.results.collect import collect
from analyze.subsets import Correlation
from analyze.subsets.core import SubsetSplit
from tests.test_finetune_runner import TINY, adapter, base  # noqa: F401  (module fixtures)


def cells(counts: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled labels and groups with ``counts[(y, s)]`` rows per cell."""
    y = np.concatenate([np.full(k, key[0]) for key, k in counts.items()])
    s = np.concatenate([np.full(k, key[1]) for key, k in counts.items()])
    order = rng.permutation(len(y))
    return y[order], s[order]


def test_the_resampled_test_set_has_the_papers_composition():
    rng = np.random.default_rng(0)
    y, s = cells({(1, 1): 300, (1, 0): 500, (0, 1): 700, (0, 0): 260}, rng)
    q = 0.3
    chosen = natural_test_rows(y, s, level=q, seed=3)
    assert len(np.unique(chosen)) == len(chosen) and chosen.min() >= 0 and chosen.max() < len(y)
    yc, sc = y[chosen], s[chosen]
    count = {(a, b): int(((yc == a) & (sc == b)).sum()) for a in (0, 1) for b in (0, 1)}
    # vary_corr.py: L = min(|s1 y1| / q, |s0 y0| / q, |s0 y1| / (1 - q), |s1 y0| / (1 - q)); cells L*q, L*(1-q)
    big_l = min(300 / q, 260 / q, 500 / (1 - q), 700 / (1 - q))
    expected = {(1, 1): big_l * q, (0, 0): big_l * q, (1, 0): big_l * (1 - q), (0, 1): big_l * (1 - q)}
    assert all(abs(count[k] - expected[k]) <= 2 for k in expected)
    assert count[1, 1] + count[1, 0] == count[0, 1] + count[0, 0]  # 50% positives
    assert count[1, 1] + count[0, 1] == count[1, 0] + count[0, 0]  # 50% per group
    assert count[1, 1] / (count[1, 1] + count[1, 0]) == pytest.approx(q, abs=1 / (count[1, 1] + count[1, 0]))
    assert np.array_equal(chosen, natural_test_rows(y, s, level=q, seed=3))  # seeded
    assert not np.array_equal(chosen, natural_test_rows(y, s, level=q, seed=4))


def test_the_gaps_match_a_direct_computation():
    rng = np.random.default_rng(1)
    labels, groups = cells({(1, 1): 400, (1, 0): 200, (0, 1): 250, (0, 0): 450}, rng)
    rows = rng.permutation(len(labels))
    train, val, test = np.sort(rows[:300]), np.sort(rows[300:600]), np.sort(rows[600:])
    labels[train[:7]] = -1  # unknown labels are left out of the level
    scores = rng.normal(size=len(labels)) + 1.2 * (labels == 1) + 0.5 * (groups == 1)  # group 1 scores higher
    out = finding4_metrics(test_scores=scores[test], val_scores=scores[val], labels=labels, groups=groups,
                           split=SubsetSplit(train=train, val=val), test=test, seed=11)
    assert set(out) == set(R4_COLUMNS)
    known = labels >= 0
    q = np.mean(groups[known & (labels == 1)] == 1)
    assert out["r4_level"] == pytest.approx(q) == dataset_level(labels, groups)
    chosen = test[natural_test_rows(labels[test], groups[test], level=q, seed=11)]
    assert out["r4_n_test"] == len(chosen) and out["r4_seed"] == 11
    # the reference rule on the validation rows: thr = sort(val)[-(P_val + 1)], pred = score > thr
    v = np.sort(scores[val])
    thr = v[-(int((labels[val] == 1).sum()) + 1)]
    pred, y, s = scores[chosen] > thr, labels[chosen], groups[chosen]
    tpr = [pred[(y == 1) & (s == g)].mean() for g in (0, 1)]
    fpr = [pred[(y == 0) & (s == g)].mean() for g in (0, 1)]
    assert out["r4_threshold"] == pytest.approx(thr)
    assert out["r4_tpr_gap"] == pytest.approx(tpr[1] - tpr[0])
    assert out["r4_fpr_gap"] == pytest.approx(fpr[1] - fpr[0])
    assert out["r4_auc"] == pytest.approx(roc_auc_score(y, scores[chosen]))
    assert out["r4_tpr_gap"] > 0  # group 1 scores higher: more of its positives pass the cut-off


def test_an_unresampleable_test_pool_gives_nan_gaps_and_no_rows():
    labels = np.array([1, 1, 0, 0, 1, 0])
    groups = np.array([1, 1, 1, 1, 0, 0])
    test = np.array([0, 1, 2, 3])  # every test row in group 1: no resample at any level
    out = finding4_metrics(test_scores=np.arange(4.0), val_scores=np.array([0.1, 0.9]), labels=labels, groups=groups,
                           split=SubsetSplit(train=np.array([], dtype=int), val=np.array([4, 5])), test=test, seed=0)
    assert out["r4_n_test"] == 0 and np.isnan(out["r4_tpr_gap"]) and np.isnan(out["r4_auc"])


def test_finetune_records_carry_the_columns_through_collect(adapter, base, tmp_path):  # noqa: F811
    specs = [Correlation("hat", "dark_skin", 0.5, n=60, seed=s) for s in (0, 1)]
    finetune_cells(specs, adapter=adapter, base=base, config=TINY, context=RunContext(out=tmp_path, progress=False))
    table = collect(tmp_path)
    assert set(R4_COLUMNS) <= set(table.columns) and len(table) == 2
    meta = adapter.metadata()
    level = dataset_level(meta["hat"].to_numpy(), meta["dark_skin"].to_numpy())
    assert table["r4_level"].to_numpy() == pytest.approx([level, level])
    assert sorted(table["r4_seed"]) == [0, 1] and (table["r4_n_test"] > 0).all()
    assert table[["r4_tpr_gap", "r4_fpr_gap", "r4_auc"]].notna().all().all()
    assert ((table["r4_tpr_gap"].abs() <= 1) & (table["r4_auc"].between(0, 1))).all()
