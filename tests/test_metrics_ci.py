"""Replicate and bootstrap confidence intervals."""

import numpy as np
from scipy import stats
import pytest
from sklearn.metrics import roc_auc_score

import analyze.metrics.intervals as metrics_ci
from analyze import metrics as M
from extract.errors import UserError

Z95 = 1.959963984540054  # the normal 97.5% quantile


def test_replicate_ci_formula_by_hand():
    ci = M.replicate_ci([1.0, 2.0, 3.0, 4.0, 5.0], method="normal")  # the normal option
    # sd (ddof=1) = sqrt(2.5); half width = Z95 * sqrt(2.5) / sqrt(5) = Z95 * sqrt(0.5)
    assert ci.estimate == 3.0
    assert ci.high - ci.estimate == pytest.approx(Z95 * np.sqrt(0.5), abs=1e-12)
    assert ci.estimate - ci.low == pytest.approx(Z95 * np.sqrt(0.5), abs=1e-12)


def test_replicate_ci_vectorized_equals_loop_and_divides_by_sqrt_k():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 7))
    ci = M.replicate_ci(values, axis=0, method="t")
    for j in range(7):
        column = values[:, j]
        half = stats.t.ppf(0.975, 4) * np.std(column, ddof=1) / np.sqrt(5)
        assert ci.estimate[j] == pytest.approx(column.mean(), abs=1e-12)
        assert ci.low[j] == pytest.approx(column.mean() - half, abs=1e-12)
        assert ci.high[j] == pytest.approx(column.mean() + half, abs=1e-12)
    transposed = M.replicate_ci(values.T, axis=1, method="t")
    np.testing.assert_allclose(transposed.low, ci.low, atol=1e-12)


def test_replicate_ci_drops_nan_replicates_and_needs_two():
    with pytest.warns(M.UndefinedMetricWarning, match="left it out"):
        ci = M.replicate_ci([1.0, np.nan, 3.0])  # t with 1 df by default
    assert ci.estimate == 2.0
    assert ci.high == pytest.approx(2.0 + stats.t.ppf(0.975, 1) * np.sqrt(2.0) / np.sqrt(2), abs=1e-12)
    with pytest.warns(M.UndefinedMetricWarning, match="fewer than two"):
        ci = M.replicate_ci([4.0])
    assert ci.estimate == 4.0 and np.isnan(ci.low) and np.isnan(ci.high)


def data(seed=0, n=60, runs=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = rng.normal(size=(runs, n)) + y
    return y, scores


def test_bootstrap_is_deterministic_for_a_seed_and_varies_with_it():
    y, scores = data()
    first = M.bootstrap_ci(M.roc_auc, y, scores, n_resamples=200, random_state=3)
    again = M.bootstrap_ci(M.roc_auc, y, scores, n_resamples=200, random_state=3)
    other = M.bootstrap_ci(M.roc_auc, y, scores, n_resamples=200, random_state=4)
    np.testing.assert_array_equal(first.low, again.low)
    np.testing.assert_array_equal(first.high, again.high)
    assert not np.array_equal(first.low, other.low)


def test_bootstrap_equals_a_loop_with_the_same_draws():
    y, scores = data(1, runs=1)
    ci = M.bootstrap_ci(M.roc_auc, y, scores[0], n_resamples=150, confidence_level=0.9,
                        random_state=7)
    index = np.random.default_rng(7).integers(0, len(y), size=(150, len(y)))
    loop = [roc_auc_score(y[i], scores[0, i]) for i in index]
    assert ci.estimate == pytest.approx(roc_auc_score(y, scores[0]), abs=1e-12)
    assert ci.low == pytest.approx(np.percentile(loop, 5), abs=1e-12)
    assert ci.high == pytest.approx(np.percentile(loop, 95), abs=1e-12)


def test_bootstrap_batches_do_not_change_the_result(monkeypatch):
    y, scores = data(2)
    whole = M.bootstrap_ci(M.roc_auc, y, scores, n_resamples=64, random_state=1)
    monkeypatch.setattr(metrics_ci, "MAX_BATCH_ELEMENTS", 5 * scores.size)  # 5 per batch
    batched = M.bootstrap_ci(M.roc_auc, y, scores, n_resamples=64, random_state=1)
    np.testing.assert_array_equal(whole.low, batched.low)
    np.testing.assert_array_equal(whole.high, batched.high)


def test_bootstrap_runs_are_paired_and_match_single_run_calls():
    y, scores = data(3, runs=4)
    together = M.bootstrap_ci(M.roc_auc, y, scores, n_resamples=100, random_state=0)
    assert together.low.shape == (4,)
    for r in range(4):
        alone = M.bootstrap_ci(M.roc_auc, y, scores[r], n_resamples=100, random_state=0)
        assert together.low[r] == alone.low and together.high[r] == alone.high
        assert alone.low <= alone.estimate <= alone.high


def test_bootstrap_of_a_thresholded_gap_with_nan_resamples():
    rng = np.random.default_rng(5)
    n = 12
    y, group = rng.integers(0, 2, n), (np.arange(n) < 3).astype(int)  # small group 1

    def gap(y_rows, scores_rows, group_rows):
        y_pred, _ = M.predict_top_p(y_rows, scores_rows)
        return M.fpr_gap(y_rows, y_pred, group_rows)

    scores = rng.normal(size=n)
    with pytest.warns(M.UndefinedMetricWarning, match="left those resamples out"):
        ci = M.bootstrap_ci(gap, y, scores, group, n_resamples=300, random_state=0)
    assert np.isfinite(ci.low) and ci.low <= ci.high


def test_bootstrap_rejects_bad_statistics_and_parameters():
    y, scores = data()
    with pytest.raises(UserError, match="one value per row"):
        M.bootstrap_ci(lambda a, b: np.zeros(3), y, scores, n_resamples=5)
    with pytest.raises(UserError, match="confidence_level"):
        M.bootstrap_ci(M.roc_auc, y, scores, confidence_level=95)
