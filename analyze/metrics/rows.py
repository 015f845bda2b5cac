"""Rows beside the evaluated ones that a metric may need, each group as one object.

A run is scored on its test rows (``y_true``, ``scores``, ``group``); two other sets of rows
can shape the numbers, and each travels as one frozen object instead of three loose arrays:

:class:`ValidationRows`
    Validation labels and scores, for the ``"val_top_p"`` threshold policy.
:class:`TrainingRows`
    Training (finetuning) labels and groups, which set the stereotype direction and the
    bias-amplification indicator, or the over-represented group itself.
:class:`Indicator`
    What sets the directional bias-amplification indicator ``y_at``: the training task and
    attribute label matrices, the row filter and the training rows per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from extract.errors import UserError

IndicatorRowsRule = Literal["any_label", "task_label", "all"]
INDICATOR_ROWS = ("any_label", "task_label", "all")


@dataclass(frozen=True, eq=False)
class ValidationRows:
    """Validation rows of each run (threshold policy ``"val_top_p"``, :func:`analyze.metrics.predict`).

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n_val,) or (n_runs, n_val)
    scores : array-like of float, shape (n_val,) or (n_runs, n_val)
    mask : array-like of bool, optional
        Validation rows per run.
    """

    y_true: Any
    scores: Any
    mask: Any = None


@dataclass(frozen=True, eq=False)
class TrainingRows:
    """Training (finetuning) rows of each run.

    Parameters
    ----------
    y_true, group : array-like of {0, 1}, shape (n_train,) or (n_runs, n_train), optional
        Training labels and sensitive attribute (both or neither): they set the stereotype
        direction and the bias-amplification indicator.
    mask : array-like of bool, optional
        Training rows per run.
    over_represented : {0, 1} or array-like of shape (n_runs,), optional
        Group over-represented among training positives, when known without the rows (it
        sets the stereotype sign; derived from ``y_true`` and ``group`` when omitted).
    """

    y_true: Any = None
    group: Any = None
    mask: Any = None
    over_represented: Any = None

    def __post_init__(self):
        if (self.y_true is None) != (self.group is None):
            raise UserError("Pass both `y_true` and `group` of the training rows, or neither.")


@dataclass(frozen=True, eq=False)
class Indicator:
    """What sets the indicator ``y_at`` of directional bias amplification.

    Parameters
    ----------
    task_labels, attribute_labels : array-like of {0, 1}, optional
        Training labels, shape (..., n_train, n_tasks) and (..., n_train, n_attributes).
        Both or neither; if neither, the evaluation labels set the indicator.
    rows : {"any_label", "task_label", "all"}, default="any_label"
        Training rows used (see :mod:`analyze.metrics.biasamp`).
    mask : array-like of bool, shape (..., n_train), optional
        Training rows per run.
    """

    task_labels: Any = None
    attribute_labels: Any = None
    rows: str = "any_label"
    mask: Any = None

    def __post_init__(self):
        if (self.task_labels is None) != (self.attribute_labels is None):
            raise UserError("Pass both `task_labels` and `attribute_labels` of the indicator, or neither.")
        if self.rows not in INDICATOR_ROWS:
            raise UserError(f"`rows` must be 'any_label', 'task_label' or 'all', got {self.rows!r}.")


__all__ = ["INDICATOR_ROWS", "Indicator", "TrainingRows", "ValidationRows"]
