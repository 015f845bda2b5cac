"""Shared plumbing for the vectorized metrics: input shapes, validation, and NaN reasons.

Every vectorized metric takes per-sample arrays of shape ``(n_samples,)`` or
``(n_runs, n_samples)``; arrays broadcast against each other along the run axis, so one
label vector ``(n_samples,)`` can serve a score matrix ``(n_runs, n_samples)``. An optional
boolean ``mask`` of the same shapes selects the rows each run is evaluated on (e.g. each
probe's own validation rows inside one shared matrix). When every input is 1-D the result
is a scalar (or a length-2 per-group vector) instead of an array with a run axis.

A metric that is undefined for some run (no negatives in a group, a single class, ...) is
returned as NaN and announced with an :class:`UndefinedMetricWarning` whose message names
the metric, the reason and how many entries are affected. Bad input (wrong shapes, labels
that are not 0/1, NaN scores) raises :class:`extract.errors.UserError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from extract.errors import UserError


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for some entries (e.g. a group without negatives); NaN was returned."""


def warn_undefined(
    undefined: np.ndarray, *, metric: str, reason: str, outcome: str = "returned NaN"
) -> None:
    """Warn once if any entry of the boolean array ``undefined`` is set.

    The message reads "<metric> is undefined (<reason>) in k of n entries; <outcome>."
    """
    undefined = np.asarray(undefined, dtype=bool)
    count = int(undefined.sum())
    if count:
        warnings.warn(
            f"{metric} is undefined ({reason}) in {count} of {undefined.size} entries; "
            f"{outcome}.",
            UndefinedMetricWarning,
            stacklevel=3,
        )


def safe_divide(numerator, denominator, *, metric: str, reason: str) -> np.ndarray:
    """``numerator / denominator`` with NaN (and one warning) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    empty = denominator == 0
    warn_undefined(empty, metric=metric, reason=reason)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / np.where(empty, 1.0, denominator)
    return np.where(empty, np.nan, ratio)[()]


def _as_2d(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim not in (1, 2):
        raise UserError(
            f"`{name}` must have shape (n_samples,) or (n_runs, n_samples), got shape "
            f"{array.shape}; pass one row per run."
        )
    return array if array.ndim == 2 else array[np.newaxis, :]


def _check_binary(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array
    is_zero, is_one = array == 0, array == 1
    if not np.all(is_zero | is_one):
        raise UserError(
            f"`{name}` must contain only 0 and 1 (or booleans); encode it as 0/1 before "
            "calling the metric."
        )
    return is_one


def broadcast_runs(
    arrays: Mapping[str, object],
    *,
    binary: tuple[str, ...] = (),
    scores: tuple[str, ...] = (),
    mask=None,
) -> tuple[dict[str, np.ndarray], np.ndarray, bool]:
    """Validate and broadcast per-sample arrays to a common ``(n_runs, n_samples)`` shape.

    Parameters
    ----------
    arrays : mapping of name -> array-like of shape (n_samples,) or (n_runs, n_samples)
        The names are used in error messages.
    binary : tuple of str
        Names of arrays that must hold 0/1 values; they are returned as booleans.
    scores : tuple of str
        Names of real-valued score arrays; returned as float64 and checked for NaN.
    mask : array-like of bool, shape (n_samples,) or (n_runs, n_samples), optional
        Rows to evaluate per run; ``None`` means all rows.

    Returns
    -------
    out : dict of name -> ndarray of shape (n_runs, n_samples)
        Read-only broadcast views.
    mask : ndarray of bool, shape (n_runs, n_samples)
    squeeze : bool
        True when every input (mask included) was 1-D, i.e. the caller should drop the
        run axis from its result.
    """
    squeeze = all(np.ndim(v) == 1 for v in arrays.values()) and (mask is None or np.ndim(mask) == 1)
    prepared = {}
    for name, value in arrays.items():
        array = _as_2d(name, value)
        if name in binary:
            array = _check_binary(name, array)
        elif name in scores:
            array = array.astype(np.float64, copy=False)
            if np.isnan(array).any():
                raise UserError(f"`{name}` contains NaN; drop or impute those rows first.")
        prepared[name] = array
    if mask is None:
        mask_2d = np.ones((1, 1), dtype=bool)
    else:
        mask_2d = _check_binary("mask", _as_2d("mask", mask))
    shapes = [a.shape for a in prepared.values()] + [mask_2d.shape] * (mask is not None)
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise UserError(
            "Per-sample inputs have incompatible shapes "
            f"{ {n: np.shape(v) for n, v in arrays.items()} }; give every array the same "
            "n_samples and either one row or n_runs rows."
        ) from None
    out = {name: np.broadcast_to(a, shape) for name, a in prepared.items()}
    return out, np.broadcast_to(mask_2d, shape), squeeze


def finish(values: np.ndarray, squeeze: bool):
    """Drop the run axis of ``values`` when the inputs were 1-D (scalar in, scalar out)."""
    values = np.asarray(values)
    return values[0][()] if squeeze else values
