"""Scoring fitted probes: validation loss and AUC per C, the choice of C, test scores.

Scores are the decision function ``x @ coef + intercept`` (log-odds of label 1).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

# Rows of a shared test set scored per chunk (bounds the gathered block to ~64 MB at d=2048).
TEST_CHUNK_ROWS = 8192


def validation_metrics(scores, labels):
    """Mean log-loss and ROC AUC of each C for each probe.

    Parameters
    ----------
    scores : list of P ndarrays of shape (n_val_p, K)
    labels : list of P ndarrays of shape (n_val_p,), values 0/1

    Returns
    -------
    loss, auc : ndarrays of shape (P, K)
        NaN where a probe has no validation rows; AUC NaN where they hold one class.
    """
    n_cs = scores[0].shape[1]
    loss = np.full((len(scores), n_cs), np.nan)
    auc = np.full((len(scores), n_cs), np.nan)
    for probe, (score, label) in enumerate(zip(scores, labels)):
        if len(label) == 0:
            continue
        loss[probe] = np.mean(np.logaddexp(0.0, score) - label[:, None] * score, axis=0)
        positives = label == 1
        n_pos, n_neg = int(positives.sum()), int((~positives).sum())
        if n_pos and n_neg:
            ranks = rankdata(score, axis=0)  # ties get average ranks, as roc_auc_score
            auc[probe] = (ranks[positives].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return loss, auc


def choose_c(loss, auc, select):
    """Index (P,) of the chosen C: lowest loss or highest AUC, exact ties to the smaller C."""
    if loss.shape[1] == 1:
        return np.zeros(loss.shape[0], dtype=np.int64)
    if select == "auc":
        return np.argmax(auc, axis=1)  # first maximum = smallest C
    return np.argmin(loss, axis=1)


def score_rows(matrix, row_sets, coef, intercept, gather):
    """Scores of each probe on its own rows.

    Probes are scored a few at a time, so that at most about ``TEST_CHUNK_ROWS`` gathered
    rows are held at once, however many probes and rows there are.

    Parameters
    ----------
    matrix : torch.Tensor of shape (n_rows, d)
    row_sets : list of P int64 ndarrays
    coef, intercept : torch.Tensor of shape (P, K, d) and (P, K)
    gather : callable(matrix, rows (P, m)) -> (P, m, d) tensor

    Returns
    -------
    list of P ndarrays of shape (len(rows_p), K)
    """
    width = max(len(rows) for rows in row_sets)
    if width == 0:
        return [np.zeros((0, coef.shape[1])) for _ in row_sets]
    step = max(1, TEST_CHUNK_ROWS // width)
    found = []
    for first in range(0, len(row_sets), step):
        part = row_sets[first:first + step]
        padded = np.zeros((len(part), width), dtype=np.int64)
        for probe, rows in enumerate(part):
            padded[probe, :len(rows)] = rows
        block = gather(matrix, padded)
        scores = torch.bmm(block, coef[first:first + step].mT) + intercept[first:first + step, None, :]
        scores = scores.double().cpu().numpy()
        found += [scores[probe, :len(rows)] for probe, rows in enumerate(part)]
    return found


def score_shared_rows(matrix, rows, coef, intercept, gather):
    """Scores (P, len(rows)) of P probes (coef (P, d), intercept (P,)) on the same rows."""
    out = torch.empty(coef.shape[0], len(rows), dtype=coef.dtype, device=coef.device)
    for first in range(0, len(rows), TEST_CHUNK_ROWS):
        block = gather(matrix, rows[None, first:first + TEST_CHUNK_ROWS])[0]
        out[:, first:first + TEST_CHUNK_ROWS] = (block @ coef.T).T + intercept[:, None]
    return out.cpu().numpy()
