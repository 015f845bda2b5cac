"""Multi-label metrics: top-k accuracy and (macro) average precision, overall and by group.

Inputs are label and score matrices of shape ``(n_samples, n_classes)``, or
``(n_runs, n_samples, n_classes)`` for a batch of runs (e.g. the seeds of one condition);
the two broadcast along the run axis, so one label matrix can serve a stack of score
matrices. An optional boolean ``mask`` of shape ``(n_samples,)`` or ``(n_runs, n_samples)``
selects the rows each run is evaluated on. 2-D inputs give scalars (or per-class vectors),
3-D inputs an array with a leading run axis.

- :func:`top_k_accuracy`: a row is a hit when any of its true classes is among the ``k``
  highest scores (Wang & Russakovsky's Dollar Street top-5 accuracy: 80 COCO scores, a hit
  if the image's mapped class is in the top 5). A class is among the top ``k`` when fewer
  than ``k`` classes score strictly higher, so a tie at the boundary counts for the true
  class. Rows without a true class cannot be hits and are left out (with a warning).
- :func:`average_precision`: per class, scikit-learn's step-wise definition
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (tied scores form
  one threshold); NaN for a class without a positive row.
- :func:`macro_average_precision`: the mean of the per-class APs over the classes with at
  least one positive row (W&R's COCO mAP), NaN when no class has one.
- :func:`by_group`: any of these per value of a grouping column (income bucket, region).

Bad input (wrong shapes, labels other than 0/1, NaN scores, k out of range) raises
:class:`extract.errors.UserError`; undefined values are NaN with an
:class:`~analyze.metrics.base.UndefinedMetricWarning`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analyze.metrics.base import finish, warn_undefined
from extract.errors import UserError


def _as_3d(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim not in (2, 3):
        raise UserError(f"`{name}` must have shape (n_samples, n_classes) or (n_runs, n_samples, n_classes), "
                        f"got shape {array.shape}; pass one column per class.")
    return array if array.ndim == 3 else array[np.newaxis]


def _prepare(y_true, scores, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Validated ``(n_runs, n_samples, n_classes)`` labels (bool) and scores, and the row mask."""
    squeeze = np.ndim(y_true) == 2 and np.ndim(scores) == 2 and (mask is None or np.ndim(mask) == 1)
    y = _as_3d("y_true", y_true)
    if y.dtype != bool:
        if not np.all((y == 0) | (y == 1)):
            raise UserError("`y_true` must contain only 0 and 1 (or booleans); recode unknown labels (-1) "
                            "or leave those rows out with `mask` before calling the metric.")
        y = y == 1
    s = _as_3d("scores", scores).astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise UserError("`scores` contains NaN; drop or impute those rows first.")
    if mask is None:
        m = np.ones((1, y.shape[1]), dtype=bool)
    else:
        m = np.asarray(mask)
        if m.ndim not in (1, 2) or (m.dtype != bool and not np.all((m == 0) | (m == 1))):
            raise UserError("`mask` must be 0/1 or boolean of shape (n_samples,) or (n_runs, n_samples).")
        m = np.atleast_2d(m == 1 if m.dtype != bool else m)
    try:
        runs, n, c = np.broadcast_shapes(y.shape, s.shape, m.shape + (1,))
    except ValueError:
        raise UserError(f"`y_true` {np.shape(y_true)}, `scores` {np.shape(scores)} and `mask` "
                        f"{np.shape(mask) if mask is not None else None} have incompatible shapes; give them the "
                        "same n_samples (and n_classes), and either one run or n_runs.") from None
    return (np.broadcast_to(y, (runs, n, c)), np.broadcast_to(s, (runs, n, c)),
            np.broadcast_to(m, (runs, n)), squeeze)


def top_k_hits(y_true, scores, *, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-row hits: is some true class among the ``k`` highest scores?

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n_samples, n_classes) or (n_runs, n_samples, n_classes)
    scores : array-like of float, same shapes
    k : int, default 5
        1 <= k <= n_classes.

    Returns
    -------
    hits : ndarray of bool, shape (n_runs, n_samples)
    has_true : ndarray of bool, shape (n_runs, n_samples)
        Rows with at least one true class (the others are never hits).
    """
    y, s, _, _ = _prepare(y_true, scores, None)
    if not 1 <= int(k) <= y.shape[2] or int(k) != k:
        raise UserError(f"k={k} must be an integer from 1 to the number of classes ({y.shape[2]}).")
    best_true = np.where(y, s, -np.inf).max(axis=2)
    higher = (s > best_true[..., np.newaxis]).sum(axis=2)
    has_true = y.any(axis=2)
    return has_true & (higher < k), has_true


def top_k_accuracy(y_true, scores, *, k: int = 5, mask=None):
    """Share of rows with a true class among the ``k`` highest scores.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n_samples, n_classes) or (n_runs, n_samples, n_classes)
        True classes (multi-hot; one-hot for single-label data).
    scores : array-like of float, same shapes
        One score per class (probabilities or logits: only the order matters).
    k : int, default 5
        How many of the highest scores count.
    mask : array-like of bool, shape (n_samples,) or (n_runs, n_samples), optional
        Rows to evaluate; rows without a true class are always left out.

    Returns
    -------
    float or ndarray of shape (n_runs,)
        NaN (with a warning) for a run without an evaluable row.
    """
    y, s, m, squeeze = _prepare(y_true, scores, mask)
    hits, has_true = top_k_hits(y, s, k=k)
    warn_undefined((m & ~has_true).any(axis=1), metric="top-k accuracy", reason="rows without a true class",
                   outcome="left those rows out")
    rows = m & has_true
    count = rows.sum(axis=1)
    warn_undefined(count == 0, metric="top-k accuracy", reason="no row with a true class")
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(count > 0, (hits & rows).sum(axis=1) / np.maximum(count, 1), np.nan)
    return finish(value, squeeze)


def _average_precision(y: np.ndarray, s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-class AP of validated 3-D inputs: ``(n_runs, n_classes)``, NaN without a positive."""
    return np.stack([_average_precision_run(y[r], s[r], m[r]) for r in range(y.shape[0])])


def _average_precision_run(y: np.ndarray, s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-class AP of one run: ``y``, ``s`` of shape (n_samples, n_classes), ``m`` (n_samples,)."""
    n, c = y.shape
    # Sort each class column by descending score; masked-out rows count for nothing.
    order = np.argsort(-s, axis=0, kind="stable")
    ys = np.take_along_axis(y, order, axis=0)
    ss = np.take_along_axis(s, order, axis=0)
    ws = m[order]
    tp = np.cumsum(ys & ws, axis=0, dtype=np.int64)
    fp = np.cumsum(~ys & ws, axis=0, dtype=np.int64)
    # A threshold ends where the next score differs (tied scores form one threshold).
    ends = np.ones((n, c), dtype=bool)
    ends[:-1] = ss[1:] != ss[:-1]
    tp_at_ends = np.where(ends, tp, 0)
    # tp at the previous threshold: the running maximum of tp over earlier ends.
    previous = np.vstack([np.zeros((1, c), np.int64), np.maximum.accumulate(tp_at_ends, axis=0)[:-1]])
    gained = np.where(ends, tp - previous, 0)
    predicted = tp + fp
    positives = tp[-1] if n else np.zeros(c, np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        ap = (gained * precision).sum(axis=0) / positives
    return np.where(positives > 0, ap, np.nan)


def average_precision(y_true, scores, *, mask=None):
    """Average precision per class (scikit-learn's definition, see the module docstring).

    Parameters
    ----------
    y_true, scores, mask
        As in :func:`top_k_accuracy`.

    Returns
    -------
    ndarray of shape (n_classes,) or (n_runs, n_classes)
        NaN (with a warning) for classes without a positive evaluated row.
    """
    y, s, m, squeeze = _prepare(y_true, scores, mask)
    ap = _average_precision(y, s, m)
    warn_undefined(np.isnan(ap), metric="average precision", reason="a class without a positive row")
    return finish(ap, squeeze)


def macro_average_precision(y_true, scores, *, mask=None):
    """Mean average precision over the classes with at least one positive evaluated row.

    Parameters
    ----------
    y_true, scores, mask
        As in :func:`top_k_accuracy`.

    Returns
    -------
    float or ndarray of shape (n_runs,)
        NaN (with a warning) for a run in which no class has a positive row.
    """
    y, s, m, squeeze = _prepare(y_true, scores, mask)
    ap = _average_precision(y, s, m)
    defined = ~np.isnan(ap)
    warn_undefined(~defined.any(axis=1), metric="macro average precision", reason="no class with a positive row")
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(defined.any(axis=1), np.where(defined, ap, 0).sum(axis=1) / defined.sum(axis=1), np.nan)
    return finish(value, squeeze)


def by_group(metric: Callable, y_true, scores, group, *, mask=None, **options) -> dict:
    """``metric`` evaluated separately on the rows of each value of ``group``.

    Parameters
    ----------
    metric : callable
        :func:`top_k_accuracy`, :func:`macro_average_precision` or another function of
        ``(y_true, scores, *, mask=..., **options)``.
    y_true, scores, mask
        As in :func:`top_k_accuracy`.
    group : array-like, shape (n_samples,) or (n_runs, n_samples)
        A grouping column (income bucket, region name, ...). Every distinct value is a group;
        drop unknown values (e.g. -1) with ``mask`` if they should not form one.
    **options
        Passed to ``metric`` (e.g. ``k``).

    Returns
    -------
    dict
        Group value -> the metric's result on that group's rows (keys in sorted order).
    """
    group = np.asarray(group)
    if group.ndim not in (1, 2):
        raise UserError(f"`group` must have shape (n_samples,) or (n_runs, n_samples), got {group.shape}.")
    keep = np.ones(group.shape[-1], dtype=bool) if mask is None else np.asarray(mask) == 1
    try:
        shape = np.broadcast_shapes(keep.shape, group.shape)
    except ValueError:
        raise UserError(f"`group` {group.shape} and `mask` {keep.shape} have incompatible shapes.") from None
    values = np.unique(np.broadcast_to(group, shape)[np.broadcast_to(keep, shape)])
    return {value.item(): metric(y_true, scores, mask=keep & (group == value), **options) for value in values}


__all__ = ["average_precision", "by_group", "macro_average_precision", "top_k_accuracy", "top_k_hits"]
