"""Findings: numbers and intervals recomputed by hand, and no claim the data do not support."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyze.report.compare import comparison_section, shared_cells
from analyze.report.findings import (
    correlation_findings,
    difference,
    effect_findings,
    natural_findings,
    pooled_summary,
    strongest_and_balanced,
    with_interval,
    zero_verdict,
)
from analyze.report.sections import fit_models
from tests.test_effects_table import synthetic_results


def t95(k):
    """The t quantile of a 95% interval over k replicates (k - 1 df)."""
    return stats.t.ppf(0.975, k - 1)


def welch_half(sd_a, sd_b, k):
    va, vb = sd_a ** 2 / k, sd_b ** 2 / k
    df = (va + vb) ** 2 / (va ** 2 / (k - 1) + vb ** 2 / (k - 1))
    return stats.t.ppf(0.975, df) * math.sqrt(va + vb)

INTERVAL = re.compile(r"-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]")
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def sweep(*, biased_slope, control_slope, noise=0.01, seeds=4, targets=3, runner="probe", random_state=0):
    """Correlation cells: gap = 0.05 + slope(base) * |level - 0.5| + noise, two controls."""
    rng = np.random.default_rng(random_state)
    slopes = {"big": ("biased", biased_slope), "c1": ("control", control_slope), "c2": ("control", control_slope / 2)}
    rows = [dict(runner=runner, backbone=b, base_kind=kind, spec_kind="correlation", target=f"t{t}", level=level,
                 n=128, seed=seed, fpr_gap_stereotype=0.05 + slope * abs(level - 0.5) + rng.normal(0, noise),
                 auc=0.9 - 0.1 * abs(level - 0.5) + rng.normal(0, 0.005))
            for b, (kind, slope) in slopes.items() for t in range(targets) for level in LEVELS
            for seed in range(seeds)]
    return pd.DataFrame(rows)


def hand_summary(cells: pd.DataFrame, backbone: str, level: float) -> tuple[float, float, float, float, int]:
    """Per-seed mean over targets, then mean, sd (ddof=1), 95% t bounds over seeds."""
    values = cells[(cells["backbone"] == backbone) & (cells["level"] == level)].groupby("seed")[
        "fpr_gap_stereotype"].mean().to_numpy()
    mean, sd, k = values.mean(), values.std(ddof=1), len(values)
    return mean, sd, mean - t95(k) * sd / math.sqrt(k), mean + t95(k) * sd / math.sqrt(k), k


def test_strongest_vs_control_numbers_match_a_hand_computation():
    table = sweep(biased_slope=0.6, control_slope=0.3)
    findings = correlation_findings(table, metric="fpr_gap_stereotype")
    assert findings[0].startswith("Headline setting: n = 128: the size nearest 1024 where every target is feasible")
    sentence = next(f for f in findings if "for the control base c1" in f)
    g_mean, g_sd, g_low, g_high, k = hand_summary(table, "big", 1.0)
    c_mean, c_sd, c_low, c_high, _ = hand_summary(table, "c1", 1.0)
    half = welch_half(g_sd, c_sd, k)  # no rows_digest in this table: Welch's unpaired interval
    assert sentence.startswith("At the strongest correlation level, 1 (n = 128, mean over 3 targets, 95% t "
                               "intervals over 4 seeds)")
    assert (f"{g_mean:.3f} [{g_low:.3f}, {g_high:.3f}] vs {c_mean:.3f} [{c_low:.3f}, {c_high:.3f}] for the control "
            "base c1") in sentence
    d = g_mean - c_mean
    assert f"difference is {d:.3f} [{d - half:.3f}, {d + half:.3f}] (95% Welch t interval (unpaired)" in sentence
    assert "and its interval excludes zero" in sentence
    assert "show the biased base transferring more bias than that control base" in sentence
    # every control is compared, not only the one with the largest gap
    assert any("for the control base c2" in f for f in findings)


def test_targets_of_opposite_natural_direction_pool_on_the_stereotype_level():
    # Target t1 is naturally associated with group 0: its stereotypical extreme is level 0, where its
    # natural-direction gap is largest. Pooled on the raw level the two targets would cancel.
    table = sweep(biased_slope=0.6, control_slope=0.3, targets=2)
    flipped = table["target"] == "t1"
    table["over_represented_group"] = np.where(flipped, 0.0, 1.0)
    table["stereotype_level"] = table["level"]
    table.loc[flipped, "level"] = 1.0 - table.loc[flipped, "level"]
    sentence = correlation_findings(table, metric="fpr_gap_stereotype")[1]
    assert sentence.startswith("At the strongest stereotype-consistent correlation level P(stereotypical group | y=1), "
                               "1 (n = 128, mean over 2 targets")
    g_mean, _, g_low, g_high, _ = hand_summary(table.assign(level=table["stereotype_level"]), "big", 1.0)
    assert f"{g_mean:.3f} [{g_low:.3f}, {g_high:.3f}] vs" in sentence
    assert "show the biased base transferring more bias than that control" in sentence


def test_fall_toward_balance_and_auc_cost_are_stated_with_intervals():
    table = sweep(biased_slope=0.6, control_slope=0.3)
    findings = correlation_findings(table, metric="fpr_gap_stereotype")
    falls = [f for f in findings if f.startswith("Toward balance")]
    assert len(falls) == 3 and "big (biased): the fpr_gap_stereotype falls from" in falls[0]
    top, mid = hand_summary(table, "big", 1.0), hand_summary(table, "big", 0.5)
    assert f"falls from {top[0]:.3f} [{top[2]:.3f}, {top[3]:.3f}] at level 1 to {mid[0]:.3f} " in falls[0]
    assert "at level 0.5" in falls[0] and "its interval excludes zero" in falls[0] and "Welch t" in falls[0]
    assert any(f.startswith("Test auc across the same move: big: auc") for f in findings)
    assert all(INTERVAL.search(f) for f in findings if not f.startswith("Headline setting"))


def test_no_difference_claimed_when_the_interval_includes_zero():
    table = sweep(biased_slope=0.3, control_slope=0.3, noise=0.05, seeds=3)
    same = table.loc[table["backbone"] == "c1", "fpr_gap_stereotype"].to_numpy()
    table.loc[table["backbone"] == "big", "fpr_gap_stereotype"] = same  # identical to the top control
    first = correlation_findings(table, metric="fpr_gap_stereotype")[1]
    assert "the difference is 0.000 [-" in first
    assert first.endswith("and its interval includes zero, so these data do not show a difference.")
    assert "transferring more bias" not in first
    flat = sweep(biased_slope=0.0, control_slope=0.0, noise=0.05, seeds=3, random_state=1)
    flat_falls = [f for f in correlation_findings(flat, metric="fpr_gap_stereotype") if "Toward balance" in f]
    assert len(flat_falls) == 3
    assert all(("does not change detectably" in f) == ("includes zero" in f) for f in flat_falls)
    assert any("does not change detectably" in f for f in flat_falls)
    assert not any(" falls from" in f and "includes zero" in f for f in flat_falls)


def test_natural_level_finding_uses_the_natural_cells():
    table = synthetic_results(n_targets=3, seeds=3, sizes=(1024,))
    found = natural_findings(table, metric="fpr_gap_stereotype")
    assert found[0].startswith("Headline setting of the natural cells: n = 1024")
    sentence = found[1]
    cells = table[table["spec_kind"] == "natural"]
    g = cells[cells["backbone"] == "biased_net"].groupby("seed")["fpr_gap_stereotype"].mean()
    assert sentence.startswith("At the natural level")
    assert f"biased_net has a fpr_gap_stereotype of {g.mean():.3f} [" in sentence and "base ctrl_a" in sentence


def test_pooled_summary_against_pandas_and_difference_interval():
    table = sweep(biased_slope=0.5, control_slope=0.2)
    summary = pooled_summary(table, by=["backbone", "level"], value="fpr_gap_stereotype").set_index(
        ["backbone", "level"])
    mean, sd, low, high, k = hand_summary(table, "c2", 0.25)
    row = summary.loc[("c2", 0.25)]
    assert row["mean"] == pytest.approx(mean) and row["sd"] == pytest.approx(sd) and row["k"] == k
    assert row["ci_low"] == pytest.approx(low) and row["n_targets"] == 3
    a = pd.Series({"mean": 1.0, "sd": 0.2, "k": 4})
    b = pd.Series({"mean": 0.5, "sd": 0.4, "k": 4})
    d, lo, hi = difference(a, b)
    assert d == 0.5 and hi - d == pytest.approx(welch_half(0.2, 0.4, 4))
    assert d - lo == pytest.approx(hi - d)
    single = pd.Series({"mean": 0.5, "sd": np.nan, "k": 1})
    assert difference(a, single)[0] == 0.5 and math.isnan(difference(a, single)[1])


def test_interval_wording_helpers():
    assert with_interval(0.1234, 0.1, 0.15) == "0.123 [0.100, 0.150]"
    assert "no interval" in with_interval(0.1, math.nan, math.nan)
    assert with_interval(0.1, math.nan, math.nan, k=1) == "0.100 (no interval: 1 replicate)"
    assert with_interval(0.1, math.nan, math.nan, k=5) == "0.100 (no interval)"  # never "fewer than 2" with 5
    assert zero_verdict(-0.1, 0.2) == "its interval includes zero"
    assert zero_verdict(0.01, 0.2) == "its interval excludes zero"
    assert strongest_and_balanced([0.0, 0.3, 0.5, 1.0]) == (1.0, 0.5)
    assert strongest_and_balanced([0.1, 0.4, 0.8]) == (0.1, 0.4)


def test_effect_findings_report_each_term_with_its_interval():
    table = synthetic_results(n_targets=4, seeds=3, sizes=(128, 1024))
    results = {r.key: r for r in fit_models(table, metric="fpr_gap_stereotype")}
    assert set(results) == {"paper", "general", "moderation"} and all(r.problem is None for r in results.values())
    sentences = effect_findings(results["paper"].coefficients, title="Paper")
    assert len(sentences) == 2 and sentences[1].startswith("Paper (cluster-robust by Attribute")
    paper = sentences[0]
    mixed = results["paper"].coefficients.query("estimator == 'mixed' and term == 'Skew'").iloc[0]
    assert paper.startswith("Paper (mixed, random intercept by Attribute (z); 8 rows, 4 groups)")
    assert f"Skew {mixed['coef']:.3g} [{mixed['ci_low']:.3g}, {mixed['ci_high']:.3g}]" in paper
    assert "positive, its interval excludes zero" in paper and "Intercept" not in paper


def test_models_that_cannot_be_fitted_say_why():
    table = synthetic_results(n_targets=3, seeds=2, sizes=(1024,)).drop(columns=["salience"])
    results = {r.key: r for r in fit_models(table, metric="fpr_gap_stereotype")}
    assert "salience" in results["paper"].problem and results["paper"].coefficients is None
    assert results["general-no-salience"].coefficients is not None


def test_comparison_keeps_runners_apart_on_shared_cells():
    probe = sweep(biased_slope=0.6, control_slope=0.3, runner="probe")
    finetune = sweep(biased_slope=0.2, control_slope=0.1, runner="finetune", random_state=2)
    finetune = finetune[finetune["backbone"] != "c2"]  # the finetune grid ran fewer bases
    table = pd.concat([probe, finetune], ignore_index=True)
    cells, notes = shared_cells(table)
    assert set(cells["backbone"]) == {"big", "c1"} and len(notes) == 1 and "probe" in notes[0]
    sentences, blocks = comparison_section(table, metric="fpr_gap_stereotype")
    assert "not a reproduction of full-finetuning numbers" in sentences[0]
    comparison = next(b for b in blocks if hasattr(b, "header"))
    assert comparison.header[3].startswith("linear probes on frozen features: fpr_gap_stereotype")
    assert comparison.header[5].startswith("full finetuning: fpr_gap_stereotype")
    p, f = hand_summary(probe, "big", 1.0), hand_summary(finetune, "big", 1.0)
    row = next(r for r in comparison.rows if r[0] == "big" and r[2] == "1")
    assert row[3] == f"{p[0]:.3f} [{p[2]:.3f}, {p[3]:.3f}]" and row[5] == f"{f[0]:.3f} [{f[2]:.3f}, {f[3]:.3f}]"
    assert any(s.startswith("At level 1, big:") and "probe minus finetune" in s for s in sentences)
