"""Multi-label metrics against scikit-learn and a direct loop: top-k accuracy, (macro) AP, by group."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, top_k_accuracy_score

from analyze.metrics.base import UndefinedMetricWarning
from analyze.metrics.multilabel import average_precision, by_group, macro_average_precision, top_k_accuracy, top_k_hits
from extract.errors import UserError


def multilabel_data(seed, n=120, c=9, empty=(2, 6), ties=False):
    """Random multi-hot labels (classes ``empty`` without positives) and correlated scores."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.05, 0.5, size=c)).astype(int)
    y[:, list(empty)] = 0
    scores = rng.normal(size=(n, c)) + 1.2 * y
    if ties:
        scores = np.round(scores, 1)  # many tied thresholds
    return y, scores


@pytest.mark.parametrize("seed, ties", [(0, False), (1, False), (2, True), (3, True)])
def test_average_precision_matches_sklearn(seed, ties):
    y, s = multilabel_data(seed, ties=ties)
    positive = y.any(axis=0)
    with pytest.warns(UndefinedMetricWarning, match="a class without a positive row"):
        per_class = average_precision(y, s)
    assert np.isnan(per_class[~positive]).all()
    np.testing.assert_allclose(per_class[positive], average_precision_score(y[:, positive], s[:, positive],
                                                                            average=None), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # classes without positives are skipped silently
        macro = macro_average_precision(y, s)
    assert macro == pytest.approx(average_precision_score(y[:, positive], s[:, positive], average="macro"),
                                  rel=1e-12)


def test_average_precision_mask_and_runs():
    y, s = multilabel_data(4, ties=True)
    rng = np.random.default_rng(5)
    runs = np.stack([s + rng.normal(scale=0.5, size=s.shape) for _ in range(3)])
    masks = rng.random((3, len(y))) < 0.6
    got = macro_average_precision(y, runs, mask=masks)
    assert got.shape == (3,)
    for r in range(3):
        rows = masks[r]
        pos = y[rows].any(axis=0)
        expected = average_precision_score(y[rows][:, pos], runs[r][rows][:, pos], average="macro")
        assert got[r] == pytest.approx(expected, rel=1e-12)
        assert macro_average_precision(y[rows], runs[r][rows]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_matches_sklearn_on_single_label_rows(k):
    rng = np.random.default_rng(k)
    n, c = 200, 8
    labels = rng.integers(0, c, size=n)
    scores = rng.normal(size=(n, c)) + 0.8 * np.eye(c)[labels]
    got = top_k_accuracy(np.eye(c, dtype=int)[labels], scores, k=k)
    assert got == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(c)), abs=1e-12)
    assert 0 < got < 1


def test_top_k_matches_direct_loop_on_multilabel_rows():
    y, s = multilabel_data(6, n=300, c=12, empty=())
    y[0] = 0  # a row without a true class (there are others): left out
    assert (~y.any(axis=1)).sum() > 1
    runs = np.stack([s, -s, s[::-1]])
    for k in (1, 3, 5):
        with pytest.warns(UndefinedMetricWarning, match="rows without a true class"):
            got = top_k_accuracy(y, runs, k=k)
        for r, scores in enumerate(runs):
            hits = []
            for row in np.flatnonzero(y.any(axis=1)):
                top = np.argsort(-scores[row])[:k]
                hits.append(any(y[row, j] for j in top))
            assert got[r] == pytest.approx(np.mean(hits), abs=1e-12)
    has = y.any(axis=1)
    assert top_k_accuracy(y[has], s[has], k=12) == 1.0


def test_top_k_ties_count_for_the_true_class():
    y = np.array([[0, 1, 0, 0]])
    s = np.array([[0.9, 0.5, 0.5, 0.1]])
    hits, has_true = top_k_hits(y, s, k=2)
    assert hits.tolist() == [[True]] and has_true.tolist() == [[True]]
    assert top_k_accuracy(y, s, k=1) == 0.0
    assert top_k_accuracy(y, np.array([[0.9, 0.5, 0.6, 0.1]]), k=2) == 0.0


def test_by_group_equals_subsets():
    y, s = multilabel_data(7, n=240, c=10, empty=(3,))
    rng = np.random.default_rng(8)
    y[~y.any(axis=1), 0] = 1  # every row has a true class
    income = rng.integers(1, 4, size=len(y))
    grouped = by_group(top_k_accuracy, y, s, income, k=3)
    assert list(grouped) == [1, 2, 3]
    for g, value in grouped.items():
        assert value == pytest.approx(top_k_accuracy(y[income == g], s[income == g], k=3))
    region = np.array(["Asia", "Africa", "Europe"])[rng.integers(0, 3, size=len(y))]
    keep = rng.random(len(y)) < 0.7
    ap = by_group(macro_average_precision, y, s, region, mask=keep)
    assert list(ap) == ["Africa", "Asia", "Europe"]
    for g, value in ap.items():
        rows = keep & (region == g)
        pos = y[rows].any(axis=0)
        assert value == pytest.approx(average_precision_score(y[rows][:, pos], s[rows][:, pos], average="macro"))


def test_undefined_and_bad_inputs():
    y = np.zeros((4, 3), int)
    s = np.arange(12.0).reshape(4, 3)
    with pytest.warns(UndefinedMetricWarning, match="no class with a positive row"):
        assert np.isnan(macro_average_precision(y, s))
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(top_k_accuracy(y, s, k=1))
    y[0, 1] = 1
    with pytest.raises(UserError, match="k=4 must be an integer from 1"):
        top_k_accuracy(y, s, k=4)
    with pytest.raises(UserError, match="only 0 and 1"):
        top_k_accuracy(y - 1, s)
    with pytest.raises(UserError, match="NaN"):
        macro_average_precision(y, np.where(s > 5, np.nan, s))
    with pytest.raises(UserError, match="incompatible shapes"):
        macro_average_precision(y, s[:3])
    with pytest.raises(UserError, match="n_classes"):
        top_k_accuracy(y[:, 0], s[:, 0])
