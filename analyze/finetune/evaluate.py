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
