"""Findings that do not mislead: flagged cells out (and said), biased vs scratch, the headline rule, paired seeds."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyze.metrics.diagnosis import FLAGS
from analyze.report.build import build_report
from analyze.report.findings import FindingOptions, clean_cells, correlation_findings, headline_size, pooled_summary

BASES = {"big": ("biased", 0.30), "c1": ("control", 0.10), "scr": ("scratch", 0.32)}


def table(*, seeds=5, flag_seed=None, auc=0.85, low_auc_base=None):
    """Correlation cells at levels 0.5 and 1: n = 128 separates the bases, n = 1024 sits at the ceiling."""
    rng = np.random.default_rng(0)
    seed_shift = rng.normal(0, 0.05, seeds)  # a seed's subset moves every base alike: the design is paired
    rows = []
    for backbone, (kind, gap) in BASES.items():
        for target in ("t0", "t1"):
            for n in (128, 1024):
                for level in (0.5, 1.0):
                    for seed in range(seeds):
                        value = (0.97 if n == 1024 else (gap if level == 1.0 else 0.02) + seed_shift[seed]
                                 + rng.normal(0, 0.005))
                        row = dict(runner="probe", backbone=backbone, base_kind=kind, spec_kind="correlation",
                                   target=target, level=level, n=n, seed=seed, fpr_gap_stereotype=value,
                                   auc=0.6 if backbone == low_auc_base else auc,
                                   rows_digest=f"{target}-{level}-{n}-{seed}",
                                   **{f"flag_{f}": False for f in FLAGS}, flagged=False, diagnosis="")
                        rows.append(row)
    frame = pd.DataFrame(rows)
    if flag_seed is not None:  # one degenerate seed of the control: every row negative, a fake gap of 0
        bad = (frame["backbone"] == "c1") & (frame["seed"] == flag_seed) & (frame["n"] == 128)
        frame.loc[bad, ["fpr_gap_stereotype", "flag_degenerate", "flagged"]] = [0.0, True, True]
        frame.loc[bad, "diagnosis"] = "all 400 test predictions negative"
    return frame


def test_a_degenerate_seed_is_left_out_and_said(tmp_path):
    data = table(flag_seed=2)
    kept, note = clean_cells(data)
    assert len(kept) == len(data) - 4 and "Left out 4 of" in note and "degenerate 4" in note
    findings = correlation_findings(kept, metric="fpr_gap_stereotype")
    control = next(f for f in findings if "for the control base c1" in f)
    assert "95% t intervals over 5 seeds" in control
    # the control's mean comes from its 4 clean seeds, not from the degenerate 0.0
    clean_mean = kept[(kept.backbone == "c1") & (kept.n == 128) & (kept.level == 1.0)].groupby("seed")[
        "fpr_gap_stereotype"].mean().mean()
    assert f"vs {clean_mean:.3f} [" in control
    md, _ = build_report(data, out_dir=tmp_path / "r")
    text = md.read_text()
    assert "## Diagnosis of the cells" in text and "Left out 4 of 120 cells flagged by the diagnosis (degenerate 4" in text
    assert "docs/science.md" in text
    kept_all, note = clean_cells(data, include_flagged=True)
    assert len(kept_all) == len(data) and "kept because `include_flagged`" in note


def test_biased_vs_scratch_is_stated_and_the_pairing_is_used():
    findings = correlation_findings(table(), metric="fpr_gap_stereotype")
    scratch = next(f for f in findings if "for the scratch base scr" in f)
    assert "does not exceed the scratch base: the bias comes from the cue being readable from any features" in scratch
    control = next(f for f in findings if "for the control base c1" in f)
    assert "(95% paired t interval of the per-seed differences over 5 seeds (4 df))" in control
    assert "transferring more bias than that control base" in control
    # the paired interval by hand: per-seed means over the two targets, then a t interval of the differences
    data = table()
    at = data[(data.n == 128) & (data.level == 1.0)]
    per_seed = at.groupby(["backbone", "seed"])["fpr_gap_stereotype"].mean()
    d = (per_seed["big"] - per_seed["c1"]).to_numpy()
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert f"the difference is {d.mean():.3f} [{d.mean() - half:.3f}, {d.mean() + half:.3f}]" in control


def test_headline_rule_skips_the_ceiling_and_can_be_overridden():
    data = table()
    n, rule = headline_size(data, metric="fpr_gap_stereotype", level=1.0)
    assert n == 128 and "(1024 at a ceiling)" in rule
    findings = correlation_findings(data, metric="fpr_gap_stereotype")
    assert findings[0].startswith("Headline setting: n = 128: the size nearest 1024 where every target is feasible")
    forced = correlation_findings(data, metric="fpr_gap_stereotype", options=FindingOptions(n=1024))
    assert forced[0] == "Headline setting: n = 1024 was chosen with `n`."
    # a target infeasible at 128 moves the headline to 1024 even at its ceiling, and says why
    thin = data[~((data.n == 128) & (data.target == "t1"))]
    n, rule = headline_size(thin, metric="fpr_gap_stereotype", level=1.0)
    assert n == 1024 and "at a ceiling" in rule
    balanced = correlation_findings(data, metric="fpr_gap_stereotype", options=FindingOptions(level=0.5))
    assert any("At the strongest correlation level, 0.5" in f for f in balanced)


def test_too_few_clean_replicates_and_weak_models():
    data = table(seeds=2, low_auc_base="c1")
    findings = correlation_findings(data, metric="fpr_gap_stereotype")
    control = next(f for f in findings if "for the control base c1" in f)
    assert "the difference is not stated: big (2) and c1 (2) have fewer than 3 clean replicates here" in control
    assert "for c1 the model did not learn the target (AUC 0.600)" in control
    assert "difference is 0." not in control


def test_paired_summary_keys():
    summary = pooled_summary(table(), by=["backbone", "n", "level"], value="fpr_gap_stereotype").set_index(
        ["backbone", "n", "level"])
    row = summary.loc[("big", 128, 1.0)]
    assert sorted(row["per_seed"]) == [0, 1, 2, 3, 4] and row["rows_key"][0] == (("t0", "t0-1.0-128-0"),
                                                                                   ("t1", "t1-1.0-128-0"))


def test_a_difference_is_paired_on_the_cells_both_bases_kept():
    from analyze.report.findings import difference_interval

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(5):
        for target in ("a", "b"):
            shared = rng.normal()
            for backbone, shift in (("biased", 0.3), ("control", 0.0)):
                rows.append({"backbone": backbone, "seed": seed, "target": target, "rows_digest": f"{target}{seed}",
                             "fpr_gap_stereotype": shared + shift + rng.normal(scale=0.01)})
    full = pd.DataFrame(rows)
    # the diagnosis left out the biased base's target b at seeds 0 and 1
    kept = full[~((full["backbone"] == "biased") & (full["target"] == "b") & full["seed"].isin([0, 1]))]
    summary = pooled_summary(kept, by=["backbone"], value="fpr_gap_stereotype").set_index("backbone")
    ci = difference_interval(summary.loc["biased"], summary.loc["control"])
    assert "paired" in ci.method and "the 8 (target, seed) cells both sides kept" in ci.method
    b, c = (kept[kept.backbone == k].set_index(["seed", "target"])["fpr_gap_stereotype"] for k in ("biased", "control"))
    per_seed = (b - c.loc[b.index]).groupby(level="seed").mean()
    assert ci.estimate == pytest.approx(per_seed.mean())
    assert ci.low > 0.25 and ci.high < 0.35  # the shared per-cell noise cancels
    # without digests there is nothing to pair on: Welch
    nodigest = pooled_summary(kept.drop(columns="rows_digest"), by=["backbone"],
                              value="fpr_gap_stereotype").set_index("backbone")
    assert "Welch" in difference_interval(nodigest.loc["biased"], nodigest.loc["control"]).method
