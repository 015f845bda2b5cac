"""Intervals the W&R findings need beyond the replicate t interval (:mod:`analyze.metrics.intervals`).

- :func:`wild_cluster_bootstrap`: an OLS coefficient's interval with few clusters (fewer than
  30, where cluster-robust errors are too narrow): the wild cluster restricted bootstrap-t
  (WCR), inverted, with Rademacher or Webb weights, seeded; with Rademacher weights and
  ``2**G <= n_boot`` every sign vector is enumerated once (exact, no randomness).
- :func:`target_pooled_ci`: a mean over targets that carries between-target variation: each
  target's mean over its seeds, then Student's t over targets (seeds nested in targets).
- :func:`bootstrap_cut`: finding 4's ``1 - gap_after / gap_before`` with a percentile interval
  from a bootstrap over seeds, nested in a bootstrap over targets where pooled, so it carries
  both gaps' uncertainty.
- :func:`sign_test`: the one-sided sign test of a per-target count (finding 1).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from analyze.metrics.intervals import ConfidenceInterval, replicate_ci
from extract.errors import UserError

WEIGHTS = ("rademacher", "webb")
WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
FEW_CLUSTERS = 30  # below this, cluster-robust errors come from the wild cluster bootstrap

__all__ = ["FEW_CLUSTERS", "WEIGHTS", "bootstrap_cut", "cluster_sandwich", "sign_test", "target_pooled_ci",
           "wild_cluster_bootstrap"]


def cluster_sandwich(design, residuals, clusters) -> np.ndarray:
    """CR0 cluster-robust covariance ``(X'X)^-1 sum_g X_g' u_g u_g' X_g (X'X)^-1``."""
    x, u = np.asarray(design, dtype=float), np.asarray(residuals, dtype=float)
    bread = np.linalg.pinv(x.T @ x)
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    scores = np.zeros((codes.max() + 1, x.shape[1]))
    np.add.at(scores, codes, x * u[:, None])
    return bread @ (scores.T @ scores) @ bread


def _weights(n_clusters: int, *, kind: str, n_boot: int, seed: int) -> np.ndarray:
    if kind not in WEIGHTS:
        raise UserError(f"`weights` must be one of {WEIGHTS}, got {kind!r}.")
    if kind == "rademacher" and 2 ** n_clusters <= n_boot:
        return np.array(list(itertools.product((-1.0, 1.0), repeat=n_clusters)))
    rng = np.random.default_rng(seed)
    if kind == "rademacher":
        return rng.choice([-1.0, 1.0], size=(n_boot, n_clusters))
    return rng.choice(WEBB, size=(n_boot, n_clusters))


def _studentized(x: np.ndarray, stars: np.ndarray, indicator: np.ndarray, term: int, null: float) -> np.ndarray:
    """``(beta_term - null) / CR0 se`` of the OLS fit of every row of ``stars`` (draws x rows) on ``x``."""
    bread = np.linalg.pinv(x.T @ x)
    betas = stars @ (bread @ x.T).T
    residuals = stars - betas @ x.T
    scores = indicator @ (residuals[:, :, None] * x[None, :, :])  # (draws, clusters, k)
    row = bread[term]
    variance = np.einsum("bg,bg->b", scores @ row, scores @ row)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, (betas[:, term] - null) / np.sqrt(variance), 0.0)


def _wcr_pvalue(x: np.ndarray, y: np.ndarray, setup: tuple, term: int, null: float) -> float:
    """Symmetric WCR p-value of ``beta_term = null``: residuals of the restricted fit, reweighted per cluster."""
    draws, codes, indicator = setup
    others = np.delete(np.arange(x.shape[1]), term)
    shifted = y - null * x[:, term]
    restricted, *_ = np.linalg.lstsq(x[:, others], shifted, rcond=None)
    fitted = x[:, others] @ restricted + null * x[:, term]
    residuals = y - fitted
    observed = _studentized(x, y[None, :], indicator, term, null)[0]
    stars = fitted[None, :] + draws[:, codes] * residuals[None, :]
    return float(np.mean(np.abs(_studentized(x, stars, indicator, term, null)) >= abs(observed) - 1e-12))


def _bound(pvalue, inside: float, step: float, alpha: float) -> float:
    """The null value where ``pvalue`` falls to ``alpha``, searched outward from ``inside`` by ``step``
    (doubling), then bisected to a thousandth of ``step``."""
    outside = inside + step
    for _ in range(60):
        if pvalue(outside) <= alpha:
            break
        inside, outside = outside, outside + 2 * (outside - inside)
    tolerance = 1e-3 * abs(step)
    while abs(outside - inside) > tolerance:
        middle = (inside + outside) / 2
        inside, outside = (middle, outside) if pvalue(middle) > alpha else (inside, middle)
    return (inside + outside) / 2


def wild_cluster_bootstrap(design, response, clusters, *, term: int, weights: str = "webb", n_boot: int = 999,
                           seed: int = 0, confidence: float = 0.95) -> ConfidenceInterval:
    """Wild cluster restricted (WCR) bootstrap interval of coefficient ``term`` of an OLS fit.

    The interval holds every value ``b`` that the symmetric WCR bootstrap-t test of
    ``beta_term = b`` does not reject at ``1 - confidence`` (MacKinnon & Webb): each test refits
    under the null, multiplies every cluster's restricted residuals by one weight (Rademacher:
    +-1; Webb: six points, variance 1) and studentizes with each replicate's CR0 error. The
    same weights serve every tested value, so the bounds are found by bisection.
    """
    x, y = np.asarray(design, dtype=float), np.asarray(response, dtype=float)
    labels, codes = np.unique(np.asarray(clusters), return_inverse=True)
    if len(labels) < 2:
        raise UserError("the wild cluster bootstrap needs at least two clusters; pass more targets.")
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    se = float(np.sqrt(cluster_sandwich(x, y - x @ beta, codes)[term, term]))
    draws = _weights(len(labels), kind=weights, n_boot=n_boot, seed=seed)
    setup = (draws, codes, (codes[None, :] == np.arange(len(labels))[:, None]).astype(float))

    def pvalue(null: float) -> float:
        return _wcr_pvalue(x, y, setup, term, null)

    alpha, step = 1 - confidence, max(se, 1e-12)
    low = _bound(pvalue, float(beta[term]), -step, alpha)
    high = _bound(pvalue, float(beta[term]), step, alpha)
    every = weights == "rademacher" and len(draws) == 2 ** len(labels)
    label = (f"wild cluster restricted bootstrap ({weights} weights, {len(draws)} draws"
             f"{', every sign vector' if every else f', seed {seed}'}, {len(labels)} clusters)")
    return ConfidenceInterval(float(beta[term]), low, high, label)


def target_pooled_ci(cells: pd.DataFrame, *, value: str, confidence: float = 0.95) -> ConfidenceInterval:
    """Mean over targets with between-target variation: per-target mean over seeds, then t over targets.

    With a single target it is the t interval over that target's seeds (said in the method).
    """
    for column in ("target", "seed", value):
        if column not in cells.columns:
            raise UserError(f"the cells have no {column!r} column, which a pooled interval needs.")
    per_target = cells.groupby("target")[value].mean()
    if len(per_target) == 1:
        ci = replicate_ci(cells[value].to_numpy(dtype=float), confidence=confidence)
        return ConfidenceInterval(ci.estimate, ci.low, ci.high, f"{ci.method} over seeds (one target)")
    ci = replicate_ci(per_target.to_numpy(dtype=float), confidence=confidence)
    return ConfidenceInterval(ci.estimate, ci.low, ci.high,
                              f"{ci.method} over {len(per_target)} targets (each the mean of its seeds)")


def _resample(groups: dict, rng: np.random.Generator) -> tuple[float, float]:
    targets = list(groups)
    chosen = rng.choice(len(targets), size=len(targets)) if len(targets) > 1 else [0]
    before, after = [], []
    for i in chosen:
        pairs = groups[targets[i]]
        pick = pairs[rng.integers(0, len(pairs), size=len(pairs))]
        before.append(pick[:, 0].mean())
        after.append(pick[:, 1].mean())
    return float(np.mean(before)), float(np.mean(after))


def bootstrap_cut(cells: pd.DataFrame, *, before: str, after: str, n_boot: int = 4000, seed: int = 0,
                  confidence: float = 0.95) -> ConfidenceInterval:
    """``1 - mean(after) / mean(before)`` with a percentile interval (module docstring).

    ``cells`` holds one row per (target, seed) with the gap before and after the move (the same
    seed's cells resampled together). Replicates whose ``before`` mean is not above 0 give no cut
    and are left out (their count is in the method).
    """
    for column in ("target", "seed", before, after):
        if column not in cells.columns:
            raise UserError(f"the cells have no {column!r} column, which the cut's bootstrap needs.")
    cells = cells.dropna(subset=[before, after])
    if cells.empty:
        raise UserError("no (target, seed) cell has both gaps; run both correlation levels.")
    groups = {t: g[[before, after]].to_numpy(dtype=float) for t, g in cells.groupby("target", sort=True)}
    mean_before = cells.groupby("target")[before].mean().mean()
    mean_after = cells.groupby("target")[after].mean().mean()
    point = 1.0 - mean_after / mean_before if mean_before > 0 else float("nan")
    rng = np.random.default_rng(seed)
    cuts = []
    for _ in range(n_boot):
        b, a = _resample(groups, rng)
        if b > 0:
            cuts.append(1.0 - a / b)
    if len(cuts) < n_boot / 2:
        return ConfidenceInterval(float(point), float("nan"), float("nan"), "bootstrap: the gap before is not "
                                  "above 0 in most replicates")
    low, high = np.quantile(cuts, [(1 - confidence) / 2, (1 + confidence) / 2])
    where = f"targets ({len(groups)}) and seeds within them" if len(groups) > 1 else "seeds"
    return ConfidenceInterval(float(point), float(low), float(high),
                              f"percentile bootstrap over {where}, {n_boot} draws, seed {seed}"
                              + (f" ({n_boot - len(cuts)} without a positive gap left out)" if len(cuts) < n_boot else ""))


def sign_test(exceed: int, total: int) -> float:
    """One-sided sign test: P(X >= ``exceed``) for X ~ Binomial(``total``, 1/2)."""
    if total < 1 or not 0 <= exceed <= total:
        raise UserError(f"`exceed` must lie in [0, `total`] with `total` >= 1, got {exceed} of {total}.")
    return float(stats.binomtest(exceed, total, 0.5, alternative="greater").pvalue)
