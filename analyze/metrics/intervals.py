"""Confidence intervals, the one home of every interval the toolkit reports (``docs/science.md`` section 7).

``replicate_ci`` / ``replicate_summary``: the interval of a mean over k replicates,
``mean ± c·sd/√k`` with the sample standard deviation (ddof=1), ``c`` from
:func:`critical_value`: **Student's t with k - 1 degrees of freedom by default** (with k = 5
seeds c = 2.776; the normal 1.96 is too narrow for so few replicates), the normal quantile
with ``method="normal"`` (kept as an option). The released plots of the paper divide by k,
not √k, which makes the intervals √k times too narrow; not copied.

Differences between two bases: :func:`difference_ci` pairs the replicates by seed when the
caller has checked that both sides were fitted on the same rows (same spec, seed and row
indices: the same seed draws the same subset for every base), giving the replicate interval
of the per-seed differences (k - 1 df); otherwise Welch's unpaired interval with the
Welch-Satterthwaite df (:func:`difference_from_summaries`). Every interval carries the words
that name its method (:func:`interval_label`), written next to it in tables and the report.

``bootstrap_ci`` resamples rows with replacement, evaluates a vectorized statistic on all
resamples in a few batched calls, and reports percentile intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analyze.metrics.base import (
    UndefinedMetricWarning,
    broadcast_runs,
    finish,
    warn_undefined,
)
from extract.errors import UserError

# Resampled batch size bound (elements per array) so memory stays ~100 MB for float64.
MAX_BATCH_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with its interval; fields are floats or arrays of one shape."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    method: str


CONFIDENCE = 0.95
METHODS = ("normal", "t")
DEFAULT_METHOD = "t"  # replicate intervals: Student's t with k - 1 df


def critical_value(confidence: float = CONFIDENCE, *, df=None, method: str = "normal"):
    """Two-sided critical value: the normal quantile, or Student's t with ``df`` degrees of freedom.

    ``df`` may be an array; entries < 1 give NaN. This is the one place the toolkit turns a
    confidence level into a multiplier (1.959963984540054 for a 95% normal interval).
    """
    if method not in METHODS:
        raise UserError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}.")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be between 0 and 1, got {confidence}.")
    q = 0.5 + confidence / 2
    if method == "normal":
        return float(stats.norm.ppf(q))
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        value = np.where(df >= 1, stats.t.ppf(q, np.maximum(df, 1)), np.nan)
    return value[()] if value.ndim == 0 else value


def interval_label(method: str, confidence: float = CONFIDENCE, *, paired: bool | None = None, k=None,
                   df=None) -> str:
    """The words written next to an interval, e.g. ``"95% t interval over 5 seeds (4 df)"``.

    ``paired`` None: one mean over replicates; True: per-seed differences; False: Welch's
    unpaired difference. ``k`` (replicates) and ``df`` are added when given.
    """
    pct = f"{confidence * 100:g}%"
    seeds = f" over {int(k)} seeds" if k is not None and np.isfinite(k) else " over seeds"
    dof = f" ({float(df):.3g} df)" if method == "t" and df is not None and np.isfinite(df) else ""
    if paired is None:
        return f"{pct} {'t' if method == 't' else 'normal'} interval{seeds}{dof}"
    if paired:
        return f"{pct} paired {'t' if method == 't' else 'normal'} interval of the per-seed differences{seeds}{dof}"
    return f"{pct} {'Welch t' if method == 't' else 'normal'} interval (unpaired){dof}"


def replicate_ci(values, *, axis: int = 0, confidence: float = CONFIDENCE,
                 method: str = DEFAULT_METHOD) -> ConfidenceInterval:
    """Interval of the mean over replicates: ``mean ± c · sd / sqrt(k)``, sd with ddof=1.

    Parameters
    ----------
    values : array-like of float
        One entry per replicate along ``axis`` (e.g. shape (k,) or (k, n_cells)).
    axis : int, default 0
        The replicate axis.
    confidence : float, default 0.95
    method : {"t", "normal"}, default "t"
        ``c`` is Student's t with k - 1 degrees of freedom, or the normal quantile (1.96 at 95%).

    Returns
    -------
    ConfidenceInterval
        Fields have ``values``' shape without ``axis``. NaN replicates are left out (k
        counts the finite ones, with an :class:`UndefinedMetricWarning`); fewer than two
        give a NaN interval around the mean.
    """
    values = np.asarray(values, dtype=float)
    finite = ~np.isnan(values)
    warn_undefined((~finite).any(axis=axis), metric="a replicate value",
                   reason="NaN", outcome="left it out of the interval")
    k = finite.sum(axis=axis)
    filled = np.where(finite, values, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(k > 0, filled.sum(axis=axis) / np.maximum(k, 1), np.nan)
        squares = np.where(finite, (values - np.expand_dims(mean, axis)) ** 2, 0.0)
        sd = np.sqrt(squares.sum(axis=axis) / (k - 1))
    warn_undefined(k < 2, metric="replicate interval", reason="fewer than two replicates")
    c = critical_value(confidence, df=k - 1, method=method)
    half_width = np.where(k >= 2, c * sd / np.sqrt(np.maximum(k, 1)), np.nan)
    return ConfidenceInterval(
        estimate=mean[()], low=(mean - half_width)[()], high=(mean + half_width)[()],
        method=interval_label(method, confidence, k=int(np.max(k)) if np.size(k) else None,
                              df=int(np.max(k)) - 1 if np.size(k) and np.ndim(k) == 0 else None),
    )


def replicate_summary(table: pd.DataFrame, by: list[str], value: str, *, confidence: float = CONFIDENCE,
                      method: str = DEFAULT_METHOD) -> pd.DataFrame:
    """Mean of ``value`` per ``by`` group with its replicate interval (as :func:`replicate_ci`).

    Returns
    -------
    DataFrame with ``by`` and ``mean, sd, k, ci_low, ci_high``; ``sd`` has ddof=1 over the
    k finite replicates, and the interval is NaN where k < 2.
    """
    grouped = table.groupby(by, sort=True, dropna=False)[value]
    summary = grouped.agg(mean="mean", sd="std", k="count").reset_index()
    k = summary["k"].where(summary["k"] >= 2)
    c = critical_value(confidence, df=(k - 1).to_numpy(dtype=float), method=method)
    half = c * summary["sd"] / np.sqrt(k)
    return summary.assign(ci_low=summary["mean"] - half, ci_high=summary["mean"] + half)


def welch_df(sd_a, k_a, sd_b, k_b) -> float:
    """Welch-Satterthwaite degrees of freedom of ``mean_a - mean_b`` (inf when both sds are 0)."""
    va, vb = sd_a ** 2 / k_a, sd_b ** 2 / k_b
    if not va + vb > 0:
        return float("inf")
    return float((va + vb) ** 2 / (va ** 2 / (k_a - 1) + vb ** 2 / (k_b - 1)))


def difference_from_summaries(mean_a, sd_a, k_a, mean_b, sd_b, k_b, *, confidence: float = CONFIDENCE,
                              method: str = DEFAULT_METHOD) -> tuple[float, float, float]:
    """``mean_a - mean_b`` with an unpaired interval: Welch's t (Welch-Satterthwaite df), or normal.

    NaN bounds when either side has fewer than two replicates.
    """
    d = float(mean_a - mean_b)
    if k_a < 2 or k_b < 2:
        return d, float("nan"), float("nan")
    se = float(np.sqrt(sd_a ** 2 / k_a + sd_b ** 2 / k_b))
    df = welch_df(sd_a, k_a, sd_b, k_b)
    c = critical_value(confidence, df=df, method=method) if method == "t" else critical_value(confidence)
    return d, d - c * se, d + c * se


def difference_ci(a, b, *, paired: bool, confidence: float = CONFIDENCE,
                  method: str = DEFAULT_METHOD) -> ConfidenceInterval:
    """``mean(a) - mean(b)`` over replicates with its interval and the words naming the method.

    Parameters
    ----------
    a, b : array-like of float, shape (k_a,) and (k_b,)
        One value per replicate (seed). NaN entries are left out (with their partner when
        paired).
    paired : bool
        True: ``a[i]`` and ``b[i]`` come from the same seed and the same rows (the caller
        checks; e.g. equal ``rows_digest`` of the records), so the interval is the replicate
        interval of the differences ``a - b`` (k - 1 df). False: Welch's unpaired interval.
    confidence : float
    method : {"t", "normal"}

    Returns
    -------
    ConfidenceInterval
        Floats; NaN bounds with fewer than two (pairs of) replicates.
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if paired:
        if a.shape != b.shape:
            raise UserError(f"a paired difference needs one value per seed on both sides, got {a.size} and {b.size}.")
        keep = np.isfinite(a) & np.isfinite(b)
        d = a[keep] - b[keep]
        if len(d) < 2:
            mean = float(d.mean()) if len(d) else float("nan")
            return ConfidenceInterval(mean, float("nan"), float("nan"),
                                      interval_label(method, confidence, paired=True, k=len(d)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            ci = replicate_ci(d, confidence=confidence, method=method)
        return ConfidenceInterval(float(ci.estimate), float(ci.low), float(ci.high),
                                  interval_label(method, confidence, paired=True, k=len(d), df=len(d) - 1))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    mean_a = float(a.mean()) if len(a) else float("nan")
    mean_b = float(b.mean()) if len(b) else float("nan")
    sd_a = float(a.std(ddof=1)) if len(a) > 1 else float("nan")
    sd_b = float(b.std(ddof=1)) if len(b) > 1 else float("nan")
    d, low, high = difference_from_summaries(mean_a, sd_a, len(a), mean_b, sd_b, len(b), confidence=confidence,
                                             method=method)
    df = welch_df(sd_a, len(a), sd_b, len(b)) if len(a) > 1 and len(b) > 1 else None
    return ConfidenceInterval(d, low, high, interval_label(method, confidence, paired=False, df=df))


def _resampled_statistic(statistic, arrays, index) -> np.ndarray:
    """Statistic on resamples: ``index`` (b, n) rows; arrays (n_runs, n) -> result (b, n_runs)."""
    n_boot, n_runs = index.shape[0], arrays[0].shape[0]
    taken = [a[:, index].transpose(1, 0, 2).reshape(n_boot * n_runs, -1) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # counted after the loop
        result = np.asarray(statistic(*taken), dtype=float)
    if result.shape != (n_boot * n_runs,):
        raise UserError(
            "The bootstrap statistic must return one value per row of its (m, n_samples) "
            f"inputs; it returned shape {result.shape} for m = {n_boot * n_runs}."
        )
    return result.reshape(n_boot, n_runs)


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    *arrays,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    random_state=None,
) -> ConfidenceInterval:
    """Percentile bootstrap interval over rows (samples), vectorized over runs and resamples.

    Every resample draws n row indices with replacement and applies them to every array
    and every run alike (paired resampling), so differences between runs are resampled
    consistently.

    Parameters
    ----------
    statistic : callable
        ``statistic(*arrays_2d) -> ndarray of shape (m,)`` for inputs of shape
        ``(m, n_samples)``, e.g. ``lambda y, s: roc_auc(y, s)`` or a function that applies
        a threshold policy and then a gap; it is called on batches of resamples.
    *arrays : array-like, shape (n_samples,) or (n_runs, n_samples)
        Per-sample inputs (labels, scores, groups, masks), broadcast along the run axis.
    n_resamples : int, default 1000
    confidence_level : float, default 0.95
    random_state : int, numpy Generator or None
        Seed of the resampling; the same seed gives the same interval.

    Returns
    -------
    ConfidenceInterval
        ``estimate`` is the statistic on the original rows; fields have shape (n_runs,),
        or are floats when every input is 1-D. Resamples where the statistic is NaN are
        left out (with an :class:`UndefinedMetricWarning`).
    """
    if not 0 < confidence_level < 1 or n_resamples < 1:
        raise UserError("Use 0 < confidence_level < 1 and n_resamples >= 1.")
    if not arrays:
        raise UserError("bootstrap_ci needs the per-sample arrays the statistic takes.")
    named = {f"arrays[{i}]": a for i, a in enumerate(arrays)}
    broadcast, _, squeeze = broadcast_runs(named)
    runs = [np.ascontiguousarray(a) for a in broadcast.values()]
    n_runs, n_samples = runs[0].shape
    if n_samples == 0:
        raise UserError("bootstrap_ci needs at least one row; pass non-empty arrays.")
    estimate = np.asarray(statistic(*runs), dtype=float).reshape(n_runs)
    rng = np.random.default_rng(random_state)
    batch = max(1, MAX_BATCH_ELEMENTS // max(n_runs * n_samples, 1))
    chunks = []
    for start in range(0, n_resamples, batch):
        index = rng.integers(0, n_samples, size=(min(batch, n_resamples - start), n_samples))
        chunks.append(_resampled_statistic(statistic, runs, index))
    resampled = np.concatenate(chunks, axis=0)
    nan = np.isnan(resampled)
    warn_undefined(nan.any(axis=0), metric="the statistic on some bootstrap resamples",
                   reason="NaN", outcome="left those resamples out")
    tail = 100 * (1 - confidence_level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        low, high = np.nanpercentile(resampled, [tail, 100 - tail], axis=0)
    return ConfidenceInterval(
        estimate=finish(estimate, squeeze), low=finish(low, squeeze),
        high=finish(high, squeeze), method=f"bootstrap percentile, {n_resamples} resamples",
    )
