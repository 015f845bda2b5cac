"""Directional bias amplification (Wang & Russakovsky, ICML 2021), vectorized over runs.

For attributes ``a`` (e.g. gender values) and tasks ``t`` (e.g. target labels):

- indicator ``y_at = sign(P(a, t) - P(a) P(t))``, from the training labels when given
  (else from the evaluation labels): +1 when a and t co-occur more than independence
  predicts, -1 when less, 0 at exact independence;
- A->T: ``Δ_at = P(T̂=t | A=a) - P(T=t | A=a)`` (does the model predict the task more
  often than the data for the attribute it is associated with?);
- T->A: ``Δ_at = P(Â=a | T=t) - P(A=a | T=t)``;
- ``BiasAmp = mean over (a, t) of y_at · Δ_at``. Positive = the model amplifies the
  training association; negative = it dampens it.

This matches the authors' reference implementation (``princetonvisualai/directional-bias-amp``,
``directional_biasamp.py``): the sign indicator (so independent pairs contribute 0 but
still count in the mean), the indicator computed over the rows that carry at least one
task or attribute label, conditional probabilities over all evaluation rows, and a
``nanmean`` over pairs (a pair whose conditioning set is empty drops out); with the default
``indicator_rows="any_label"`` it matches the current reference to 1e-16. One deliberate
difference: the indicator is computed in exact integer arithmetic (the reference's float
products can miss exact independence by one ulp). The other row filters are not the
current reference's: ``"task_label"`` keeps only rows with at least one *task* label (a
stricter filter; it does not reproduce the reference, which keeps rows with a task **or** an
attribute label) and ``"all"`` uses every row. Definitions: ``docs/science.md`` section 5.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from analyze.metrics.base import UndefinedMetricWarning, warn_undefined
from analyze.metrics.rows import Indicator, TrainingRows
from extract.errors import UserError

Direction = Literal["A->T", "T->A"]
IndicatorRows = Literal["any_label", "task_label", "all"]


def _label_matrix(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim not in (2, 3):
        raise UserError(
            f"`{name}` must have shape (n_samples, n_labels) or (n_runs, n_samples, n_labels), "
            f"got {array.shape}; one-hot encode single label vectors."
        )
    if array.dtype != bool and not np.all((array == 0) | (array == 1)):
        raise UserError(f"`{name}` must hold 0/1 entries (1 = the label is present).")
    return array.astype(np.int64)


def _row_mask(name: str, mask, n_samples: int) -> np.ndarray:
    if mask is None:
        return np.ones(n_samples, dtype=bool)
    mask = np.asarray(mask)
    binary = mask.dtype == bool or np.all((mask == 0) | (mask == 1))
    if not binary or mask.ndim == 0 or mask.shape[-1] != n_samples:
        raise UserError(f"`{name}` must be boolean with shape (..., {n_samples}), got "
                        f"{mask.dtype} {mask.shape}.")
    return mask.astype(bool)


def _indicator(task_train, attribute_train, indicator_rows: IndicatorRows, train_mask):
    """``sign(n·n_at - n_a·n_t)`` over the kept training rows, shape (..., |A|, |T|)."""
    if indicator_rows == "any_label":
        keep = (task_train.sum(-1) > 0) | (attribute_train.sum(-1) > 0)
    elif indicator_rows == "task_label":
        keep = task_train.sum(-1) > 0
    elif indicator_rows == "all":
        keep = np.ones(task_train.shape[:-1], dtype=bool)
    else:
        raise UserError(f"indicator_rows must be 'any_label', 'task_label' or 'all', "
                        f"got {indicator_rows!r}.")
    keep = keep & _row_mask("train_mask", train_mask, task_train.shape[-2])
    keep = np.broadcast_to(keep, np.broadcast_shapes(keep.shape, task_train.shape[:-1],
                                                     attribute_train.shape[:-1]))
    task_kept = task_train * keep[..., None]
    attribute_kept = attribute_train * keep[..., None]
    n_kept = keep.sum(-1)[..., None, None]
    n_at = np.swapaxes(attribute_kept, -1, -2) @ task_kept
    n_a = attribute_kept.sum(-2)[..., :, None]
    n_t = task_kept.sum(-2)[..., None, :]
    sign = np.sign(n_kept * n_at - n_a * n_t).astype(float)
    no_rows = np.broadcast_to(n_kept == 0, sign.shape)
    warn_undefined(no_rows.any(axis=(-1, -2)), metric="bias-amplification indicator",
                   reason="no training row carries a label")
    return np.where(no_rows, np.nan, sign)


def directional_bias_amplification_pairs(task_labels, attribute_labels, predictions, *, direction: Direction,
                                         indicator: Indicator = Indicator(), mask=None) -> np.ndarray:
    """Per-pair terms ``y_at · Δ_at`` of directional bias amplification.

    Parameters
    ----------
    task_labels : array-like of {0, 1}, shape (n_samples, n_tasks) or (n_runs, n_samples, n_tasks)
        Evaluation task labels (multi-hot; one-hot for a single binary target).
    attribute_labels : array-like of {0, 1}, shape (n_samples, n_attributes) or (n_runs, ...)
        Evaluation attribute labels (one-hot for a binary sensitive attribute).
    predictions : array-like of {0, 1}
        Hard predictions: of the tasks, shape (..., n_samples, n_tasks), for ``"A->T"``;
        of the attributes, shape (..., n_samples, n_attributes), for ``"T->A"``.
    direction : {"A->T", "T->A"}
    indicator : Indicator, default=Indicator()
        What sets the indicator (:class:`analyze.metrics.rows.Indicator`): the training
        ``task_labels`` and ``attribute_labels``, shape (..., n_train, n_tasks) and
        (..., n_train, n_attributes) (neither: the evaluation labels do), the ``rows``
        filter (see the module docstring) and the training ``mask`` per run.
    mask : array-like of bool, shape (..., n_samples), optional
        Evaluation rows per run (e.g. each run's own subset of shared rows).

    Returns
    -------
    values : ndarray of shape (..., n_attributes, n_tasks)
        NaN where the conditioning set (A=a for A->T, T=t for T->A) is empty.
    """
    if direction not in ("A->T", "T->A"):
        raise UserError(f"direction must be 'A->T' or 'T->A', got {direction!r}.")
    task = _label_matrix("task_labels", task_labels)
    attribute = _label_matrix("attribute_labels", attribute_labels)
    predicted = _label_matrix("predictions", predictions)
    if indicator.task_labels is None:
        task_train, attribute_train = task, attribute
    else:
        task_train = _label_matrix("task_labels", indicator.task_labels)
        attribute_train = _label_matrix("attribute_labels", indicator.attribute_labels)
    sign = _indicator(task_train, attribute_train, indicator.rows, indicator.mask)
    # Zeroing excluded rows removes them from every count and conditioning set below.
    row = _row_mask("mask", mask, task.shape[-2])[..., None]
    task, attribute, predicted = task * row, attribute * row, predicted * row
    attribute_t = np.swapaxes(attribute, -1, -2)
    if direction == "A->T":
        excess = attribute_t @ (predicted - task)  # (..., |A|, |T|)
        condition_size = attribute.sum(-2)[..., :, None]
    else:  # "T->A"
        excess = np.swapaxes(predicted, -1, -2) @ task - attribute_t @ task
        condition_size = task.sum(-2)[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(condition_size > 0, excess / np.maximum(condition_size, 1), np.nan)
    return sign * delta


def directional_bias_amplification(task_labels, attribute_labels, predictions, *, direction: Direction,
                                   indicator: Indicator = Indicator(), mask=None):
    """Directional bias amplification: ``nanmean`` of the per-pair terms.

    Same parameters as :func:`directional_bias_amplification_pairs`.

    Returns
    -------
    float, or ndarray of shape (n_runs,) when an input has a run axis
        Positive = the model amplifies the training association of tasks and attributes.
        NaN (with an :class:`UndefinedMetricWarning`) when every pair is undefined.
    """
    values = directional_bias_amplification_pairs(task_labels, attribute_labels, predictions, direction=direction,
                                                  indicator=indicator, mask=mask)
    all_nan = np.isnan(values).all(axis=(-1, -2))
    warn_undefined(all_nan, metric="bias amplification", reason="every (a, t) pair undefined")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows, announced above
        return np.nanmean(values, axis=(-1, -2))[()]


def _one_hot(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim not in (1, 2):
        raise UserError(f"`{name}` must have shape (n_samples,) or (n_runs, n_samples).")
    if array.dtype != bool and not np.all((array == 0) | (array == 1)):
        raise UserError(f"`{name}` must contain only 0 and 1.")
    positive = array.astype(np.int64)
    return np.stack([1 - positive, positive], axis=-1)


def binary_bias_amplification(y_true, group, y_pred, *, direction: Direction, training: TrainingRows | None = None,
                              indicator_rows: IndicatorRows = "any_label", mask=None):
    """Directional bias amplification for one binary target and a binary attribute.

    Both are one-hot encoded (|T| = |A| = 2), as in the authors' COMPAS example; for a
    binary pair the mean equals the one over the positive columns alone.

    Parameters
    ----------
    y_true, group : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
    y_pred : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
        Predicted target for ``"A->T"``; predicted group for ``"T->A"``.
    training : TrainingRows, optional
        Training labels and groups that set the indicator (``y_true``, ``group``; both or
        neither) and the training rows per run (``mask``); its ``over_represented`` is not used.
    indicator_rows : {"any_label", "task_label", "all"}, default="any_label"
        Training rows used for the indicator (see the module docstring).
    mask : array-like of bool, optional
        Evaluation rows per run, shape like ``y_true``.

    Returns
    -------
    float, or ndarray of shape (n_runs,)
    """
    training = training or TrainingRows()
    labels = {} if training.y_true is None else dict(task_labels=_one_hot("y_train", training.y_true),
                                                       attribute_labels=_one_hot("group_train", training.group))
    return directional_bias_amplification(
        _one_hot("y_true", y_true), _one_hot("group", group), _one_hot("y_pred", y_pred), direction=direction,
        indicator=Indicator(**labels, rows=indicator_rows, mask=training.mask), mask=mask)


__all__ = [
    "UndefinedMetricWarning",
    "binary_bias_amplification",
    "directional_bias_amplification",
    "directional_bias_amplification_pairs",
]
