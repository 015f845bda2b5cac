"""Threshold policies that turn scores into hard predictions, vectorized over runs.

Four policies (``docs/science.md`` section 5):

``"top_p"`` (default)
    On the evaluated set itself: predict positive the P highest scores, P = number of
    true positives among the evaluated rows. **Exactly P rows are predicted positive,
    whatever the ties**: rows are ranked by score (pass logits, not probabilities, so that
    saturated float32 probabilities do not tie), and rows whose scores tie are ordered by a
    fixed pseudo-random priority of their positions (:func:`tie_priority`, seeded, the same
    for every call), so the tie break is deterministic and favours no group however the rows
    are sorted. The reported threshold ``t`` is the (P+1)-th highest score: rows above it
    are positive, rows equal to it are decided by the tie break. P = 0 predicts nothing
    positive (t = the highest score); P = n predicts everything positive (t = -inf).
``"top_p_reference"``
    The reference code's rule ``thr = sort(probs)[-(P+1)]; pred = probs > thr``: every row
    tied at the cut-off is predicted negative, so a run predicts at most P positives and,
    with saturated scores, possibly none (an :class:`UndefinedMetricWarning` says in how
    many runs). Kept to reproduce the paper's numbers.
``"val_top_p"``
    The reference cut-off fitted on the validation rows (``val_scores``, ``val_y_true``)
    gives ``t`` per run, applied to the test scores as ``score > t``.
``"fixed"``
    ``score > threshold`` with ``threshold=0.5`` for probabilities; pass ``threshold=0.0``
    for logits. Strict ``>`` as in ``LogisticRegression.predict``.

How well a cut-off could place the count it aims for is :func:`threshold_miss`: the rows
tied at the cut-off that ``score > t`` cannot place, P - #(score > t) on the evaluated set
(``top_p`` and ``top_p_reference``) or on the validation set (``val_top_p``); NaN for
``fixed``. The diagnosis (:mod:`analyze.metrics.diagnosis`) flags a cell whose miss exceeds 1.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from analyze.metrics.base import broadcast_runs, finish, warn_undefined
from extract.errors import UserError

ThresholdPolicy = Literal["top_p", "top_p_reference", "val_top_p", "fixed"]
POLICIES = ("top_p", "top_p_reference", "val_top_p", "fixed")
TIE_SEED = 20230310  # seeds the fixed tie-break order of rows (any constant would do; this one never changes)


@lru_cache(maxsize=8)
def _priority(n_samples: int) -> np.ndarray:
    priority = np.random.default_rng(TIE_SEED).permutation(n_samples)
    priority.flags.writeable = False
    return priority


def tie_priority(n_samples: int) -> np.ndarray:
    """The fixed tie-break order of ``n_samples`` row positions: lower value = predicted positive first.

    A seeded permutation (:data:`TIE_SEED`), so ties are broken the same way on every call
    and independently of how the rows are sorted (sorting by group would otherwise hand the
    tied positives to one group).
    """
    return _priority(int(n_samples))


def _top_p_cutoff(y, s, m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-run cut-off t (the (P+1)-th highest score), P and the number of evaluated rows."""
    n_rows = m.sum(axis=1)
    n_pos = (y & m).sum(axis=1)
    # Excluded rows become -inf and sort first, so the included rows fill the top n_rows slots.
    ascending = np.sort(np.where(m, s, -np.inf), axis=1)
    position = np.clip(s.shape[1] - 1 - n_pos, 0, max(s.shape[1] - 1, 0))
    if s.shape[1]:
        cutoff = np.take_along_axis(ascending, position[:, None], axis=1)[:, 0]
    else:
        cutoff = np.full(s.shape[0], np.nan)
    cutoff = np.where(n_pos >= n_rows, -np.inf, cutoff)
    warn_undefined(n_rows == 0, metric="top-P threshold", reason="no rows to evaluate")
    return np.where(n_rows == 0, np.nan, cutoff), n_pos, n_rows


def _miss(s, m, cutoff, n_pos, n_rows) -> np.ndarray:
    """P - #(score > t) over the included rows (0 when P = n); NaN where a run has no rows."""
    above = ((s > cutoff[:, None]) & m).sum(axis=1)
    miss = np.where(n_pos >= n_rows, 0, n_pos - above).astype(float)
    return np.where(n_rows == 0, np.nan, miss)


def top_p_threshold(y_true, scores, *, mask=None):
    """The top-P cut-off per run: the (P+1)-th highest score, P = true positives.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
    scores : array-like of float, shape (n_samples,) or (n_runs, n_samples)
    mask : array-like of bool, optional
        Rows each run is evaluated on.

    Returns
    -------
    threshold : ndarray of shape (n_runs,), or float
        ``score > threshold`` is the reference rule. -inf when P = n (everything
        positive); NaN (with a warning) when a run has no rows.
    """
    a, m, squeeze = broadcast_runs({"y_true": y_true, "scores": scores},
                                   binary=("y_true",), scores=("scores",), mask=mask)
    cutoff, _, _ = _top_p_cutoff(a["y_true"], a["scores"], m)
    return finish(cutoff, squeeze)


def predict_top_p(y_true, scores, *, mask=None, ties: Literal["break", "negative"] = "break"):
    """Hard predictions under the top-P rule on the evaluated set itself.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
    scores : array-like of float, same shapes
        Logits preferably: saturated probabilities tie.
    mask : array-like of bool, optional
        Rows each run is evaluated on.
    ties : {"break", "negative"}, default "break"
        ``"break"``: exactly P positives, ties at the cut-off ordered by
        :func:`tie_priority` (policy ``"top_p"``). ``"negative"``: the reference rule, rows
        tied at the cut-off negative, at most P positives (policy ``"top_p_reference"``;
        an :class:`UndefinedMetricWarning` names the runs that fell short).

    Returns
    -------
    y_pred : ndarray of bool, shape (n_runs, n_samples) or (n_samples,)
        Rows outside ``mask`` are False.
    threshold : ndarray of shape (n_runs,), or float
        The (P+1)-th highest score (module docstring).
    """
    if ties not in ("break", "negative"):
        raise UserError(f"ties must be 'break' or 'negative', got {ties!r}.")
    a, m, squeeze = broadcast_runs({"y_true": y_true, "scores": scores},
                                   binary=("y_true",), scores=("scores",), mask=mask)
    s = a["scores"]
    cutoff, n_pos, n_rows = _top_p_cutoff(a["y_true"], s, m)
    if ties == "break":
        # rank included rows by score (descending), then by the fixed priority; excluded rows last
        priority = np.broadcast_to(tie_priority(s.shape[1]), s.shape)
        order = np.lexsort((priority, np.where(m, -s, 0.0), ~m), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(s.shape[1]), s.shape), axis=1)
        y_pred = (rank < n_pos[:, None]) & m
    else:
        everything = (n_pos == n_rows)[:, None]  # P = n: positive even for a score of -inf
        y_pred = ((s > cutoff[:, None]) | everything) & m
        short = y_pred.sum(axis=1) < n_pos
        warn_undefined(short, metric="an exact top-P cut",
                       reason="scores tie at the cut-off",
                       outcome="predicted the tied rows negative, so fewer than P positives")
    return finish(y_pred, squeeze), finish(cutoff, squeeze)


def threshold_miss(scores, *, policy: ThresholdPolicy, y_true=None, mask=None, val_scores=None, val_y_true=None,
                   val_mask=None):
    """Rows a policy's cut-off could not place: P - #(score > t) (module docstring); NaN for ``"fixed"``.

    Returns
    -------
    ndarray of shape (n_runs,), or float
    """
    if policy in ("top_p", "top_p_reference"):
        a, m, squeeze = broadcast_runs({"y_true": y_true, "scores": scores},
                                       binary=("y_true",), scores=("scores",), mask=mask)
    elif policy == "val_top_p":
        a, m, squeeze = broadcast_runs({"y_true": val_y_true, "scores": val_scores},
                                       binary=("y_true",), scores=("scores",), mask=val_mask)
    elif policy == "fixed":
        runs = np.shape(scores)[0] if np.ndim(scores) == 2 else None
        return np.nan if runs is None else np.full(runs, np.nan)
    else:
        raise UserError(f"Unknown threshold policy {policy!r}; use one of {POLICIES}.")
    cutoff, n_pos, n_rows = _top_p_cutoff(a["y_true"], a["scores"], m)
    return finish(_miss(a["scores"], m, cutoff, n_pos, n_rows), squeeze)


def apply_threshold(scores, threshold):
    """``scores > threshold`` with one threshold per run (shape (n_runs,) or scalar)."""
    scores = np.asarray(scores, dtype=float)
    threshold = np.asarray(threshold, dtype=float)
    if scores.ndim == 2 and threshold.ndim == 1:
        threshold = threshold[:, None]
    return scores > threshold


def predict(
    scores,
    *,
    policy: ThresholdPolicy,
    y_true=None,
    mask=None,
    val_scores=None,
    val_y_true=None,
    val_mask=None,
    threshold: float = 0.5,
):
    """Hard predictions and the threshold used, for one of the four policies.

    Parameters
    ----------
    scores : array-like of float, shape (n_samples,) or (n_runs, n_samples)
        Test scores (logits preferably; see the module docstring).
    policy : {"top_p", "top_p_reference", "val_top_p", "fixed"}
        See the module docstring.
    y_true : array-like of {0, 1}, optional
        Test labels; required for ``"top_p"`` and ``"top_p_reference"``.
    mask : array-like of bool, optional
        Test rows per run; predictions outside it are False.
    val_scores, val_y_true, val_mask : array-like, optional
        Validation scores, labels and rows per run; required for ``"val_top_p"``.
        Shapes (n_val,) or (n_runs, n_val).
    threshold : float, default 0.5
        For ``"fixed"``: 0.5 on probabilities, 0.0 on logits.

    Returns
    -------
    y_pred : ndarray of bool, same shape as the broadcast test inputs
    threshold : ndarray of shape (n_runs,), or float
    """
    if policy in ("top_p", "top_p_reference"):
        if y_true is None:
            raise UserError(f"policy {policy!r} needs y_true; pass the test labels.")
        return predict_top_p(y_true, scores, mask=mask, ties="break" if policy == "top_p" else "negative")
    if policy == "val_top_p":
        if val_scores is None or val_y_true is None:
            raise UserError("policy 'val_top_p' needs val_scores and val_y_true; pass both.")
        cutoff = top_p_threshold(val_y_true, val_scores, mask=val_mask)
    elif policy == "fixed":
        cutoff = float(threshold)
    else:
        raise UserError(f"Unknown threshold policy {policy!r}; use one of {POLICIES}.")
    a, m, squeeze = broadcast_runs({"scores": scores}, scores=("scores",), mask=mask)
    squeeze = squeeze and np.ndim(cutoff) == 0
    cutoff = np.atleast_1d(np.asarray(cutoff, dtype=float))
    try:
        n_runs = np.broadcast_shapes(cutoff.shape, a["scores"].shape[:1])[0]
    except ValueError:
        raise UserError(
            f"{cutoff.size} validation runs but {a['scores'].shape[0]} test runs; give "
            "both the same number of rows."
        ) from None
    shape = (n_runs, a["scores"].shape[1])
    test_scores, test_mask = np.broadcast_to(a["scores"], shape), np.broadcast_to(m, shape)
    cutoff = np.broadcast_to(cutoff, (n_runs,))
    y_pred = apply_threshold(test_scores, cutoff) & test_mask
    return finish(y_pred, squeeze), finish(cutoff, squeeze)
