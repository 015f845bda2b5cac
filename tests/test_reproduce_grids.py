"""Each reproduce preset's grids build on a small generated metadata table, with the cells its design names."""

import numpy as np
import pandas as pd
import pytest

from analyze.reproduce.grids import CellGroup, grid_cells, paper_finetune_groups, paper_probe_specs
from analyze.reproduce.run import PRESETS
from analyze.reproduce.stages import feasible


def _meta(targets, rows=3000, seed=0):
    """Avatar-like metadata: dark_skin, each target correlated with it (both signs), hat and blazer."""
    rng = np.random.default_rng(seed)
    s = (rng.random(rows) < 0.4).astype(int)
    meta = {"dark_skin": s, "split": rng.choice(["train", "val", "test"], size=rows, p=[0.6, 0.2, 0.2])}
    for i, t in enumerate(dict.fromkeys([*targets, "hat", "blazer"])):
        p1, p0 = (0.55, 0.35) if i % 2 else (0.3, 0.5)
        meta[t] = (rng.random(rows) < np.where(s == 1, p1, p0)).astype(int)
    return pd.DataFrame(meta)


@pytest.mark.parametrize("name", ["paper", "cpu", "quick", "tiny"])
def test_each_presets_grid_builds_with_its_cell_counts(name):
    config = PRESETS[name]
    meta = _meta(config.targets)
    probes = paper_probe_specs(meta, config)
    seeds, sizes = len(config.seeds), len(set(config.sizes) - {config.paper_n})
    # natural + skewz at paper_n, the n-sweep, correlation 0.8 / 0.7 and sub-selection 0.8 / 0.7
    assert len(probes) == len(config.targets) * seeds * (2 + sizes + 4)
    groups = {g.name.split(":")[0]: g for g in paper_finetune_groups(meta, config)}
    assert list(groups) == ["R1/R2", "R3", "R4", "R6/R7"] and all(isinstance(g, CellGroup) for g in groups.values())
    ft_seeds = len(config.finetune_seeds)
    assert len(groups["R1/R2"].specs) == len(config.finetune_targets or config.targets) * ft_seeds * 2
    assert len(groups["R3"].specs) == (len(config.sweep_targets or config.targets) * ft_seeds
                                       * len(set(config.finetune_sizes) - {config.paper_n}))
    assert len(groups["R4"].specs) == len(config.curation_targets or config.targets) * ft_seeds * 4
    assert len(groups["R6/R7"].specs) == len(config.pair_sizes) * len(config.pair_shares) * ft_seeds
    assert groups["R6/R7"].sensitive == config.pair[1]  # auc_group0 = AUC on A-positives
    assert groups["R1/R2"].roles == ("biased", "control") and "best_control" in groups["R3"].roles
    assert set(groups["R4"].roles) == {"imagenet", "scratch", "biased"}
    kinds = {spec.kind for spec in groups["R1/R2"].specs}
    assert kinds == {"natural", "skew"} and {spec.p for spec in groups["R1/R2"].specs if spec.kind == "skew"} == {0.8}
    # one biased base, three controls, the best control, scratch, ImageNet, the pair's two bases
    roles = {"biased": 1, "control": 3, "best_control": 1, "scratch": 1, "imagenet": 1, "pair_a": 1, "pair_b": 1}
    total = grid_cells(list(groups.values()), roles)
    assert total == (4 * len(groups["R1/R2"].specs) + 2 * len(groups["R3"].specs) + 3 * len(groups["R4"].specs)
                     + 2 * len(groups["R6/R7"].specs))


def test_the_tiny_presets_cells_are_drawable_from_its_sized_metadata():
    config = PRESETS["tiny"]
    meta = _meta(config.targets, rows=config.n)
    probes, notes = feasible(paper_probe_specs(meta, config), meta)
    assert probes and not notes
    for group in paper_finetune_groups(meta, config):
        kept, notes = feasible(list(group.specs), meta)
        assert len(kept) == len(group.specs), notes


def test_presets_name_their_deviations_and_budgets():
    assert PRESETS["full"] is PRESETS["cpu"]  # the old default's name
    assert PRESETS["cpu"].budget_s == 7200 and PRESETS["quick"].budget_s == 900
    assert "n = 256 (paper: 1024)" in PRESETS["cpu"].deviation
    assert PRESETS["paper"].paper_n == 1024 and len(PRESETS["paper"].finetune_seeds) >= 3
    assert max(PRESETS["paper"].finetune_sizes) >= 4096
    assert PRESETS["quick"].finetune_groups == ("R1/R2",)
    for config in PRESETS.values():  # Scratch trains with its own lr grid, BatchNorm statistics trained
        assert config.scratch_lrs and config.pair[0] != config.pair[1]


def test_scratch_finetunes_with_its_own_settings():
    from analyze.reproduce.stages import finetune_settings

    config = PRESETS["cpu"]
    scratch, biased = finetune_settings(config, "scratch"), finetune_settings(config, "biased")
    assert scratch.lrs == tuple(config.scratch_lrs) and not scratch.freeze_bn and len(scratch.lrs) >= 2
    assert biased.lrs == tuple(config.finetune_lrs) and biased.freeze_bn == config.finetune_freeze_bn


def test_finetune_pairs_reads_the_auc_on_a_positives_of_each_base():
    from analyze.reproduce.stages import finetune_pairs

    rows = [{"runner": "finetune", "spec_kind": "underrepresentation", "backbone": backbone, "attr_a": "hat",
             "attr_b": "blazer", "share_a": 0.1, "n": 128, "seed": s, "auc_group0": 0.6 + 0.1 * (backbone == "on-hat"),
             "auc": 0.7, "rows_digest": f"d{s}"}
            for backbone in ("on-hat", "/bases/on-blazer.pt", "other") for s in (0, 1, 2)]
    rows.append({**rows[0], "runner": "probe"})  # not a finetune record
    pairs = finetune_pairs(pd.DataFrame(rows), {"A": ("on-hat", "/bases/on-hat.pt"),
                                                "B": ("on-blazer", "/bases/on-blazer.pt")})
    assert len(pairs) == 6 and set(pairs["runner"]) == {"finetune"}
    assert pairs.groupby("role")["auc_a"].mean().round(3).to_dict() == {"A": 0.7, "B": 0.6}


def test_the_run_states_its_time_cells_and_overrun():
    from analyze.reproduce.run import time_summary
    from analyze.reproduce.stages import PipelineRun

    run = PipelineRun(out="x", config=PRESETS["quick"])
    run.times = {"render the avatar dataset": 100.0, "pretrain the bases": 900.0, "probes": 50.0}
    run.cells = {"probe": 405, "finetune": 18, "finetune_run": 6}
    words = time_summary(run, 1200.0)
    assert "405 probe, 18 finetune (6 trained in this run)" in words
    assert "overran by 300 s" in words and "700 s to spare without rendering and the bases" in words
