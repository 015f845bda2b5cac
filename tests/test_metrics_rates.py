"""Vectorized AUC, accuracy and group error rates against sklearn and fairlearn."""

import warnings

import numpy as np
import pytest
from fairlearn import metrics as fl
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from analyze import metrics as M
from extract.errors import UserError

SEEDS = [0, 1, 2, 3]


def make_runs(seed, n_runs=6, n=80, levels=6):
    """Labels, coarse scores (many ties), hard predictions and groups for n_runs runs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    group = rng.integers(0, 2, n)
    scores = np.round(rng.normal(size=(n_runs, n)) + y, 0) / levels  # ties on purpose
    y_pred = rng.integers(0, 2, (n_runs, n))
    return y, scores, y_pred, group


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_matches_sklearn_with_ties(seed):
    y, scores, _, group = make_runs(seed)
    assert len(np.unique(scores[0])) < len(scores[0]) / 4  # the data really has ties
    ours = M.roc_auc(y, scores)
    ours_group = M.roc_auc_by_group(y, scores, group)
    for r in range(len(scores)):
        assert ours[r] == pytest.approx(roc_auc_score(y, scores[r]), abs=1e-12)
        for g in (0, 1):
            sel = group == g
            expected = roc_auc_score(y[sel], scores[r, sel])
            assert ours_group[r, g] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_with_per_run_labels_and_masks_equals_loop(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (5, 60))
    scores = rng.normal(size=(5, 60)).astype(np.float32)
    scores[:, ::3] = 0.25  # a big tie block
    mask = rng.random((5, 60)) < 0.7
    ours = M.roc_auc(y, scores, mask=mask)
    for r in range(5):
        expected = roc_auc_score(y[r, mask[r]], scores[r, mask[r]])
        assert ours[r] == pytest.approx(expected, abs=1e-12)
        assert M.roc_auc(y[r], scores[r], mask=mask[r]) == pytest.approx(expected, abs=1e-12)


def test_auc_scalar_in_scalar_out_and_continuous_scores():
    rng = np.random.default_rng(7)
    y, s = rng.integers(0, 2, 500), rng.normal(size=500)
    value = M.roc_auc(y, s)
    assert np.ndim(value) == 0
    assert value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.roc_auc(y, -s) == pytest.approx(1 - value, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_and_rates_match_sklearn_and_fairlearn(seed):
    y, _, y_pred, group = make_runs(seed)
    counts = M.confusion_by_group(y, y_pred, group)
    overall = M.confusion(y, y_pred)
    for r in range(len(y_pred)):
        tn, fp, fn, tp = confusion_matrix(y, y_pred[r], labels=[0, 1]).ravel()
        assert (overall.tn[r], overall.fp[r], overall.fn[r], overall.tp[r]) == (tn, fp, fn, tp)
        assert M.accuracy(y, y_pred)[r] == pytest.approx(accuracy_score(y, y_pred[r]), abs=1e-12)
        for g in (0, 1):
            sel = group == g
            yt, yp = y[sel], y_pred[r, sel]
            assert counts.fpr[r, g] == pytest.approx(fl.false_positive_rate(yt, yp), abs=1e-12)
            assert counts.tpr[r, g] == pytest.approx(fl.true_positive_rate(yt, yp), abs=1e-12)
            assert counts.fnr[r, g] == pytest.approx(fl.false_negative_rate(yt, yp), abs=1e-12)
            expected_selection = fl.selection_rate(yt, yp)
            assert counts.selection_rate[r, g] == pytest.approx(expected_selection, abs=1e-12)
            assert counts.accuracy[r, g] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_group_differences_match_fairlearn(seed):
    y, _, y_pred, group = make_runs(seed)
    eod = M.equalized_odds_difference(y, y_pred, group)
    dpd = M.demographic_parity_difference(y, y_pred, group)
    raw = M.fpr_gap(y, y_pred, group)
    wga = M.worst_group_accuracy(y, y_pred, group)
    wsa = M.worst_group_accuracy(y, y_pred, group, groups="sensitive")
    for r in range(len(y_pred)):
        kw = dict(sensitive_features=group)
        assert eod[r] == pytest.approx(fl.equalized_odds_difference(y, y_pred[r], **kw), abs=1e-12)
        expected_dpd = fl.demographic_parity_difference(y, y_pred[r], **kw)
        assert dpd[r] == pytest.approx(expected_dpd, abs=1e-12)
        frame = fl.MetricFrame(metrics=fl.false_positive_rate, y_true=y, y_pred=y_pred[r], **kw)
        assert raw[r] == pytest.approx(frame.by_group[1] - frame.by_group[0], abs=1e-12)
        cells = fl.MetricFrame(metrics=accuracy_score, y_true=y, y_pred=y_pred[r],
                            sensitive_features=np.stack([y, group], axis=1))
        assert wga[r] == pytest.approx(cells.group_min(), abs=1e-12)
        by_s = fl.MetricFrame(metrics=accuracy_score, y_true=y, y_pred=y_pred[r], **kw)
        assert wsa[r] == pytest.approx(by_s.group_min(), abs=1e-12)


def test_stereotype_gap_sign_follows_training_association():
    # Training set: positives are mostly group 0 -> group 0 is over-represented.
    y_train = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    g_train = np.array([0, 0, 0, 1, 1, 0, 1, 1])
    assert M.over_represented_group(y_train, g_train) == 0.0
    assert M.over_represented_group(y_train, 1 - g_train) == 1.0
    y = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    g = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    pred = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1])  # FPR(0)=0.5, FPR(1)=0.25
    assert M.fpr_gap(y, pred, g) == pytest.approx(-0.25)
    assert M.stereotype_fpr_gap(y, pred, g, over_represented_group=0) == pytest.approx(0.25)
    assert M.stereotype_fpr_gap(y, pred, g, over_represented_group=1) == pytest.approx(-0.25)
    per_run = M.stereotype_fpr_gap(y, np.stack([pred, pred]), g,
                                   over_represented_group=np.array([0.0, 1.0]))
    np.testing.assert_allclose(per_run, [0.25, -0.25])


def test_over_represented_is_vectorized_with_masks():
    rng = np.random.default_rng(3)
    y, g = rng.integers(0, 2, (20, 40)), rng.integers(0, 2, (20, 40))
    mask = rng.random((20, 40)) < 0.6
    ours = M.over_represented_group(y, g, mask=mask)
    for r in range(20):
        yr, gr = y[r, mask[r]], g[r, mask[r]]
        cov = np.mean(yr * gr) - yr.mean() * gr.mean()
        expected = np.nan if abs(cov) < 1e-15 else float(cov > 0)
        np.testing.assert_equal(ours[r], expected)


# ----------------------------------------------------------------- degenerate inputs
def test_group_without_negatives_gives_nan_fpr_with_reason():
    y = np.array([1, 1, 0, 0, 1, 1])
    g = np.array([0, 0, 1, 1, 1, 1])  # group 0 has no negatives
    pred = np.array([1, 0, 1, 0, 1, 1])
    with pytest.warns(M.UndefinedMetricWarning, match="FPR is undefined \\(no negatives\\)"):
        fpr = M.confusion_by_group(y, pred, g).fpr
    assert np.isnan(fpr[0]) and fpr[1] == 0.5
    with pytest.warns(M.UndefinedMetricWarning):
        assert np.isnan(M.fpr_gap(y, pred, g))
    with pytest.warns(M.UndefinedMetricWarning):
        assert np.isnan(M.equalized_odds_difference(y, pred, g))


def test_single_class_auc_is_nan_with_reason():
    with pytest.warns(M.UndefinedMetricWarning, match="only one class"):
        assert np.isnan(M.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.warns(M.UndefinedMetricWarning, match="1 of 2"):
        auc = M.roc_auc_by_group([1, 0, 1, 1], [0.3, 0.1, 0.5, 0.2], [0, 0, 1, 1])
    assert auc[0] == 1.0 and np.isnan(auc[1])


def test_all_tied_scores_give_half_auc():
    assert M.roc_auc([0, 1, 0, 1], [0.5] * 4) == 0.5


@pytest.mark.filterwarnings("ignore::analyze.metrics.base.UndefinedMetricWarning")
def test_empty_mask_and_empty_cells_do_not_crash():
    y, pred, g = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1]), np.array([0, 0, 0, 0])
    with pytest.warns(M.UndefinedMetricWarning):
        assert np.isnan(M.roc_auc(y, [0.1, 0.2, 0.3, 0.4], mask=np.zeros(4, bool)))
    with pytest.warns(M.UndefinedMetricWarning, match="skipped"):
        assert M.worst_group_accuracy(y, pred, g) == 0.5  # the two group-1 cells are empty
    with pytest.warns(M.UndefinedMetricWarning, match="every group empty"):
        assert np.isnan(M.worst_group_accuracy(y, pred, g, mask=np.zeros(4, bool)))
    with pytest.warns(M.UndefinedMetricWarning, match="independent"):
        assert np.isnan(M.over_represented_group([1, 0, 1, 0], [1, 1, 0, 0]))


def test_no_warning_on_well_defined_inputs():
    y, scores, y_pred, group = make_runs(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.roc_auc_by_group(y, scores, group)
        M.equalized_odds_difference(y, y_pred, group)


def test_bad_input_raises_user_error():
    with pytest.raises(UserError, match="0 and 1"):
        M.roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(UserError, match="NaN"):
        M.roc_auc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(UserError, match="incompatible shapes"):
        M.roc_auc(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(UserError, match="shape"):
        M.roc_auc(np.zeros((2, 2, 2)), np.zeros(2))


def test_natural_over_represented_group_compares_with_the_group_base_rate():
    from analyze.metrics import natural_over_represented_group

    # train split: P(s=1 | y=1) = 0.4 < 0.5, but P(s=1) = 0.25, so s=1 is over-represented among positives
    y = np.array([1] * 5 + [0] * 15 + [1, 0, -1])
    s = np.array([1, 1, 0, 0, 0] + [1] * 3 + [0] * 12 + [0, 1, 1])
    split = np.array(["train"] * 20 + ["test", "test", "train"])
    assert natural_over_represented_group(y, s, split) == 1.0
    assert natural_over_represented_group(y, 1 - s, split) == 0.0
    assert np.isnan(natural_over_represented_group(y, s, np.array(["test"] * len(y))))
