"""evaluate_runs: the per-run table equals a loop over runs with sklearn and fairlearn."""

import warnings

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, roc_auc_score

from analyze import metrics as M


def runs_data(seed, runs=5, n=150, m=90):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    y = np.where(rng.random(n) < 0.3, group, rng.integers(0, 2, n))
    scores = rng.normal(size=(runs, n)) + y + 0.5 * group
    y_train, group_train = rng.integers(0, 2, (runs, m)), rng.integers(0, 2, (runs, m))
    y_train = np.where(rng.random((runs, m)) < 0.5, 1 - group_train, y_train)  # 0 over-rep.
    return y, scores, group, y_train, group_train


@pytest.mark.parametrize("seed", [0, 1])
def test_top_p_table_matches_loop(seed):
    y, scores, group, y_train, group_train = runs_data(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # continuous scores: nothing undefined here
        table = M.evaluate_runs(y, scores, group, training=M.TrainingRows(y_true=y_train, group=group_train))
    assert list(table.index) == list(range(len(scores)))
    np.testing.assert_array_equal(table["over_represented_group"], 0.0)
    for r, row in table.iterrows():
        order = np.sort(scores[r])
        y_pred = scores[r] > order[-(y.sum() + 1)]
        frame = MetricFrame(metrics={"fpr": false_positive_rate, "tpr": true_positive_rate,
                                     "acc": accuracy_score},
                            y_true=y, y_pred=y_pred, sensitive_features=group)
        fpr, tpr = frame.by_group["fpr"], frame.by_group["tpr"]
        expected = {
            "auc": roc_auc_score(y, scores[r]),
            "auc_group1": roc_auc_score(y[group == 1], scores[r, group == 1]),
            "accuracy": accuracy_score(y, y_pred),
            "accuracy_group0": frame.by_group["acc"][0],
            "fpr_group1": fpr[1],
            "fpr_gap": fpr[1] - fpr[0],
            "tpr_gap": tpr[1] - tpr[0],
            "fpr_gap_stereotype": fpr[0] - fpr[1],  # group 0 is over-represented
            "equalized_odds_difference": equalized_odds_difference(
                y, y_pred, sensitive_features=group),
            "demographic_parity_difference": demographic_parity_difference(
                y, y_pred, sensitive_features=group),
            "worst_sensitive_group_accuracy": frame.by_group["acc"].min(),
        }
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, abs=1e-12), column
        assert row["bias_amplification_a_to_t"] == pytest.approx(M.binary_bias_amplification(
            y, group, y_pred, direction="A->T", training=M.TrainingRows(y_true=y_train[r], group=group_train[r])))


def test_val_policy_and_scalar_inputs_give_one_row():
    y, scores, group, _, _ = runs_data(3, runs=1)
    val_y, val_scores = y[:40], scores[0, :40]
    table = M.evaluate_runs(y, scores[0], group, policy="val_top_p",
                            validation=M.ValidationRows(y_true=val_y, scores=val_scores),
                            training=M.TrainingRows(over_represented=1))
    assert len(table) == 1
    threshold = np.sort(val_scores)[-(val_y.sum() + 1)]
    assert table["threshold"][0] == threshold
    y_pred = scores[0] > threshold
    assert table["accuracy"][0] == pytest.approx(accuracy_score(y, y_pred))
    assert table["fpr_gap_stereotype"][0] == pytest.approx(table["fpr_gap"][0])


def test_missing_direction_gives_nan_stereotype_gap_with_reason():
    y, scores, group, _, _ = runs_data(4, runs=2)
    with pytest.warns(M.UndefinedMetricWarning, match="no over-represented group"):
        table = M.evaluate_runs(y, scores, group, policy="fixed", threshold=0.0)
    assert table["fpr_gap_stereotype"].isna().all() and table["fpr_gap"].notna().all()
