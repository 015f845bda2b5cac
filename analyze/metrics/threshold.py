"""Threshold policies that turn scores into hard predictions, vectorized over runs.

Three policies (SCIENCE.md section 5):

``"top_p"``
    On the evaluated set itself: predict positive the P highest scores, P = number of
    true positives among the evaluated rows. Threshold ``t`` = the (P+1)-th highest
    score, prediction ``score > t``: this is the reference code's
    ``thr = sort(probs)[-(P+1)]; pred = probs > thr``. **Ties at the cut-off are all
    predicted negative**, so a run predicts at most P positives (fewer when scores tie
    at the cut-off; an :class:`UndefinedMetricWarning` says in how many runs). P = 0
    predicts nothing positive (t = the highest score); P = n predicts everything
    positive (t = -inf). All scores tied with 0 < P < n: nothing is positive.
``"val_top_p"``
    The same rule fitted on the validation rows (``val_scores``, ``val_y_true``) gives
    ``t`` per run, applied to the test scores as ``score > t``.
``"fixed"``
    ``score > threshold`` with ``threshold=0.5`` for probabilities; pass ``threshold=0.0``
    for logits. Strict ``>`` as in ``LogisticRegression.predict``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from analyze.metrics.base import broadcast_runs, finish, warn_undefined
from extract.errors import UserError

ThresholdPolicy = Literal["top_p", "val_top_p", "fixed"]
POLICIES = ("top_p", "val_top_p", "fixed")


def _top_p_cutoff(y, s, m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-run cut-off t, P and the number of evaluated rows, for 2-D validated inputs."""
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
        Predict positive where ``score > threshold``. -inf when P = n (everything
        positive); NaN (with a warning) when a run has no rows.
    """
    a, m, squeeze = broadcast_runs({"y_true": y_true, "scores": scores},
                                   binary=("y_true",), scores=("scores",), mask=mask)
    cutoff, _, _ = _top_p_cutoff(a["y_true"], a["scores"], m)
    return finish(cutoff, squeeze)


def predict_top_p(y_true, scores, *, mask=None):
    """Hard predictions under the top-P rule on the evaluated set itself.

    Returns
    -------
    y_pred : ndarray of bool, shape (n_runs, n_samples) or (n_samples,)
        At most P positives per run (ties at the cut-off go negative); rows outside
        ``mask`` are False.
    threshold : ndarray of shape (n_runs,), or float
    """
    a, m, squeeze = broadcast_runs({"y_true": y_true, "scores": scores},
                                   binary=("y_true",), scores=("scores",), mask=mask)
    cutoff, n_pos, n_rows = _top_p_cutoff(a["y_true"], a["scores"], m)
    everything = (n_pos == n_rows)[:, None]  # P = n: positive even for a score of -inf
    y_pred = ((a["scores"] > cutoff[:, None]) | everything) & m
    short = y_pred.sum(axis=1) < n_pos
    warn_undefined(short, metric="an exact top-P cut",
                   reason="scores tie at the cut-off",
                   outcome="predicted the tied rows negative, so fewer than P positives")
    return finish(y_pred, squeeze), finish(cutoff, squeeze)


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
    """Hard predictions and the threshold used, for one of the three policies.

    Parameters
    ----------
    scores : array-like of float, shape (n_samples,) or (n_runs, n_samples)
        Test scores.
    policy : {"top_p", "val_top_p", "fixed"}
        See the module docstring.
    y_true : array-like of {0, 1}, optional
        Test labels; required for ``"top_p"``.
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
    if policy == "top_p":
        if y_true is None:
            raise UserError("policy 'top_p' needs y_true; pass the test labels.")
        return predict_top_p(y_true, scores, mask=mask)
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
