"""The cells each preset runs: probe and finetune subset specs built from the finetuning metadata.

A :class:`~analyze.reproduce.run.ReproduceConfig` names one probe grid and one finetune grid
(functions of the metadata and the config); the probe and finetune stages call them. The
order of the specs is part of a preset: a batch of probe cells is fitted in one engine call,
so a preset's specs stay in the order its numbers were first computed with.
"""

from __future__ import annotations

import pandas as pd

SENSITIVE = "dark_skin"  # the avatars' sensitive attribute: ReproduceConfig.sensitive's default


def findings_probe_specs(meta: pd.DataFrame, config) -> list:
    """Every probe cell of the findings: per target and seed, the correlation grid at
    stereotype levels, the natural n-sweep, the skewed set (80% stereotypical) and the
    curation sub-selection pair (80% -> 70%)."""
    from analyze.subsets import Correlation, Natural, Skew, SubSelection, level_toward_stereotype

    specs, sensitive = [], config.sensitive
    for t in config.targets:
        toward = {lvl: level_toward_stereotype(meta, t, sensitive, lvl) for lvl in (*config.levels, 0.8, 0.7)}
        for s in config.seeds:
            specs += [Correlation(t, sensitive, toward[lvl], n=config.probe_n, seed=s) for lvl in config.levels]
            specs += [Natural(t, sensitive, n=n, seed=s) for n in sorted({*config.sizes, config.probe_n})]
            specs.append(Skew(t, sensitive, toward[0.8], n=config.probe_n, seed=s))
            specs += [SubSelection(t, sensitive, toward[lvl], base_n=config.subselection_n, base_level=toward[0.8],
                                   seed=s) for lvl in (0.8, 0.7)]
    return specs


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


def findings_finetune_specs(meta: pd.DataFrame, config) -> list:
    """Full finetunes at the natural level and the strongest stereotype level (``finetune_n`` rows)."""
    from analyze.subsets import Correlation, Natural, level_toward_stereotype

    t, sensitive = config.finetune_target, config.sensitive
    strongest = level_toward_stereotype(meta, t, sensitive, 1.0)
    specs = [Natural(t, sensitive, n=config.finetune_n, seed=s) for s in config.finetune_seeds]
    return specs + [Correlation(t, sensitive, strongest, n=config.finetune_n, seed=s) for s in config.finetune_seeds]


def demo_finetune_specs(meta: pd.DataFrame, config) -> list:
    """The demo's finetunes: the stereotype-consistent extreme (every positive in the target's
    naturally associated group) and balance, ``finetune_n`` rows."""
    from analyze.subsets import Correlation, level_toward_stereotype

    t, sensitive = config.finetune_target, config.sensitive
    return [Correlation(t, sensitive, level_toward_stereotype(meta, t, sensitive, level), n=config.finetune_n, seed=s)
            for level in (1.0, 0.5) for s in config.finetune_seeds]


__all__ = ["SENSITIVE", "demo_finetune_specs", "demo_probe_specs", "findings_finetune_specs", "findings_probe_specs"]
