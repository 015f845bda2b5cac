"""Fairness metrics for many finetuned models at once.

A model trained on a finetuning set where the target ``y`` is correlated with a sensitive
attribute ``s`` (coded 0/1) may learn ``s`` as a shortcut. This module measures that on an
evaluation set, for many runs (probes, seeds, correlation levels) in one vectorized call:

- ranking quality: :func:`roc_auc`, overall and :func:`roc_auc_by_group`;
- hard predictions from one of four threshold policies (:func:`predict`: ``"top_p"``,
  ``"top_p_reference"``, ``"val_top_p"``, ``"fixed"``; tie rules in :mod:`analyze.metrics.threshold`);
- error rates per group (:func:`confusion_by_group`: TPR, FPR, FNR, selection rate), the
  raw gap :func:`fpr_gap` = FPR(s=1) - FPR(s=0), the signed :func:`stereotype_fpr_gap`
  (positive = more false positives for the group over-represented among training
  positives), :func:`equalized_odds_difference`, :func:`demographic_parity_difference`,
  :func:`worst_group_accuracy`;
- :func:`directional_bias_amplification` (Wang & Russakovsky 2021), both directions;
- uncertainty: :func:`replicate_ci` (mean ± t(0.975, k-1)·sd/√k; ``method="normal"`` for 1.96) and
  :func:`bootstrap_ci`;
- :class:`GroupReport`, a per-group table shaped like Fairlearn's ``MetricFrame``;
- :func:`evaluate_runs`, all of the above for a batch of runs as one tidy DataFrame.

Shapes: per-sample inputs are ``(n_samples,)`` or ``(n_runs, n_samples)`` and broadcast
along the run axis; an optional boolean ``mask`` selects each run's rows. Undefined
values are NaN with an :class:`UndefinedMetricWarning` giving the reason; bad input raises
:class:`extract.errors.UserError`. Definitions: ``docs/science.md`` section 5.
"""

from __future__ import annotations

from analyze.metrics.base import UndefinedMetricWarning, broadcast_runs
from analyze.metrics.biasamp import (
    binary_bias_amplification,
    directional_bias_amplification,
    directional_bias_amplification_pairs,
)
from analyze.metrics.evaluation import evaluate_runs
from analyze.metrics.frame import GroupReport
from analyze.metrics.intervals import ConfidenceInterval, bootstrap_ci, replicate_ci
from analyze.metrics.rows import Indicator, TrainingRows, ValidationRows
from analyze.metrics.rates import (
    ConfusionCounts,
    accuracy,
    confusion,
    confusion_by_group,
    demographic_parity_difference,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    fpr_gap,
    natural_over_represented_group,
    over_represented_group,
    roc_auc,
    roc_auc_by_group,
    selection_rate,
    stereotype_fpr_gap,
    true_positive_rate,
    worst_group_accuracy,
)
from analyze.metrics.threshold import (
    POLICIES,
    ThresholdPolicy,
    apply_threshold,
    predict,
    predict_top_p,
    threshold_miss,
    tie_priority,
    top_p_threshold,
)

__all__ = [
    "POLICIES", "ConfidenceInterval", "ConfusionCounts", "GroupReport", "Indicator", "ThresholdPolicy",
    "TrainingRows", "UndefinedMetricWarning", "ValidationRows", "accuracy", "apply_threshold", "binary_bias_amplification",
    "bootstrap_ci", "confusion", "confusion_by_group", "demographic_parity_difference",
    "directional_bias_amplification", "directional_bias_amplification_pairs",
    "equalized_odds_difference", "evaluate_runs", "false_negative_rate",
    "false_positive_rate", "fpr_gap", "natural_over_represented_group", "over_represented_group", "predict", "predict_top_p",
    "replicate_ci", "roc_auc", "roc_auc_by_group", "selection_rate", "stereotype_fpr_gap",
    "threshold_miss", "tie_priority", "top_p_threshold", "true_positive_rate", "worst_group_accuracy",
]
