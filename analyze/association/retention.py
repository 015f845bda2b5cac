"""Ranjit et al.'s retention: the Spearman rank correlation of a comparison group before and after [R].

Their reading of "bias retained" (``plot_misc.py``, ``plot_intra_class.py``,
``get_multiple_trials_stats``): for a group of comparison items (a plot group, or one object
category), ``rho = scipy.stats.spearmanr(v_before, v_after)`` over the group's items, with its
p-value; with several trials each item's value is first averaged over the trials and rho is
computed on the averaged vectors. High rho means the ordering of the similarities survived
finetuning.

:func:`retention` adds a **paired bootstrap over images**: each replicate resamples the
images of every concept set once and applies the same draw to every trial before and after,
so the interval reflects which images were measured, not how they were paired. Replicates are a
function of the set sizes and the seed only (:func:`analyze.association.groups.resample_counts`),
so two models measured on the same images with the same seed share them: the difference of
their rhos has a paired interval too (:func:`analyze.association.findings.retention_rule`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analyze.association.bootstrap import check_interval_options
from analyze.association.groups import (
    PLOT_GROUPS,
    ComparisonItem,
    item_sets,
    item_values,
    items_in,
    resample_counts,
)
from analyze.association.measures import MIN_SET_SIZE, unit_sets
from extract.errors import UserError

#: Fewest items a group needs for a rank correlation with a p-value.
MIN_ITEMS = 3
RETENTION_COLUMNS = ["scope", "group", "n_items", "rho", "p_value", "ci_low", "ci_high",
                     "confidence", "n_bootstrap", "seed", "n_trials_before", "n_trials_after"]


@dataclass(frozen=True)
class RetentionOptions:
    """Bootstrap settings of :func:`retention`: replicates, interval level and seed."""

    n_bootstrap: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        check_interval_options(n_bootstrap=self.n_bootstrap, confidence=self.confidence,
                               seed=self.seed)


@dataclass(frozen=True)
class RetentionResult:
    """Retention per group: ``table`` (columns :data:`RETENTION_COLUMNS`), the items' trial-averaged
    ``values`` before and after (one row per item), and each group's bootstrap ``replicates``
    of rho keyed by ``(scope, group)``."""

    table: pd.DataFrame
    values: pd.DataFrame
    replicates: dict = field(repr=False)


def _trials(stage: str, embeddings) -> list[Mapping]:
    """One mapping per trial: a single mapping is one trial."""
    trials = [embeddings] if isinstance(embeddings, Mapping) else list(embeddings)
    if not trials or not all(isinstance(trial, Mapping) for trial in trials):
        raise UserError(f"`{stage}` is not a mapping of concept -> embeddings nor a non-empty "
                        "list of such mappings (one per trial); pass the embeddings of each "
                        "concept set.")
    return trials


def _unit_trials(stage: str, trials: list[Mapping], names: list[str]) -> list[dict]:
    units = []
    for number, trial in enumerate(trials):
        _check_stage_sets(trial, names, stage)
        labelled = unit_sets({f"{name} ({stage} {number})": trial[name] for name in names},
                             min_rows=MIN_SET_SIZE)
        units.append({name: labelled[f"{name} ({stage} {number})"] for name in names})
    return units


def _check_stage_sets(trial: Mapping, names: list[str], stage: str) -> None:
    missing = [name for name in names if name not in trial]
    if missing:
        raise UserError(f"the {stage} embeddings lack the concept set {missing[0]!r}; embed "
                        "every set of the comparison groups at both stages.")


def _sizes(units: list[dict]) -> dict[str, int]:
    sizes = {name: len(array) for name, array in units[0].items()}
    for unit in units[1:]:
        for name, array in unit.items():
            if len(array) != sizes[name]:
                raise UserError(f"the concept set {name!r} has {sizes[name]} images in one "
                                f"trial or stage and {len(array)} in another; embed the same "
                                "images in the same order everywhere.")
    return sizes


def rank_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair of two ``(m, k)`` arrays (average ranks); NaN where undefined."""
    ranks = [stats.rankdata(array, axis=1) for array in (first, second)]
    centred = [rank - rank.mean(axis=1, keepdims=True) for rank in ranks]
    scale = np.sqrt((centred[0] ** 2).sum(axis=1) * (centred[1] ** 2).sum(axis=1))
    finite = np.isfinite(first).all(axis=1) & np.isfinite(second).all(axis=1) & (scale > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (centred[0] * centred[1]).sum(axis=1) / scale
    return np.where(finite, rho, np.nan)


def _scopes(items: Sequence[ComparisonItem]) -> list[tuple[str, str, list[int]]]:
    """(scope, group, item positions) for every plot group and object with enough items."""
    scopes = [("plot_group", group, items_in(items, plot_group=group)) for group in PLOT_GROUPS]
    objects = dict.fromkeys(item.object for item in items if item.object is not None)
    scopes += [("object", obj, items_in(items, obj=obj)) for obj in objects]
    return [(scope, group, [items.index(item) for item in chosen])
            for scope, group, chosen in scopes if len(chosen) >= MIN_ITEMS]


def retention(before, after, groups: Sequence[ComparisonItem], *,
              options: RetentionOptions = RetentionOptions()) -> RetentionResult:
    """Spearman retention of every plot group and object category, with a paired bootstrap.

    Parameters
    ----------
    before, after : mapping of concept -> array-like (n_concept, d), or a list of them (trials)
        Embeddings of the same images (same rows, same order) before and after finetuning;
        the feature dimension may differ between stages.
    groups : sequence of ComparisonItem
        The comparison items, e.g. :func:`analyze.association.groups.comparison_groups`.
    options : RetentionOptions

    Returns
    -------
    RetentionResult
        ``rho`` and ``p_value`` equal ``scipy.stats.spearmanr`` on the trial-averaged values.
    """
    items = list(groups)
    if not items:
        raise UserError("no comparison item was given; pass e.g. comparison_groups(objects).")
    names = item_sets(items)
    units = {stage: _unit_trials(stage, _trials(stage, value), names)
             for stage, value in (("before", before), ("after", after))}
    sizes = _sizes(units["before"] + units["after"])
    counts = resample_counts(sizes, options.n_bootstrap, options.seed)
    point = {stage: np.mean([item_values(unit, items)[0] for unit in trials], axis=0)
             for stage, trials in units.items()}
    boot = {stage: np.mean([item_values(unit, items, counts) for unit in trials], axis=0)
            for stage, trials in units.items()}
    rows, replicates = [], {}
    tail = (1 - options.confidence) / 2
    for scope, group, positions in _scopes(items):
        rho, p_value = stats.spearmanr(point["before"][positions], point["after"][positions])
        reps = rank_correlations(boot["before"][:, positions], boot["after"][:, positions])
        replicates[(scope, group)] = reps
        low, high = np.nanquantile(reps, [tail, 1 - tail]) if np.isfinite(reps).any() \
            else (np.nan, np.nan)
        rows.append([scope, group, len(positions), float(rho), float(p_value), float(low),
                     float(high), options.confidence, options.n_bootstrap, options.seed,
                     len(units["before"]), len(units["after"])])
    values = pd.DataFrame({"item": [item.name for item in items],
                           "object": [item.object for item in items],
                           "plot_groups": [",".join(item.plot_groups) for item in items],
                           "before": point["before"], "after": point["after"]})
    return RetentionResult(table=pd.DataFrame(rows, columns=RETENTION_COLUMNS), values=values,
                           replicates=replicates)
