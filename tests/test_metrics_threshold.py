"""Threshold policies: the reference top-P rule, top-P fitted on validation, fixed (exact top-P under ties:
test_metrics_threshold_ties.py)."""

import warnings

import numpy as np
import pytest

from analyze import metrics as M
from extract.errors import UserError


def reference_top_p(y, probs):
    """The paper's rule, verbatim: thr = sort(probs)[-(P+1)]; pred = probs > thr (P < n)."""
    n_pos = int(np.sum(y))
    thr = np.sort(probs)[-(n_pos + 1)]
    return probs > thr, thr


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_top_p_matches_reference_rule_and_loop(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (8, 40))
    scores = np.round(rng.random((8, 40)) * 10) / 10  # ties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)  # tie notices
        y_pred, thr = M.predict_top_p(y, scores, ties="negative")
        exact, exact_thr = M.predict_top_p(y, scores)
        np.testing.assert_array_equal(exact_thr, thr)  # same cut-off, ties decided differently
        np.testing.assert_array_equal(exact.sum(axis=1), y.sum(axis=1))
        for r in range(8):
            expected_pred, expected_thr = reference_top_p(y[r], scores[r])
            np.testing.assert_array_equal(y_pred[r], expected_pred)
            assert thr[r] == expected_thr
            assert (expected_pred <= exact[r]).all()  # the exact rule adds tied rows only
            single_pred, single_thr = M.predict(scores[r], policy="top_p_reference", y_true=y[r])
            np.testing.assert_array_equal(single_pred, expected_pred)
            assert single_thr == expected_thr


def test_top_p_without_ties_predicts_exactly_p_positives():
    rng = np.random.default_rng(5)
    y, scores = rng.integers(0, 2, (4, 100)), rng.normal(size=(4, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y_pred, _ = M.predict_top_p(y, scores)
    np.testing.assert_array_equal(y_pred.sum(axis=1), y.sum(axis=1))
    # the predicted positives are the highest scores
    for r in range(4):
        assert scores[r, y_pred[r]].min() > scores[r, ~y_pred[r]].max()


def test_ties_at_cutoff_go_negative_with_a_warning():
    y = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])  # P=2; the 2nd and 3rd highest tie
    with pytest.warns(M.UndefinedMetricWarning, match="tie at the cut-off"):
        y_pred, thr = M.predict_top_p(y, scores, ties="negative")
    assert thr == 0.5
    np.testing.assert_array_equal(y_pred, [True, False, False, False, False])
    exact, _ = M.predict_top_p(y, scores)
    assert exact.sum() == 2 and exact[0] and not exact[4]


def test_p_zero_and_p_all():
    scores = np.array([0.3, 0.2, 0.9, -np.inf])
    y_pred, thr = M.predict_top_p(np.zeros(4, int), scores)
    assert not y_pred.any() and thr == 0.9
    y_pred, thr = M.predict_top_p(np.ones(4, int), scores)
    assert y_pred.all() and thr == -np.inf


def test_all_tied_scores_predict_nothing_positive_under_the_reference_rule():
    with pytest.warns(M.UndefinedMetricWarning):
        y_pred, thr = M.predict_top_p([1, 0, 1, 0], [0.4] * 4, ties="negative")
    assert not y_pred.any() and thr == 0.4
    exact, _ = M.predict_top_p([1, 0, 1, 0], [0.4] * 4)
    assert exact.sum() == 2


def test_top_p_with_masks_equals_loop_on_subsets():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, (6, 30))
    scores = rng.normal(size=(6, 30))
    mask = rng.random((6, 30)) < 0.5
    y_pred, thr = M.predict_top_p(y, scores, mask=mask, ties="negative")
    for r in range(6):
        expected, expected_thr = reference_top_p(y[r, mask[r]], scores[r, mask[r]])
        np.testing.assert_array_equal(y_pred[r, mask[r]], expected)
        assert not y_pred[r, ~mask[r]].any()
        assert thr[r] == expected_thr


def test_empty_evaluation_set_gives_nan_threshold():
    with pytest.warns(M.UndefinedMetricWarning, match="no rows"):
        thr = M.top_p_threshold([1, 0], [0.2, 0.1], mask=np.zeros(2, bool))
    assert np.isnan(thr)


def test_val_fitted_threshold_applied_to_test():
    rng = np.random.default_rng(2)
    val_y, val_s = rng.integers(0, 2, (3, 50)), rng.normal(size=(3, 50))
    test_s = rng.normal(size=(3, 70))
    y_pred, thr = M.predict(test_s, policy="val_top_p", val_scores=val_s, val_y_true=val_y)
    for r in range(3):
        _, expected_thr = reference_top_p(val_y[r], val_s[r])
        assert thr[r] == expected_thr
        np.testing.assert_array_equal(y_pred[r], test_s[r] > expected_thr)
    # one shared test set, per-run validation sets
    y_shared, _ = M.predict(test_s[0], policy="val_top_p", val_scores=val_s, val_y_true=val_y)
    assert y_shared.shape == (3, 70)
    np.testing.assert_array_equal(y_shared[1], test_s[0] > thr[1])


def test_fixed_threshold_is_strict_and_configurable():
    probs = np.array([0.2, 0.5, 0.7])
    y_pred, thr = M.predict(probs, policy="fixed")
    np.testing.assert_array_equal(y_pred, [False, False, True])
    assert thr == 0.5
    logits = np.array([[-1.0, 0.0, 2.0]])
    y_pred, _ = M.predict(logits, policy="fixed", threshold=0.0)
    np.testing.assert_array_equal(y_pred, [[False, False, True]])


def test_policy_errors_are_user_errors():
    with pytest.raises(UserError, match="y_true"):
        M.predict([0.1, 0.2], policy="top_p")
    with pytest.raises(UserError, match="val_scores"):
        M.predict([0.1, 0.2], policy="val_top_p")
    with pytest.raises(UserError, match="Unknown threshold policy"):
        M.predict([0.1, 0.2], policy="median")
    with pytest.raises(UserError, match="validation runs"):
        M.predict(np.zeros((3, 4)), policy="val_top_p", val_scores=np.zeros((2, 4)),
                  val_y_true=np.zeros((2, 4), int))
