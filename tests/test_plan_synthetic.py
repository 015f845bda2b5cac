"""Curation planner on synthetic correlation sweeps with a known linear gap."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyze.curation import IntervalConfig, plan_curation, plan_markdown
from extract.errors import UserError

LEVELS = np.round(np.arange(0, 1.0001, 0.1), 2)


def sweep_table(*, natural=0.2, slope=0.4, auc_slope=0.1, noise=0.0, seeds=5, seed=0):
    """Correlation cells whose stereotype-direction FPR gap is ``slope * |c - 0.5|`` on the natural side.

    The raw ``fpr_gap`` = FPR(s=1) - FPR(s=0) is ``slope * (c - 0.5)``: group 1 gets more false
    positives as more positives are s=1. For ``natural < 0.5`` the stereotype sign is -1.
    """
    rng = np.random.default_rng(seed)
    rows = [dict(runner="probe", backbone="b", base_kind="biased", target="t", sensitive="s", n=128,
                 spec_kind="correlation", level=c, seed=k, natural_level=natural,
                 fpr_gap=slope * (c - 0.5) + rng.normal(0, noise),
                 auc=0.8 + auc_slope * c + rng.normal(0, noise / 4))
            for c in LEVELS for k in range(seeds)]
    return pd.DataFrame(rows)


def test_exact_linear_gap_recovers_the_halving_level():
    # natural 0.2: gap(c) = 0.4 (0.5 - c); gap(0.2) = 0.12, half = 0.06 at c = 0.35
    (row,) = plan_curation(sweep_table(), intervals=IntervalConfig(n_boot=200)).to_dict("records")
    assert row["status"] == "ok" and row["direction"] == "up"
    assert row["gap_natural"] == pytest.approx(0.12)
    assert row["halving_level"] == pytest.approx(0.35) and row["move"] == pytest.approx(0.15)
    assert row["auc_cost"] == pytest.approx(0.1 * 0.15)  # AUC rises 0.1 per unit level here
    assert row["move_low"] == pytest.approx(0.15) and row["move_high"] == pytest.approx(0.15)  # no noise
    assert row["reached_share"] == 1.0


def test_natural_level_above_one_half_moves_down_and_between_levels():
    # natural 0.73 (between swept levels): gap(c) = 0.4 (c - 0.5); gap0 = 0.092, halved at c = 0.615
    (row,) = plan_curation(sweep_table(natural=0.73), intervals=IntervalConfig(n_boot=0)).to_dict("records")
    assert row["direction"] == "down"
    assert row["gap_natural"] == pytest.approx(0.092)
    assert row["halving_level"] == pytest.approx(0.615)
    assert row["auc_cost"] == pytest.approx(-0.1 * 0.115)
    assert np.isnan(row["move_low"])  # no bootstrap asked


def test_noisy_sweep_interval_covers_the_truth():
    table = sweep_table(noise=0.02, seeds=5, seed=3)
    (row,) = plan_curation(table, intervals=IntervalConfig(n_boot=1000, random_state=1)).to_dict("records")
    assert row["halving_level_low"] <= 0.35 <= row["halving_level_high"]
    assert row["move_low"] <= 0.15 <= row["move_high"]
    assert row["gap_natural_low"] <= 0.12 <= row["gap_natural_high"]
    # replicate CI by hand: interpolation at 0.2 is the level-0.2 mean itself
    at = table[table["level"] == 0.2]["fpr_gap"].to_numpy() * -1
    se = at.std(ddof=1) / np.sqrt(len(at))
    assert row["gap_natural_low"] == pytest.approx(at.mean() - stats.t.ppf(0.975, len(at) - 1) * se, abs=1e-12)
    assert row["auc_cost_low"] <= 0.015 <= row["auc_cost_high"]


def test_rows_without_an_answer_say_why():
    flat = sweep_table(slope=0.0)
    assert plan_curation(flat, intervals=IntervalConfig(n_boot=0))["status"].iloc[0] == "no stereotype-direction gap at the natural level"
    # the gap only grows toward balance: never halves
    rising = sweep_table()
    rising["fpr_gap"] = -(0.1 + 0.1 * rising["level"])
    (row,) = plan_curation(rising, intervals=IntervalConfig(n_boot=100)).to_dict("records")
    assert row["status"] == "the gap does not halve within the swept levels" and np.isnan(row["halving_level"])
    assert row["reached_share"] == 0.0 and np.isnan(row["move_high"])
    assert "0.5 (balanced)" in plan_curation(sweep_table(natural=0.5), intervals=IntervalConfig(n_boot=0))["status"].iloc[0]
    outside = sweep_table()[lambda t: t["level"] >= 0.3]
    assert "outside" in plan_curation(outside, intervals=IntervalConfig(n_boot=0))["status"].iloc[0]
    one_sided = sweep_table(natural=0.6)[lambda t: t["level"] >= 0.6]
    assert "beyond the natural level" in plan_curation(one_sided, intervals=IntervalConfig(n_boot=10))["status"].iloc[0]


def test_groups_filters_and_markdown():
    table = pd.concat([sweep_table(), sweep_table(natural=0.8).assign(backbone="c", base_kind="control"),
                       sweep_table().assign(n=1024), sweep_table().assign(spec_kind="natural")])
    plan = plan_curation(table, intervals=IntervalConfig(n_boot=50))
    assert len(plan) == 3 and set(plan["n"]) == {128, 1024}
    assert len(plan_curation(table, n=1024, intervals=IntervalConfig(n_boot=0))) == 1
    text = plan_markdown(plan)
    assert text.count("\n| probe |") == 3 and "0.350 [0.350, 0.350]" in text
    with pytest.raises(UserError, match="no correlation cells"):
        plan_curation(table, runner="finetune")
    with pytest.raises(UserError, match="`metric` must be one of"):
        plan_curation(table, metric="auc")
    with pytest.raises(UserError, match="'natural_level'"):
        plan_curation(table.drop(columns="natural_level"))


def test_runs_with_undefined_metrics_are_left_out():
    table = sweep_table()
    table.loc[table["seed"] == 0, "fpr_gap"] = np.nan  # e.g. a group without negatives
    (row,) = plan_curation(table, intervals=IntervalConfig(n_boot=50)).to_dict("records")
    assert row["seeds"] == 4 and row["halving_level"] == pytest.approx(0.35)
    table["fpr_gap"] = np.nan
    assert plan_curation(table, intervals=IntervalConfig(n_boot=0))["status"].iloc[0] == "no finite fpr_gap values"
