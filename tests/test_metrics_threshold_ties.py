"""Top-P under ties: exactly P positives on saturated float32 probabilities, and the cell is flagged, not a silent 0 gap."""

import warnings

import numpy as np
import pytest

from analyze import metrics as M
from analyze.metrics.diagnosis import diagnose_record
from analyze.metrics.threshold import tie_priority, threshold_miss


def saturated(seed=0, n=400):
    """A confident model's float32 probabilities: most positives (and some negatives) exactly 1.0."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    group = rng.integers(0, 2, n)
    logits = np.where(y == 1, 30.0, -3.0) + rng.normal(0, 2, n) + 35.0 * (group == 1)
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    assert (probs == 1.0).sum() > y.sum()  # more exact 1.0s than positives: the cut-off ties
    return y, group, probs.astype(np.float64), logits


def test_top_p_predicts_exactly_p_positives_on_saturated_probabilities():
    y, group, probs, _ = saturated()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no tie notice: the tie break resolves them
        y_pred, thr = M.predict_top_p(y, probs)
    assert y_pred.sum() == y.sum()
    assert thr == 1.0  # the (P+1)-th highest score is a tied 1.0
    # rows above the cut-off are all positive; the tied ones are split by the fixed priority
    assert y_pred[probs > thr].all()
    tied = np.flatnonzero(probs == thr)
    chosen = tied[y_pred[tied]]
    assert tie_priority(len(y))[chosen].max() < tie_priority(len(y))[np.setdiff1d(tied, chosen)].min()
    # deterministic: the same call gives the same rows, over runs and alone
    again, _ = M.predict_top_p(np.tile(y, (3, 1)), np.tile(probs, (3, 1)))
    assert (again == y_pred).all()


def test_the_reference_rule_stays_available_and_predicts_nothing_here():
    y, _, probs, _ = saturated()
    with pytest.warns(M.UndefinedMetricWarning, match="tie at the cut-off"):
        y_pred, _ = M.predict(probs, policy="top_p_reference", y_true=y)
    assert y_pred.sum() == 0


def test_a_saturated_cell_is_flagged_not_a_silent_zero_gap():
    y, group, probs, logits = saturated()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)
        reference = M.evaluate_runs(y, probs, group, policy="top_p_reference").iloc[0]
        exact = M.evaluate_runs(y, probs, group, policy="top_p").iloc[0]
        on_logits = M.evaluate_runs(y, logits, group, policy="top_p").iloc[0]
    # the reference rule: every row negative, both FPRs 0, a "gap" of exactly 0 ...
    assert reference["n_predicted_positive"] == 0 and reference["fpr_gap"] == 0.0
    # ... which the diagnosis names instead of letting it pass as a real 0.000
    for row in (reference, exact):
        diagnosis = diagnose_record({"runner": "probe", "metrics": row.to_dict(), "hyperparameters": {}})
        assert diagnosis.flags["degenerate"], row.to_dict()
        assert "ties" in diagnosis.columns()["diagnosis"]
    assert exact["n_predicted_positive"] == y.sum() and exact["threshold_miss"] > 1
    # ranked on logits nothing ties: exactly P positives, no flag, and the gap is a real measurement
    assert on_logits["n_predicted_positive"] == y.sum() and on_logits["threshold_miss"] == 0
    assert not diagnose_record({"runner": "probe", "metrics": on_logits.to_dict(), "hyperparameters": {}}).flagged
    assert on_logits["fpr_gap"] > 0.0


def test_threshold_miss_per_policy():
    y = np.array([1, 1, 0, 0, 0, 1])
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.5])  # P = 3; four rows tie at 0.5 for two places
    assert threshold_miss(scores, policy="top_p", y_true=y) == 2
    assert threshold_miss(scores, policy="val_top_p", val_scores=scores, val_y_true=y) == 2
    assert np.isnan(threshold_miss(scores, policy="fixed"))
    assert threshold_miss(np.arange(6.0), policy="top_p_reference", y_true=y) == 0


def test_fixed_and_validation_policies_on_logits_avoid_saturation():
    y, group, probs, logits = saturated(seed=3)
    fixed_probs, _ = M.predict(probs, policy="fixed", threshold=0.5)
    fixed_logits, _ = M.predict(logits, policy="fixed", threshold=0.0)
    np.testing.assert_array_equal(fixed_logits, logits > 0)
    assert fixed_probs.sum() == (probs > 0.5).sum()
    val_pred, cut = M.predict(logits, policy="val_top_p", val_scores=logits, val_y_true=y)
    assert val_pred.sum() == y.sum() and np.isfinite(cut)


@pytest.mark.parametrize("ties", ["break", "negative"])
def test_p_zero_and_p_all_and_masks(ties):
    scores = np.array([0.3, 0.2, 0.9, -np.inf])
    y_pred, thr = M.predict_top_p(np.zeros(4, int), scores, ties=ties)
    assert not y_pred.any() and thr == 0.9
    y_pred, thr = M.predict_top_p(np.ones(4, int), scores, ties=ties)
    assert y_pred.all() and thr == -np.inf
    rng = np.random.default_rng(9)
    y, s = rng.integers(0, 2, (6, 30)), np.round(rng.normal(size=(6, 30)))
    mask = rng.random((6, 30)) < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)
        y_pred, _ = M.predict_top_p(y, s, mask=mask, ties=ties)
    assert not (y_pred & ~mask).any()
    if ties == "break":
        np.testing.assert_array_equal(y_pred.sum(axis=1), (y.astype(bool) & mask).sum(axis=1))
