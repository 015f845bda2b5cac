"""Vectorized ranking and confusion metrics: AUC, accuracy, TPR/FPR/FNR, overall and per group.

Shapes follow :mod:`analyze.metrics.base`: ``y_true``, ``scores``/``y_pred``, ``group`` and
``mask`` are ``(n_samples,)`` or ``(n_runs, n_samples)`` and broadcast along the run axis.
Overall metrics return ``(n_runs,)``; per-group metrics return ``(n_runs, 2)`` with column
``g`` for ``group == g``; 1-D inputs give a scalar or a length-2 vector. ``group`` is the
binary sensitive attribute coded 0/1 (which group is which is the caller's coding; e.g.
CelebA's ``Male`` attribute makes 1 = male).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from analyze.metrics.base import (
    UndefinedMetricWarning,
    broadcast_runs,
    finish,
    safe_divide,
    warn_undefined,
)
from extract.errors import UserError

GROUPS = (0, 1)


# --------------------------------------------------------------------------- AUC
def _tie_block_starts(sorted_scores: np.ndarray) -> np.ndarray:
    """Flat indices (into the raveled rows) where a block of equal scores starts."""
    starts = np.ones(sorted_scores.shape, dtype=bool)
    starts[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    return np.flatnonzero(starts)


def _auc_sorted(y_sorted, included, block_starts) -> np.ndarray:
    """Mann-Whitney AUC of the included rows, ties counted 1/2 (equals sklearn's ROC AUC).

    With rows sorted by score, the mid-rank of a row among the included rows is
    ``before + (size + 1) / 2`` for its tie block (``before`` = included rows in earlier
    blocks, ``size`` = included rows in the block), so one sort serves every subset
    (groups, masks). The rank sum is accumulated in exact integers.
    """
    n_runs, n_samples = y_sorted.shape
    if n_samples == 0:
        return np.full(n_runs, np.nan)
    block_run = block_starts // n_samples
    size = np.add.reduceat(included.ravel(), block_starts, dtype=np.int64)
    positives = np.add.reduceat((y_sorted & included).ravel(), block_starts, dtype=np.int64)
    before_all = np.cumsum(size) - size
    run_first_block = np.searchsorted(block_run, np.arange(n_runs))
    before = before_all - before_all[run_first_block][block_run]
    twice_rank_sum = np.bincount(block_run, weights=positives * (2 * before + size + 1),
                                 minlength=n_runs)
    n_pos = np.bincount(block_run, weights=positives, minlength=n_runs)
    n_neg = np.bincount(block_run, weights=size, minlength=n_runs) - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN where one class is absent
        return (twice_rank_sum - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg)


def _sorted_inputs(y_true, scores, group, mask):
    named = {"y_true": y_true, "scores": scores}
    if group is not None:
        named["group"] = group
    arrays, mask, squeeze = broadcast_runs(
        named, binary=("y_true", "group"), scores=("scores",), mask=mask
    )
    order = np.argsort(arrays["scores"], axis=1)  # ties need no stable order
    take = {k: np.take_along_axis(v, order, axis=1) for k, v in arrays.items()}
    take["mask"] = np.take_along_axis(mask, order, axis=1)
    return take, squeeze


def roc_auc(y_true, scores, *, mask=None):
    """Area under the ROC curve per run, identical to ``sklearn.metrics.roc_auc_score``.

    Computed as the Mann-Whitney U statistic with tied scores counting one half, which
    equals sklearn's trapezoidal ROC area exactly (ties included). One sort per run.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
    scores : array-like of float, shape (n_samples,) or (n_runs, n_samples)
        Higher means more likely positive (probabilities or logits).
    mask : array-like of bool, same shapes, optional
        Rows each run is evaluated on.

    Returns
    -------
    auc : ndarray of shape (n_runs,), or float for 1-D inputs
        NaN (with an :class:`UndefinedMetricWarning`) where only one class is present.
    """
    s, squeeze = _sorted_inputs(y_true, scores, None, mask)
    auc = _auc_sorted(s["y_true"], s["mask"], _tie_block_starts(s["scores"]))
    warn_undefined(np.isnan(auc), metric="AUC", reason="only one class present")
    return finish(auc, squeeze)


def roc_auc_by_group(y_true, scores, group, *, mask=None):
    """AUC within each group; returns shape (n_runs, 2) (column g = ``group == g``).

    Same conventions as :func:`roc_auc`; a group with one class present gives NaN.
    """
    s, squeeze = _sorted_inputs(y_true, scores, group, mask)
    blocks = _tie_block_starts(s["scores"])
    per_group = [
        _auc_sorted(s["y_true"], s["mask"] & (s["group"] == g), blocks) for g in GROUPS
    ]
    auc = np.stack(per_group, axis=-1)
    warn_undefined(np.isnan(auc), metric="group AUC", reason="only one class present in the group")
    return finish(auc, squeeze)


# --------------------------------------------------------------------------- counts
@dataclass(frozen=True)
class ConfusionCounts:
    """Confusion-matrix counts with NaN-safe rates; all fields share one shape.

    Rates: TPR = TP/(TP+FN), FNR = FN/(TP+FN), FPR = FP/(FP+TN), TNR = TN/(FP+TN),
    selection rate = (TP+FP)/n, accuracy = (TP+TN)/n. A rate with a zero denominator is
    NaN with an :class:`UndefinedMetricWarning`.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def n(self):
        return self.tp + self.fp + self.fn + self.tn

    @property
    def tpr(self):
        return safe_divide(self.tp, self.tp + self.fn, metric="TPR", reason="no positives")

    @property
    def fnr(self):
        return safe_divide(self.fn, self.tp + self.fn, metric="FNR", reason="no positives")

    @property
    def fpr(self):
        return safe_divide(self.fp, self.fp + self.tn, metric="FPR", reason="no negatives")

    @property
    def tnr(self):
        return safe_divide(self.tn, self.fp + self.tn, metric="TNR", reason="no negatives")

    @property
    def selection_rate(self):
        return safe_divide(self.tp + self.fp, self.n, metric="selection rate", reason="no rows")

    @property
    def accuracy(self):
        return safe_divide(self.tp + self.tn, self.n, metric="accuracy", reason="no rows")


def _counts(y, p, m) -> ConfusionCounts:
    return ConfusionCounts(
        tp=(y & p & m).sum(axis=-1),
        fp=(~y & p & m).sum(axis=-1),
        fn=(y & ~p & m).sum(axis=-1),
        tn=(~y & ~p & m).sum(axis=-1),
    )


def _squeezed(counts: ConfusionCounts, squeeze: bool) -> ConfusionCounts:
    fields = (counts.tp, counts.fp, counts.fn, counts.tn)
    return ConfusionCounts(*(finish(f, squeeze) for f in fields))


def confusion(y_true, y_pred, *, mask=None) -> ConfusionCounts:
    """Confusion counts per run (fields of shape (n_runs,), or scalars for 1-D inputs).

    ``y_pred`` holds hard 0/1 predictions (see :mod:`analyze.metrics.threshold`).
    """
    a, m, squeeze = broadcast_runs({"y_true": y_true, "y_pred": y_pred},
                                   binary=("y_true", "y_pred"), mask=mask)
    return _squeezed(_counts(a["y_true"], a["y_pred"], m), squeeze)


def confusion_by_group(y_true, y_pred, group, *, mask=None) -> ConfusionCounts:
    """Confusion counts per run and group: fields of shape (n_runs, 2), column g = group g."""
    a, m, squeeze = broadcast_runs({"y_true": y_true, "y_pred": y_pred, "group": group},
                                   binary=("y_true", "y_pred", "group"), mask=mask)
    y, p = a["y_true"][..., None, :], a["y_pred"][..., None, :]
    in_group = np.stack([a["group"] == g for g in GROUPS], axis=-2) & m[..., None, :]
    return _squeezed(_counts(y, p, in_group), squeeze)


def accuracy(y_true, y_pred, *, mask=None):
    """Share of correct hard predictions per run (``sklearn.metrics.accuracy_score``)."""
    return confusion(y_true, y_pred, mask=mask).accuracy


def false_positive_rate(y_true, y_pred, *, mask=None):
    """FP / (FP + TN) per run; NaN where there are no negatives."""
    return confusion(y_true, y_pred, mask=mask).fpr


def true_positive_rate(y_true, y_pred, *, mask=None):
    """TP / (TP + FN) per run; NaN where there are no positives."""
    return confusion(y_true, y_pred, mask=mask).tpr


def false_negative_rate(y_true, y_pred, *, mask=None):
    """FN / (TP + FN) per run; NaN where there are no positives."""
    return confusion(y_true, y_pred, mask=mask).fnr


def selection_rate(y_true, y_pred, *, mask=None):
    """Share of rows predicted positive per run; NaN where there are no rows."""
    return confusion(y_true, y_pred, mask=mask).selection_rate


# --------------------------------------------------------------------------- gaps
def fpr_gap(y_true, y_pred, group, *, mask=None):
    """Raw FPR gap ``FPR(group 1) - FPR(group 0)`` per run (not direction-normalised).

    With CelebA's coding (``Male``: 1 = male) this is FPR(M) - FPR(F); the paper's raw
    FPR(F) - FPR(M) is its negation. NaN where a group has no negatives.
    """
    fpr = confusion_by_group(y_true, y_pred, group, mask=mask).fpr
    return (fpr[..., 1] - fpr[..., 0])[()]


def equalized_odds_difference(y_true, y_pred, group, *, mask=None):
    """``max(|TPR(1) - TPR(0)|, |FPR(1) - FPR(0)|)`` per run (fairlearn's ``worst_case``).

    NaN propagates: if either rate is undefined for a group (no positives or no negatives
    in it), the difference is NaN. fairlearn differs there: it treats an undefined rate as
    0, so it can return e.g. 1.0 where this returns NaN; on groups with both classes the two
    agree.
    """
    counts = confusion_by_group(y_true, y_pred, group, mask=mask)
    tpr, fpr = counts.tpr, counts.fpr
    tpr_gap = np.abs(tpr[..., 1] - tpr[..., 0])
    fpr_gap_abs = np.abs(fpr[..., 1] - fpr[..., 0])
    return np.maximum(tpr_gap, fpr_gap_abs)[()]


def demographic_parity_difference(y_true, y_pred, group, *, mask=None):
    """``|selection_rate(1) - selection_rate(0)|`` per run (fairlearn's between_groups)."""
    rate = confusion_by_group(y_true, y_pred, group, mask=mask).selection_rate
    return np.abs(rate[..., 1] - rate[..., 0])[()]


def worst_group_accuracy(y_true, y_pred, group, *, groups="cells", mask=None):
    """Lowest accuracy over groups, each group weighted equally (sizes ignored).

    Parameters
    ----------
    groups : {"cells", "sensitive"}, default "cells"
        ``"cells"``: the four (y, s) cells, as in the group-robustness literature;
        ``"sensitive"``: the two values of ``group``.

    Returns
    -------
    ndarray of shape (n_runs,), or float
        Min over non-empty groups of the group's plain accuracy. Empty groups are skipped
        (with an :class:`UndefinedMetricWarning`); NaN if every group is empty.
    """
    if groups not in ("cells", "sensitive"):
        raise UserError(f"groups must be 'cells' or 'sensitive', got {groups!r}.")
    a, m, squeeze = broadcast_runs({"y_true": y_true, "y_pred": y_pred, "group": group},
                                   binary=("y_true", "y_pred", "group"), mask=mask)
    correct = (a["y_true"] == a["y_pred"]) & m
    if groups == "cells":
        members = [(a["y_true"] == y) & (a["group"] == g) for y in (0, 1) for g in GROUPS]
    else:
        members = [a["group"] == g for g in GROUPS]
    sizes = np.stack([(member & m).sum(axis=1) for member in members], axis=1)
    hits = np.stack([(member & correct).sum(axis=1) for member in members], axis=1)
    warn_undefined((sizes == 0).any(axis=1), metric="accuracy of some group",
                   reason="the group is empty", outcome="skipped it in the minimum")
    with np.errstate(divide="ignore", invalid="ignore"):
        group_accuracy = np.where(sizes > 0, hits / np.maximum(sizes, 1), np.inf)
    worst = group_accuracy.min(axis=1)
    warn_undefined(np.isinf(worst), metric="worst-group accuracy", reason="every group empty")
    return finish(np.where(np.isinf(worst), np.nan, worst), squeeze)


# --------------------------------------------------------------------------- direction
def over_represented_group(y_true, group, *, mask=None):
    """The group over-represented among positives, from (training) labels, per run.

    Group g is over-represented when ``P(s=g | y=1) > P(s=g)``, equivalently when y and
    s are positively associated for g (``n * n_{y=1,s=g} > n_{y=1} * n_{s=g}``, exact in
    integers). Pass the labels of the finetuning set the model was trained on.

    Returns
    -------
    ndarray of float, shape (n_runs,), or float
        1.0 or 0.0; NaN (with an :class:`UndefinedMetricWarning`) where y and s are
        exactly independent (e.g. correlation level c = 0.5): there is no stereotype
        direction, so give the attribute's natural direction explicitly instead.
    """
    a, m, squeeze = broadcast_runs({"y_true": y_true, "group": group},
                                   binary=("y_true", "group"), mask=mask)
    y, s = a["y_true"] & m, a["group"] & m
    n = m.sum(axis=1).astype(np.int64)
    association = n * (y & s).sum(axis=1) - y.sum(axis=1) * s.sum(axis=1)
    warn_undefined(association == 0, metric="over-represented group",
                   reason="labels independent of the group")
    direction = np.where(association > 0, 1.0, np.where(association < 0, 0.0, np.nan))
    return finish(direction, squeeze)


def natural_over_represented_group(y, group, split) -> float:
    """The group over-represented among the positives of the ``train`` split (the natural
    stereotype direction that signs ``fpr_gap_stereotype`` for every runner): 1.0, 0.0, or
    NaN without a direction (no known rows, or y exactly independent of the group there).

    ``y`` and ``group`` are whole-dataset columns with -1 for unknown; ``split`` the split names.
    """
    y, group = np.asarray(y), np.asarray(group)
    known = (np.asarray(split) == "train") & (y >= 0) & (group >= 0)
    if not known.any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # independence is reported as NaN
        return float(over_represented_group(y[known], group[known]))


def stereotype_fpr_gap(y_true, y_pred, group, *, over_represented_group, mask=None):
    """Signed FPR gap: FPR(over-represented group) - FPR(other group), per run.

    Positive means stereotype-consistent bias: the model gives more false positives to
    the group that is over-represented among the positives of its training set.

    Parameters
    ----------
    y_true, y_pred, group : array-like of {0, 1}, shape (n_samples,) or (n_runs, n_samples)
        Evaluation labels, hard predictions and the binary sensitive attribute.
    over_represented_group : {0, 1} or array-like of shape (n_runs,)
        Per run, the group over-represented among training positives, e.g. from
        :func:`over_represented_group` on the training labels. NaN entries give NaN.
    mask : array-like of bool, optional

    Returns
    -------
    ndarray of shape (n_runs,), or float
        NaN where a group has no negatives or the direction is NaN.
    """
    raw = np.asarray(fpr_gap(y_true, y_pred, group, mask=mask), dtype=float)
    direction = np.asarray(over_represented_group, dtype=float)
    if not np.all(np.isin(direction[~np.isnan(direction)], (0.0, 1.0))):
        raise UserError("over_represented_group must hold 0, 1 or NaN; code the groups as 0/1.")
    warn_undefined(np.isnan(direction), metric="stereotype FPR gap",
                   reason="no over-represented group")
    return (np.where(direction == 1.0, raw, -raw) + 0.0 * direction)[()]
