"""Salience: how much easier the sensitive attribute ``s`` is to learn than the target ``y``.

The estimator of Wang & Russakovsky (ICCV 2023; ``docs/science.md`` section 4). Models are
trained on the **aligned** set (``y == s`` on every row, label ``y``) and on the
**inverted** set (``y != s``), several replicates each, and tested on a set with four
equal ``(y, s)`` quadrants, where ``y`` and ``s`` are independent. For a model's test
scores ``p``::

    A_y = max(AUC(y, p), AUC(1 - y, p))      # how well p ranks by y, either sign
    A_s = max(AUC(s, p), AUC(1 - s, p))      # how well p ranks by s, either sign
    salience = mean(A_s) - mean(A_y) + 0.5   # means over all models, aligned and inverted

Both components lie in [0.5, 1]. Salience lies in [0, 1]: above 0.5 the models followed
``s`` more than ``y`` (``s`` is the easier cue), below 0.5 they followed ``y``. The
released code trained on the aligned set twice (its inverted flag never fired); here the
inverted set is built from the opposite cells (:class:`~analyze.subsets.SalienceSets`).

Uncertainty: every model gives ``v = A_s - A_y + 0.5``, whose mean over models is the
salience (equal replicates per arrangement make this the mean of the two arrangements'
means, as in the paper); the interval is the t interval ``mean ± t(0.975, k-1)·sd/√k`` over
the k models (:func:`analyze.metrics.replicate_ci`, ``docs/science.md`` section 7).

Methods: ``"scratch"`` (the paper's: networks trained from random init) and ``"probe"``
(fast: logistic probes on a scratch or given base's features); see
:mod:`analyze.salience.fit`. On the avatar dataset the truth is known from the generator
(the mean pixel change of toggling each attribute): :func:`validate_salience` compares.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analyze.metrics import UndefinedMetricWarning, replicate_ci, roc_auc
from extract.errors import UserError

TABLE_COLUMNS = ["target", "sensitive", "salience", "ci_low", "ci_high", "A_y", "A_s", "A_y_aligned",
                 "A_y_inverted", "A_s_aligned", "A_s_inverted", "n_models", "method", "seed"]


def salience_components(y, s, scores) -> tuple[np.ndarray, np.ndarray]:
    """Per-model ``A_y`` and ``A_s`` (direction-free AUCs), each of shape (n_models,).

    Parameters
    ----------
    y, s : array-like of {0, 1}, shape (n_test,)
        Target and sensitive values of the test rows.
    scores : array-like of float, shape (n_models, n_test) or (n_test,)
        Each model's test scores (higher = more ``y = 1``; the sign does not matter).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    y, s = np.asarray(y), np.asarray(s)
    for name, values in (("y", y), ("s", s)):
        if values.ndim != 1 or len(values) != scores.shape[1]:
            raise UserError(f"{name} must have one value per test row ({scores.shape[1]}), got shape {values.shape}.")
        if set(np.unique(values).tolist()) != {0, 1}:
            raise UserError(f"the test {name} must hold both 0 and 1 (the four-quadrant set); got {np.unique(values)}.")
    auc_y, auc_s = np.atleast_1d(roc_auc(y, scores)), np.atleast_1d(roc_auc(s, scores))
    return np.maximum(auc_y, 1 - auc_y), np.maximum(auc_s, 1 - auc_s)


@dataclass(frozen=True)
class SalienceEstimate:
    """A salience estimate with its components (see the module docstring)."""

    target: str
    sensitive: str
    salience: float
    ci_low: float
    ci_high: float
    A_y: float
    A_s: float
    A_y_aligned: float
    A_y_inverted: float
    A_s_aligned: float
    A_s_inverted: float
    n_models: int
    method: str
    seed: int
    per_model: pd.DataFrame = field(repr=False, default=None)
    details: dict = field(repr=False, default_factory=dict)

    def to_row(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in TABLE_COLUMNS}


def salience_from_scores(y, s, scores, arrangements: Sequence[str], *, target: str = "y", sensitive: str = "s",
                         method: str = "given", seed: int = 0) -> SalienceEstimate:
    """Salience, components and interval from the test scores of aligned and inverted models.

    Parameters
    ----------
    y, s : array-like of {0, 1}, shape (n_test,)
    scores : array-like, shape (n_models, n_test)
    arrangements : sequence of {"aligned", "inverted"}, one per model
    target, sensitive, method, seed
        Recorded in the estimate (the hyperparameters chosen per arrangement go into its
        ``details``: ``dataclasses.replace(estimate, details=...)``).
    """
    a_y, a_s = salience_components(y, s, scores)
    arrangements = np.asarray(list(arrangements))
    if len(arrangements) != len(a_y) or not set(arrangements) <= {"aligned", "inverted"}:
        raise UserError("arrangements must name 'aligned' or 'inverted' for each model (row of scores).")
    value = a_s - a_y + 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one model: NaN interval, said by n_models
        ci = replicate_ci(value)

    def mean_of(values, arr):
        chosen = values[arrangements == arr]
        return float(chosen.mean()) if len(chosen) else float("nan")

    per_model = pd.DataFrame({"arrangement": arrangements, "A_y": a_y, "A_s": a_s, "salience": value})
    return SalienceEstimate(
        target=target, sensitive=sensitive, salience=float(a_s.mean() - a_y.mean() + 0.5),
        ci_low=float(ci.low), ci_high=float(ci.high), A_y=float(a_y.mean()), A_s=float(a_s.mean()),
        A_y_aligned=mean_of(a_y, "aligned"), A_y_inverted=mean_of(a_y, "inverted"),
        A_s_aligned=mean_of(a_s, "aligned"), A_s_inverted=mean_of(a_s, "inverted"),
        n_models=len(a_y), method=method, seed=int(seed), per_model=per_model, details={})


def true_relative_strength(signal_strength: Mapping[str, float], targets: Sequence[str], sensitive: str) -> pd.Series:
    """Ground-truth relative salience of ``sensitive`` vs each target on the avatar dataset.

    ``log(strength[sensitive] / strength[target])``: positive when toggling the sensitive
    attribute changes more pixels than toggling the target. Any monotone transform (e.g.
    ``strength_s / (strength_s + strength_t)``) gives the same Spearman correlation.
    """
    missing = [a for a in [sensitive, *targets] if a not in signal_strength]
    if missing:
        raise UserError(f"the signal strengths lack {missing}; they come from an avatar cache's generator.")
    values = {t: float(np.log(signal_strength[sensitive] / signal_strength[t])) for t in targets}
    return pd.Series(values, name="true_log_ratio").rename_axis("target")


@dataclass(frozen=True)
class SalienceValidation:
    """Spearman correlation between estimated salience and the true relative strength."""

    spearman: float
    pvalue: float
    table: pd.DataFrame = field(repr=False)


def validate_salience(table: pd.DataFrame, signal_strength: Mapping[str, float], *, sensitive: str) -> SalienceValidation:
    """Compare a salience table (columns ``target``, ``salience``) with the generator's truth.

    Returns the Spearman rank correlation between ``salience`` and
    :func:`true_relative_strength` over the table's targets (at least 3), and the table
    with ``strength_target``, ``strength_sensitive`` and ``true_log_ratio`` added.
    """
    if len(table) < 3:
        raise UserError(f"a rank correlation needs at least 3 targets, got {len(table)}; estimate more targets.")
    truth = true_relative_strength(signal_strength, list(table["target"]), sensitive)
    joined = table.assign(strength_target=[float(signal_strength[t]) for t in table["target"]],
                          strength_sensitive=float(signal_strength[sensitive]),
                          true_log_ratio=truth.loc[list(table["target"])].to_numpy())
    result = spearmanr(joined["salience"], joined["true_log_ratio"])
    return SalienceValidation(float(result.statistic), float(result.pvalue), joined)


__all__ = ["SalienceEstimate", "SalienceValidation", "salience_components", "salience_from_scores",
           "true_relative_strength", "validate_salience"]
