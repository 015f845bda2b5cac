"""Competence before cause (issue 26): no causal sentence from a base below the floor or from bases whose
AUCs differ by more than 0.05, both AUCs beside every base comparison, and the comparison at matched AUC.

Constructed natural-set tables (2 bases, 3 targets, 4 seeds): the two sides of each rule.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyze.report.answer import findings_table, runner_comparisons
from analyze.report.findings import (
    CAUSAL_FLOOR,
    COMPETENCE_GAP,
    FindingOptions,
    competence_reading,
    natural_comparisons,
    natural_findings,
)
from extract.errors import UserError

METRIC = "fpr_gap_stereotype"
CAUSE = "the bias comes from"
NOT_FROM_PRETRAINING = "not from pretraining"


def natural(aucs: dict, *, gaps=None, seeds=4, targets=3, runner="probe") -> pd.DataFrame:
    """Natural cells: ``aucs`` {(backbone, n): mean AUC}; the gap is 0.2 + noise for both bases (no
    difference) unless ``gaps`` {backbone: mean gap} says otherwise; the same rows per (target, seed, n)."""
    rng = np.random.default_rng(0)
    kinds = {"big": "biased", "sc": "scratch"}
    rows = [dict(runner=runner, backbone=b, base_kind=kinds[b], spec_kind="natural", target=f"t{t}", n=n, seed=seed,
                 rows_digest=f"{t}-{seed}-{n}", auc=auc,
                 **{METRIC: (gaps or {}).get(b, 0.2) + rng.normal(0, 0.01)})
            for (b, n), auc in aucs.items() for t in range(targets) for seed in range(seeds)]
    return pd.DataFrame(rows)


def t_interval(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def hand(cells: pd.DataFrame, backbone: str, n: int, column: str) -> str:
    part = cells[(cells["backbone"] == backbone) & (cells["n"] == n)]
    mean, low, high = t_interval(part.groupby("seed")[column].mean())
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def scratch_row(table: pd.DataFrame, **kwargs):
    return next(c for c in natural_comparisons(table, metric=METRIC, **kwargs) if c.finding == "biased vs scratch")


def test_the_rule_on_both_sides_of_the_floor_and_the_gap():
    assert competence_reading("a", "b", 0.78, 0.76, floor=0.70) == (True, [])
    causal, notes = competence_reading("a", "b", 0.70, 0.668, floor=0.70)
    assert not causal and notes == ["no cause stated: AUC below the floor 0.70 (b 0.668)"]
    causal, notes = competence_reading("a", "b", 0.80, 0.90, floor=0.70)
    assert not causal and notes == [f"AUCs differ by 0.100 (> {COMPETENCE_GAP:g}): the weaker model's (a) larger gap "
                                    "may be a competence effect"]
    assert competence_reading("a", "b", 0.70, 0.745, floor=0.70)[0]  # at the floor, under 0.05 apart
    assert not competence_reading("a", "b", float("nan"), 0.8)[0]
    assert CAUSAL_FLOOR == 0.70
    with pytest.raises(UserError, match="causal_floor"):
        FindingOptions(causal_floor=1.2)


def test_no_causal_sentence_from_a_scratch_base_below_the_floor():
    table = natural({("big", 128): 0.72, ("sc", 128): 0.668})  # the demo's situation: scratch at 0.668
    row = scratch_row(table)
    assert row.low < 0 < row.high  # no difference in the gap
    assert not row.causal and NOT_FROM_PRETRAINING not in row.verdict
    assert row.verdict == "no difference shown (interval includes 0)"
    assert "no cause stated: AUC below the floor 0.70 (sc 0.668)" in row.flags
    sentences = natural_findings(table, metric=METRIC)
    assert sentences and not any(CAUSE in s or NOT_FROM_PRETRAINING in s for s in sentences)
    assert any("(AUC 0.720 [" in s and " vs 0.668 [" in s for s in sentences)  # both AUCs in the sentence


def test_the_causal_sentence_stays_when_both_bases_are_competent_and_comparable():
    table = natural({("big", 128): 0.78, ("sc", 128): 0.76})
    row = scratch_row(table)
    assert row.causal and row.verdict == "no difference shown; not above scratch, so the bias is not from pretraining"
    assert "no cause stated" not in row.flags and "competence" not in row.flags
    assert any(CAUSE in s for s in natural_findings(table, metric=METRIC))
    # a raised floor (the option) moves the same table to the other side
    raised = scratch_row(table, options=FindingOptions(causal_floor=0.77))
    assert not raised.causal and "no cause stated: AUC below the floor 0.77 (sc 0.760)" in raised.flags


def test_the_competence_floor_of_the_runner_and_n_raises_the_causal_floor():
    # probes at n = 1024 are held to 0.80 (COMPETENCE_FLOORS): 0.78 and 0.76 are below it
    table = natural({("big", 1024): 0.78, ("sc", 1024): 0.76})
    row = scratch_row(table)
    assert not row.causal and "below the floor 0.80" in row.flags


def test_aucs_more_than_005_apart_offer_the_comparison_at_matched_auc():
    aucs = {("big", 128): 0.90, ("sc", 128): 0.80, ("big", 64): 0.86, ("big", 32): 0.81}
    table = natural(aucs, gaps={"big": 0.2, "sc": 0.3})  # the weaker model has the larger gap
    rows = natural_comparisons(table, metric=METRIC)
    row = next(c for c in rows if c.finding == "biased vs scratch")
    assert not row.causal and NOT_FROM_PRETRAINING not in row.verdict and row.verdict == "biased lower"
    assert "AUCs differ by 0.100 (> 0.05): the weaker model's (sc) larger gap may be a competence effect" in row.flags
    assert "at matched AUC (big at n = 32, AUC 0.810): see its row" in row.flags
    matched = next(c for c in rows if c.finding == "biased vs scratch at matched AUC")
    assert matched.setting == "natural level, n = 128; big at n = 32"
    assert matched.first_value == hand(table, "big", 32, METRIC) and matched.first_auc == hand(table, "big", 32, "auc")
    assert matched.second_value == hand(table, "sc", 128, METRIC) and matched.second_auc == hand(table, "sc", 128, "auc")
    big = table[(table["backbone"] == "big") & (table["n"] == 32)].groupby("seed")[METRIC].mean()
    sc = table[(table["backbone"] == "sc") & (table["n"] == 128)].groupby("seed")[METRIC].mean()
    welch = stats.ttest_ind(big, sc, equal_var=False).confidence_interval(0.95)  # different rows: Welch
    assert (matched.estimate, matched.low, matched.high) == pytest.approx((big.mean() - sc.mean(), welch.low,
                                                                           welch.high))
    assert matched.causal and matched.verdict == "biased lower"  # 0.81 vs 0.80, both above the floor


def test_without_cells_at_matched_auc_the_row_says_so():
    table = natural({("big", 128): 0.90, ("sc", 128): 0.80, ("big", 64): 0.88})  # 0.88 is not within 0.05 of 0.80
    rows = natural_comparisons(table, metric=METRIC)
    assert not any("matched AUC" in c.finding for c in rows)
    row = next(c for c in rows if c.finding == "biased vs scratch")
    assert ("no cells at matched AUC: no smaller n of big has an AUC within 0.05 of sc's 0.800; run big at a smaller n"
            in row.flags)


def test_the_findings_table_prints_both_aucs_beside_the_gaps():
    table = natural({("big", 128): 0.72, ("sc", 128): 0.668})
    rows, _ = runner_comparisons(table, runner="probe", metric=METRIC)
    shown = findings_table(rows, metric=METRIC)
    assert shown.header[3:9] == ("first", "value [95% CI]", "AUC", "second", "value [95% CI]", "AUC")
    line = next(r for r in shown.rows if r[0] == "biased vs scratch")
    assert line[5] == hand(table, "big", 128, "auc") and line[8] == hand(table, "sc", 128, "auc")
    assert line[4] == hand(table, "big", 128, METRIC) and line[7] == hand(table, "sc", 128, METRIC)
