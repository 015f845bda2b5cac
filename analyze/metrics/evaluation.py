"""Every metric of the package for a batch of runs at once: :func:`evaluate_runs`, one row per run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyze.metrics.base import broadcast_runs
from analyze.metrics.biasamp import binary_bias_amplification
from analyze.metrics.rows import TrainingRows, ValidationRows
from analyze.metrics.rates import (
    accuracy,
    confusion_by_group,
    demographic_parity_difference,
    equalized_odds_difference,
    over_represented_group,
    roc_auc,
    roc_auc_by_group,
    stereotype_fpr_gap,
    worst_group_accuracy,
)
from analyze.metrics.threshold import ThresholdPolicy, predict, threshold_miss


def _per_group_columns(prefix: str, values) -> dict[str, np.ndarray]:
    values = np.atleast_2d(values)
    return {f"{prefix}_group{g}": values[:, g] for g in (0, 1)}


def evaluate_runs(y_true, scores, group, *, policy: ThresholdPolicy = "top_p", mask=None, threshold: float = 0.5,
                  validation: ValidationRows | None = None, training: TrainingRows | None = None) -> pd.DataFrame:
    """Every metric of this module for a batch of runs: one row per run.

    Parameters
    ----------
    y_true, group : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
        Test labels and the binary sensitive attribute.
    scores : array-like of float, shape (n_samples,) or (n_runs, n_samples)
        Test scores (probabilities, or logits with ``threshold=0.0`` for ``"fixed"``).
    policy, mask, threshold
        Threshold policy, test rows per run and fixed threshold, as in :func:`predict`.
    validation : ValidationRows, optional
        Validation ``y_true``, ``scores`` and ``mask`` (policy ``"val_top_p"``).
    training : TrainingRows, optional
        Training (finetuning) ``y_true`` and ``group``, shape (n_train,) or (n_runs, n_train),
        and ``mask``: they set the stereotype direction and the bias-amplification indicator
        (test labels are used for the latter without them); or the group
        ``over_represented`` among training positives itself (sets the stereotype sign;
        derived from the training rows when omitted).

    Returns
    -------
    pandas.DataFrame, one row per run (index ``run``)
        ``auc``, ``auc_group{0,1}``, ``threshold``, ``accuracy``, ``accuracy_group{g}``,
        ``tpr_group{g}``, ``fpr_group{g}``, ``fnr_group{g}``, ``selection_rate_group{g}``,
        ``fpr_gap`` (FPR(s=1) - FPR(s=0)), ``tpr_gap`` (TPR(s=1) - TPR(s=0)),
        ``fpr_gap_stereotype`` (positive = stereotype-consistent; NaN without a direction),
        ``equalized_odds_difference``, ``demographic_parity_difference``,
        ``worst_group_accuracy`` ((y, s) cells), ``worst_sensitive_group_accuracy``,
        ``bias_amplification_a_to_t``, ``over_represented_group``; for the diagnosis
        (:mod:`analyze.metrics.diagnosis`): ``n_evaluated``, ``n_positive`` (P), ``n_predicted_positive``,
        ``scores_constant`` (1.0 when every evaluated score is equal) and ``threshold_miss``
        (:func:`analyze.metrics.threshold.threshold_miss`).
    """
    training = training or TrainingRows()
    val = validation or ValidationRows(y_true=None, scores=None)
    over_represented = training.over_represented
    if over_represented is None and training.y_true is not None:
        over_represented = over_represented_group(training.y_true, training.group, mask=training.mask)
    direction = np.nan if over_represented is None else over_represented
    y_pred, cutoff = predict(scores, policy=policy, y_true=y_true, mask=mask,
                             val_scores=val.scores, val_y_true=val.y_true,
                             val_mask=val.mask, threshold=threshold)
    counts = confusion_by_group(y_true, y_pred, group, mask=mask)
    tpr, fpr = np.atleast_2d(counts.tpr), np.atleast_2d(counts.fpr)
    miss = threshold_miss(scores, policy=policy, y_true=y_true, mask=mask, val_scores=val.scores,
                          val_y_true=val.y_true, val_mask=val.mask)
    columns = {"auc": roc_auc(y_true, scores, mask=mask),
               **_per_group_columns("auc", roc_auc_by_group(y_true, scores, group, mask=mask)),
               "threshold": cutoff,
               "accuracy": accuracy(y_true, y_pred, mask=mask),
               **_per_group_columns("accuracy", counts.accuracy),
               **_per_group_columns("tpr", tpr), **_per_group_columns("fpr", fpr),
               **_per_group_columns("fnr", counts.fnr),
               **_per_group_columns("selection_rate", counts.selection_rate),
               "fpr_gap": fpr[:, 1] - fpr[:, 0], "tpr_gap": tpr[:, 1] - tpr[:, 0],
               "fpr_gap_stereotype": stereotype_fpr_gap(
                   y_true, y_pred, group, over_represented_group=direction, mask=mask),
               "equalized_odds_difference": equalized_odds_difference(
                   y_true, y_pred, group, mask=mask),
               "demographic_parity_difference": demographic_parity_difference(
                   y_true, y_pred, group, mask=mask),
               "worst_group_accuracy": worst_group_accuracy(y_true, y_pred, group, mask=mask),
               "worst_sensitive_group_accuracy": worst_group_accuracy(
                   y_true, y_pred, group, groups="sensitive", mask=mask),
               "bias_amplification_a_to_t": binary_bias_amplification(
                   y_true, group, y_pred, direction="A->T", training=training, mask=mask),
               "over_represented_group": direction,
               **_prediction_counts(y_true, scores, y_pred, mask), "threshold_miss": miss}
    return _runs_table(columns)


def _prediction_counts(y_true, scores, y_pred, mask) -> dict[str, np.ndarray]:
    """Evaluated rows, true and predicted positives, and whether the scores are constant, per run."""
    a, m, _ = broadcast_runs({"y_true": y_true, "scores": scores}, binary=("y_true",), scores=("scores",), mask=mask)
    shape = np.broadcast_shapes(a["scores"].shape, np.shape(np.atleast_2d(y_pred)))
    m = np.broadcast_to(m, shape)
    s = np.broadcast_to(a["scores"], shape)
    high = np.where(m, s, -np.inf).max(axis=1, initial=-np.inf)
    low = np.where(m, s, np.inf).min(axis=1, initial=np.inf)
    return {"n_evaluated": m.sum(axis=1), "n_positive": (np.broadcast_to(a["y_true"], shape) & m).sum(axis=1),
            "n_predicted_positive": (np.atleast_2d(y_pred) & m).sum(axis=1),
            "scores_constant": (m.sum(axis=1) > 0) & (high == low)}


def _runs_table(columns: dict) -> pd.DataFrame:
    """One float row per run (index ``run``); a column with one value is repeated on every run."""
    n_runs = max(np.size(v) for v in columns.values())
    table = pd.DataFrame({k: np.broadcast_to(np.atleast_1d(np.asarray(v, dtype=float)),
                                             (n_runs,)) for k, v in columns.items()})
    table.index.name = "run"
    return table
