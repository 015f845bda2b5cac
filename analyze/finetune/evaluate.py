"""Evaluating a chosen finetuning run on the test rows and turning it into a result record.

The record is the probe runner's (``analyze.results.records``) with ``runner = "finetune"``; its
``metrics`` are one row of :func:`analyze.metrics.evaluate_runs`.

Stereotype direction (sign of ``fpr_gap_stereotype``): the group over-represented among
the positives of the dataset's *train split* (the attribute's natural direction,
:func:`analyze.metrics.natural_over_represented_group`), the same function as the probe runner (:mod:`analyze.probe.cells`), so that probe and finetune rows of
one table share one sign and a correlation sweep keeps one sign across its levels (the gap
is positive at the stereotype-consistent end and turns negative past balance). When the
train split has no direction (exactly independent), the run's own training positives
decide, and the record says which (``direction_source``: ``"natural (train split)"``,
``"training set"`` or ``"none"``).

Finding 4's measurement (W&R's ``vary_corr.py``; docs/science.md): :func:`finding4_metrics` adds
``r4_tpr_gap`` (TPR(s=1) - TPR(s=0), the code's "FPR Difference"), ``r4_fpr_gap``
(FPR(s=1) - FPR(s=0)) and ``r4_auc``, computed with the threshold set on the run's
**validation** rows (``thr = sort(val_scores)[-(P_val + 1)]``, ``score > thr``: policy
``val_top_p``) on the run's test rows **resampled to the natural level**: the largest subset
with 50% positives, 50% per group and ``P(s=1 | y=1) = P(s=0 | y=0) = q``, ``q`` the dataset's
``P(s=1 | y=1)`` over all its rows (:class:`analyze.subsets.TestResample`'s draw, seeded with
the replicate's seed). ``r4_level`` (q), ``r4_seed`` and ``r4_n_test`` record the resample,
``r4_threshold`` the validation cut-off. The existing metrics are untouched.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from analyze.finetune.train import check_labels, predict_logits
from analyze.metrics import (
    TrainingRows,
    UndefinedMetricWarning,
    ValidationRows,
    evaluate_runs,
    over_represented_group,
)
from extract.errors import UserError

R4_COLUMNS = ("r4_tpr_gap", "r4_fpr_gap", "r4_auc", "r4_threshold", "r4_level", "r4_seed", "r4_n_test")


def evaluation_rows(meta: pd.DataFrame, labels: np.ndarray, sensitive: str, test=None) -> np.ndarray:
    """Dataset positions of the test rows (label and sensitive value known).

    Parameters
    ----------
    meta : DataFrame
    labels : ndarray of shape (n_rows,)
        The finetuning label of every row (-1 unknown).
    sensitive : str
        The group column.
    test : None, a spec with ``indices(meta)`` (e.g. ``TestResample``), or array of positions
        None: every row of the ``test`` split.
    """
    if sensitive not in meta.columns:
        raise UserError(f"the metadata has no sensitive column {sensitive!r}; choose one of its attribute columns.")
    if test is None:
        rows = np.flatnonzero(meta["split"].to_numpy() == "test")
    elif hasattr(test, "indices"):
        rows = np.asarray(test.indices(meta), dtype=np.int64)
    else:
        rows = np.asarray(test, dtype=np.int64)
    groups = meta[sensitive].to_numpy()
    rows = rows[(labels[rows] >= 0) & (groups[rows] >= 0)]
    check_labels(labels[rows], what="test")
    check_labels(groups[rows], what=f"test {sensitive!r} group")
    return rows


def stereotype_direction(natural: float, y_train, s_train) -> tuple[float, str]:
    """``(over-represented group, source)``: the natural group (module docstring) when it is
    defined, else the one of the run's training rows."""
    if np.isfinite(natural):
        return float(natural), "natural (train split)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # independence is expected at c = 0.5
        direction = float(over_represented_group(y_train, s_train))
    return (direction, "training set") if np.isfinite(direction) else (float("nan"), "none")


def evaluate_run(*, test_scores: np.ndarray, val_scores: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                 split, test: np.ndarray, direction: float, policy: str = "top_p") -> dict:
    """All metrics of one run as a flat ``{name: float}`` (one row of ``evaluate_runs``).

    ``test_scores`` and ``val_scores`` are logits (:func:`scores_of`), so the top-P policies
    rank unsaturated scores and ``"fixed"`` thresholds at 0 (probability 0.5). ``labels`` and
    ``groups`` hold every dataset row's label and group; ``split`` (``.train``, ``.val``) and
    ``test`` are the run's rows.
    """
    train, val = split.train, split.val
    table = evaluate_runs(labels[test], test_scores, groups[test], policy=policy, threshold=0.0,
                          validation=ValidationRows(y_true=labels[val], scores=val_scores),
                          training=TrainingRows(y_true=labels[train], group=groups[train], over_represented=direction))
    return {k: float(v) for k, v in table.iloc[0].items()}


def scores_of(net, images: torch.Tensor, *, device: torch.device) -> np.ndarray:
    """Logits of ``y = 1`` for uint8 images, shape (n,) float64.

    Logits, not ``sigmoid(logit)``: float32 probabilities of a confident model saturate at
    exactly 1.0 and tie, which the threshold policies and AUC would then have to break.
    """
    return predict_logits(net, images, device=device).numpy().astype(np.float64)


def dataset_level(labels: np.ndarray, groups: np.ndarray) -> float:
    """``P(s=1 | y=1)`` over every row whose label and group are known (NaN without positives)."""
    positives = (np.asarray(labels) == 1) & (np.asarray(groups) >= 0)
    return float(np.mean(np.asarray(groups)[positives] == 1)) if positives.any() else float("nan")


def natural_test_rows(labels: np.ndarray, groups: np.ndarray, *, level: float, seed: int) -> np.ndarray:
    """Positions into ``labels`` / ``groups`` (the run's test rows) of the largest subset with 50%
    positives, 50% per group and ``P(s=1 | y=1) = P(s=0 | y=0) = level`` (W&R's ``vary_corr.py``
    resample, drawn by :class:`analyze.subsets.TestResample` with ``seed``)."""
    from analyze.subsets import TestResample

    meta = pd.DataFrame({"y": np.asarray(labels, dtype=np.int64), "s": np.asarray(groups, dtype=np.int64),
                         "split": "test"})
    return TestResample("y", "s", level=float(level), seed=int(seed)).indices(meta)


def finding4_metrics(*, test_scores: np.ndarray, val_scores: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                     split, test: np.ndarray, seed: int) -> dict:
    """Finding 4's columns of one run (module docstring): ``{name: float}`` for :data:`R4_COLUMNS`.

    ``labels`` and ``groups`` hold every dataset row's values (-1 unknown), ``split.val`` the
    run's validation rows (``val_scores`` their scores), ``test`` its test rows (``test_scores``).
    A test pool that cannot be resampled (a cell without rows) gives NaN gaps and says so in
    ``r4_n_test`` = 0.
    """
    level = dataset_level(labels, groups)
    empty = dict.fromkeys(R4_COLUMNS, float("nan")) | {"r4_level": level, "r4_seed": float(seed), "r4_n_test": 0.0}
    if not np.isfinite(level):
        return empty
    try:
        chosen = natural_test_rows(labels[test], groups[test], level=level, seed=seed)
    except UserError:
        return empty
    rows = np.asarray(test)[chosen]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # a group without negatives is reported as NaN
        table = evaluate_runs(labels[rows], np.asarray(test_scores)[chosen], groups[rows], policy="val_top_p",
                              validation=ValidationRows(y_true=labels[split.val], scores=val_scores))
    metrics = table.iloc[0]
    return {"r4_tpr_gap": float(metrics["tpr_gap"]), "r4_fpr_gap": float(metrics["fpr_gap"]),
            "r4_auc": float(metrics["auc"]), "r4_threshold": float(metrics["threshold"]), "r4_level": level,
            "r4_seed": float(seed), "r4_n_test": float(len(rows))}
