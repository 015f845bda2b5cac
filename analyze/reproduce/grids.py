"""The cells each preset runs: probe and finetune subset specs built from the finetuning metadata.

A :class:`~analyze.reproduce.run.ReproduceConfig` names one probe grid and one finetune grid
(functions of the metadata and the config); the probe and finetune stages call them. The
order of the specs is part of a preset: a batch of probe cells is fitted in one engine call,
so a preset's specs stay in the order its numbers were first computed with.

A finetune grid returns either a list of specs (every finetuned base runs all of them: the
demo's) or a list of :class:`CellGroup` (W&R's design, :func:`paper_finetune_groups`): each
group names the base *roles* that run it, since the paper finetunes different bases for
different findings:

======================  ==========================================  ==========================
group                   cells (per target and seed)                 roles
======================  ==========================================  ==========================
``R1/R2``               natural and skewz sets at ``paper_n``       biased, control
``R3``                  natural sets over ``finetune_sizes``        biased, best_control
``R4``                  correlation 0.8 / 0.7 at ``curation_n``;     imagenet, scratch, biased
                        sub-selection 0.8 / 0.7 of ``subselection_n``
``R6/R7``               label "A or B", A-only shares x pair sizes  pair_a, pair_b
======================  ==========================================  ==========================

``best_control`` is the control with the best mean finetune AUC on the natural sets at
``paper_n`` (chosen once, after ``R1/R2``); ``pair_a`` / ``pair_b`` the control bases
pretrained on ``config.pair``'s attributes A and B. The ``R6/R7`` cells are scored with the
group column B, so a record's ``auc_group0`` is the AUC of the A-only positives against the
negatives (the paper's AUC on A-positives).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

SENSITIVE = "dark_skin"  # the avatars' sensitive attribute: ReproduceConfig.sensitive's default
ROLES = ("biased", "control", "best_control", "scratch", "imagenet", "pair_a", "pair_b")


@dataclass(frozen=True)
class CellGroup:
    """Finetune cells that the bases of ``roles`` run (:data:`ROLES`); ``sensitive``: the group
    column the records are scored with (None: each spec's own)."""

    name: str
    roles: tuple
    specs: tuple
    sensitive: str | None = None


def _curation_specs(meta: pd.DataFrame, targets, config, *, seeds) -> list:
    """Finding 4's cells: 20% -> 30% counter-stereotypical positives at constant n (labels and groups
    50/50, digest 3.2) and by sub-selection of one base set (constant minority count, 3.3)."""
    from analyze.subsets import Correlation, SubSelection, level_toward_stereotype

    specs = []
    for t in targets:
        toward = {lvl: level_toward_stereotype(meta, t, config.sensitive, lvl) for lvl in (0.8, 0.7)}
        for s in seeds:
            specs += [Correlation(t, config.sensitive, toward[lvl], n=config.curation_n, seed=s) for lvl in (0.8, 0.7)]
            specs += [SubSelection(t, config.sensitive, toward[lvl], base_n=config.subselection_n, base_level=toward[0.8],
                                   seed=s) for lvl in (0.8, 0.7)]
    return specs


def _inheritance_specs(targets, config, *, seeds) -> list:
    """Findings 1 and 2: the natural set and the paper's skewz set (``config.sensitive``, the avatars' ``dark_skin``, at 80% of the
    positives and 20% of the negatives for every target) at ``paper_n``."""
    from analyze.reproduce.measures import skewz_spec
    from analyze.subsets import Natural

    return [spec for t in targets for s in seeds
            for spec in (Natural(t, config.sensitive, n=config.paper_n, seed=s),
                         skewz_spec(t, config.sensitive, n=config.paper_n, seed=s))]


def paper_probe_specs(meta: pd.DataFrame, config) -> list:
    """W&R's design on linear probes (the fast proxy): findings 1-2 (natural and skewz at
    ``paper_n``), the natural n-sweep over ``sizes`` (finding 3) and finding 4's sets, per target
    and seed (``seeds``); the pairs experiment's probes are the pairs stage's."""
    from analyze.subsets import Natural

    specs = _inheritance_specs(config.targets, config, seeds=config.seeds)
    specs += [Natural(t, config.sensitive, n=n, seed=s) for t in config.targets for s in config.seeds
              for n in sorted(set(config.sizes) - {config.paper_n})]
    return specs + _curation_specs(meta, config.targets, config, seeds=config.seeds)


def paper_finetune_groups(meta: pd.DataFrame, config) -> list[CellGroup]:
    """W&R's design on full finetunes (module docstring's table), seeds ``finetune_seeds``."""
    from analyze.subsets import Natural, Underrepresentation

    seeds = config.finetune_seeds
    sweep = config.sweep_targets or config.targets
    groups = [CellGroup("R1/R2: natural and skewz sets", ("biased", "control"),
                        tuple(_inheritance_specs(config.finetune_targets or config.targets, config, seeds=seeds))),
              CellGroup("R3: natural n-sweep", ("biased", "best_control"),
                        tuple(Natural(t, config.sensitive, n=n, seed=s) for t in sweep for s in seeds
                              for n in sorted(set(config.finetune_sizes) - {config.paper_n}))),
              CellGroup("R4: 20% -> 30% counter-stereotypical positives", ("imagenet", "scratch", "biased"),
                        tuple(_curation_specs(meta, config.curation_targets or config.targets, config, seeds=seeds)))]
    a, b = config.pair
    pairs = tuple(Underrepresentation(a, b, share, n=n, seed=s) for n in config.pair_sizes
                  for share in config.pair_shares for s in seeds)
    return groups + [CellGroup("R6/R7: pairs experiment", ("pair_a", "pair_b"), pairs, sensitive=b)]


def grid_cells(groups, roles: dict[str, int]) -> int:
    """Cells a finetune grid runs when ``roles`` holds the number of bases of each role."""
    if groups and not isinstance(groups[0], CellGroup):
        return len(groups) * roles.get("finetuned", 0)
    return sum(len(g.specs) * sum(roles.get(r, 0) for r in g.roles) for g in groups)


def demo_probe_specs(meta: pd.DataFrame, config) -> list:
    """The demo's probe cells: the correlation grid at P(s=1 | y=1) ``levels``, the natural set
    and a skewed set (80% of positives in the target's stereotypical group), per target and seed."""
    from analyze.subsets import Correlation, Natural, Skew, level_toward_stereotype

    targets, n, seeds, sensitive = config.targets, config.probe_n, config.seeds, config.sensitive
    specs = [Correlation(t, sensitive, level, n=n, seed=s) for t in targets for level in config.levels for s in seeds]
    # the paper's regression conditions: the natural set, and a skewed one with 80% of positives stereotypical
    specs += [Natural(t, sensitive, n=n, seed=s) for t in targets for s in seeds]
    specs += [Skew(t, sensitive, level_toward_stereotype(meta, t, sensitive, 0.8), n=n, seed=s)
              for t in targets for s in seeds]
    return specs


def demo_finetune_specs(meta: pd.DataFrame, config) -> list:
    """The demo's finetunes: the stereotype-consistent extreme (every positive in the target's
    naturally associated group) and balance, ``finetune_n`` rows."""
    from analyze.subsets import Correlation, level_toward_stereotype

    t, sensitive = config.finetune_target, config.sensitive
    return [Correlation(t, sensitive, level_toward_stereotype(meta, t, sensitive, level), n=config.finetune_n, seed=s)
            for level in (1.0, 0.5) for s in config.finetune_seeds]


__all__ = ["ROLES", "SENSITIVE", "CellGroup", "demo_finetune_specs", "demo_probe_specs", "grid_cells",
           "paper_finetune_groups", "paper_probe_specs"]
