"""Ranjit et al.'s three findings as rules: each outcome on constructed before / after tables."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar

from analyze.association.bootstrap import paired_amplification
from analyze.association.findings import (
    RetentionEstimate,
    amplification_rule,
    mcnemar_one_sided,
    new_bias_rule,
    retention_rule,
    stage_rows,
    transfer_rule,
)
from analyze.association.measures import effect_size
from extract.errors import UserError

RNG = np.random.default_rng(0)
NOISE = RNG.normal(scale=0.02, size=500)


def estimates(supervised, self_supervised):
    """Paired replicates: one shared noise draw around each rho."""
    return [RetentionEstimate("bit", "supervised", supervised, supervised + NOISE),
            *[RetentionEstimate(f"ssl{i}", "self_supervised", rho, rho + NOISE)
              for i, rho in enumerate(self_supervised)]]


@pytest.mark.parametrize("sets, verdict", [
    ({"coco": (0.9, [0.5, 0.6]), "oi": (0.8, [0.4, 0.5])}, "reproduced"),
    ({"coco": (0.9, [0.5, 0.6]), "oi": (0.3, [0.7, 0.8])}, "contradicted"),
    ({"coco": (0.9, [0.5, 0.6]), "oi": (0.6, [0.59, 0.61])}, "inconclusive"),
    ({"coco": (0.9, [0.5, 0.6])}, "inconclusive"),
])
def test_retention_rule_outcomes(sets, verdict):
    row = retention_rule({name: estimates(*value) for name, value in sets.items()})
    assert row.verdict == verdict
    if len(sets) > 1:
        assert row.ci_low <= row.number <= row.ci_high
        assert "object group" in row.reason


def test_retention_rule_without_a_self_supervised_model_is_inconclusive():
    row = retention_rule({"a": estimates(0.9, []), "b": estimates(0.9, [0.1])})
    assert row.verdict == "inconclusive" and "'a'" in row.reason


@pytest.mark.parametrize("toward, against", [(7, 2), (2, 7), (5, 5), (1, 0), (12, 3), (0, 4)])
def test_mcnemar_one_sided_matches_statsmodels(toward, against):
    two_sided = mcnemar([[10, toward], [against, 10]], exact=True).pvalue
    one_sided = mcnemar_one_sided(toward, against)
    if toward > against:
        assert one_sided == pytest.approx(two_sided / 2, rel=1e-12)
    else:
        assert one_sided >= 0.5
    assert one_sided + mcnemar_one_sided(against, toward) == pytest.approx(
        1 + 0.5 ** (toward + against) * __import__("math").comb(toward + against, toward))


def intervals(excludes):
    """A table of 14 tests, interval excluding 0 where ``excludes`` is True."""
    return pd.DataFrame({"ci_low": [0.2 if e else -0.1 for e in excludes],
                         "ci_high": [0.6 if e else 0.1 for e in excludes]},
                        index=[f"t{i}" for i in range(len(excludes))])


NONE = [False] * 14


@pytest.mark.parametrize("larger, smaller, verdict", [
    ([True] * 7 + [False] * 7, NONE, "reproduced"),
    (NONE, [True] * 7 + [False] * 7, "contradicted"),
    ([True] * 3 + [False] * 11, [False] * 3 + [True] * 2 + [False] * 9, "inconclusive"),
    (NONE, NONE, "inconclusive"),
])
def test_new_bias_rule_outcomes(larger, smaller, verdict):
    row = new_bias_rule(intervals(NONE), intervals(larger), intervals(smaller))
    assert row.verdict == verdict
    if verdict != "inconclusive":
        assert row.ci_low <= row.number <= row.ci_high


def test_new_bias_rule_needs_twelve_tests_and_matched_steps():
    few = intervals([True] * 10)
    assert new_bias_rule(intervals([False] * 10), few, intervals([False] * 10)).verdict \
        == "inconclusive"
    row = new_bias_rule(intervals(NONE), intervals([True] * 14), intervals(NONE), steps=(100, 50))
    assert row.verdict == "inconclusive" and "optimiser steps" in row.reason
    # A test already biased before is never new.
    before = intervals([True] * 14)
    assert new_bias_rule(before, intervals([True] * 14), intervals(NONE)).verdict == "inconclusive"


def d_table(values, half_width, confidence=0.99):
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"effect_size": values, "ci_low": values - half_width,
                         "ci_high": values + half_width, "confidence": confidence},
                        index=[f"t{i}" for i in range(len(values))])


def null_table(n_tests, column="effect_size", n=6, spread=0.1):
    rows = [{"test": f"t{i}", column: value} for i in range(n_tests)
            for value in np.linspace(-spread, spread, n)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("after, verdict", [
    ([0.8, 0.02], "reproduced"),
    ([0.02, -0.01], "contradicted"),
    ([0.12, 0.0], "inconclusive"),  # straddles the band's top
    ([-0.8, 0.0], "inconclusive"),  # beyond the band but with the sign flipped
])
def test_transfer_rule_outcomes(after, verdict):
    before = d_table([0.5, 0.4], 0.1)
    row = transfer_rule(before, d_table(after, 0.05), null_table(2))
    assert row.verdict == verdict


def test_transfer_rule_reads_only_tests_biased_before_and_checks_bonferroni():
    before = d_table([0.02, 0.0], 0.1)
    assert transfer_rule(before, d_table([0.9, 0.9], 0.05), null_table(2)).verdict \
        == "inconclusive"
    with pytest.raises(UserError, match="Bonferroni over 2"):
        transfer_rule(d_table([0.5, 0.5], 0.1), d_table([0.9, 0.9], 0.05, confidence=0.95),
                      null_table(2))
    row = transfer_rule(d_table([0.5], 0.1), d_table([0.9], 0.05), null_table(1, n=4))
    assert row.verdict == "inconclusive" and "5 random-init" in row.reason


def amp_table(low, high):
    return pd.DataFrame({"estimate": (np.array(low) + np.array(high)) / 2, "ci_low": low,
                         "ci_high": high, "confidence": 0.99},
                        index=[f"t{i}" for i in range(len(low))])


@pytest.mark.parametrize("low, high, verdict", [
    ([0.3, -0.2], [0.5, 0.1], "reproduced"),
    ([-0.5, -0.3], [-0.2, -0.1], "contradicted"),
    ([0.05, -0.2], [0.3, 0.1], "inconclusive"),  # above 0, not beyond the null
])
def test_amplification_rule_outcomes(low, high, verdict):
    assert amplification_rule(amp_table(low, high), null_table(2, "estimate")).verdict == verdict


def test_paired_amplification_is_the_change_of_absolute_d():
    rng = np.random.default_rng(3)
    before = {key: rng.normal(size=(8, 5)) for key in "XYAB"}
    after = {key: value + 0.3 * rng.normal(size=value.shape) for key, value in before.items()}
    result = paired_amplification(before, after, n_bootstrap=300, seed=0)
    expected = abs(effect_size(**after)) - abs(effect_size(**before))
    assert result.estimate == pytest.approx(expected, abs=1e-12)
    assert result.ci_low <= result.estimate <= result.ci_high
    same = paired_amplification(before, before, n_bootstrap=100, seed=0)
    assert same.ci_low == same.ci_high == 0


def test_tests_of_selects_one_stage_and_model():
    table = pd.DataFrame({"test": ["a", "b", "a", "b", "a", "b"],
                          "stage": ["before"] * 2 + ["after"] * 4,
                          "model": ["base"] * 2 + ["ft0"] * 2 + ["ft1"] * 2,
                          "effect_size": [0.5, 0.0, 0.6, 0.1, 0.7, 0.2],
                          "ci_low": [0.3, -0.2, 0.4, -0.1, 0.5, 0.0],
                          "ci_high": [0.7, 0.2, 0.8, 0.3, 0.9, 0.4], "confidence": 0.99})
    before = stage_rows(table, stage="before")
    assert list(before.index) == ["a", "b"] and before.at["a", "effect_size"] == 0.5
    assert stage_rows(table, stage="after", model="ft1").at["b", "effect_size"] == 0.2
    with pytest.raises(UserError, match="pass `model`"):
        stage_rows(table, stage="after")
    with pytest.raises(UserError, match="no 'change' row"):
        stage_rows(table, stage="change")


def test_retention_estimates_from_retention_results_feed_the_rule():
    from analyze.association.findings import retention_estimate
    from analyze.association.groups import comparison_groups
    from analyze.association.retention import RetentionOptions, retention

    rng = np.random.default_rng(5)
    names = ["car", "car+man", "car+woman", "man", "woman", "random", "stop_sign"]
    before = {n: rng.normal(size=(8, 6)) + rng.normal(size=6) for n in names}
    items, options = comparison_groups(["car"]), RetentionOptions(n_bootstrap=200, seed=0)
    by_set = {}
    for finetune_set, seed in (("coco", 1), ("oi", 2)):
        noise = np.random.default_rng(seed)
        kept = {n: v + 0.05 * noise.normal(size=v.shape) for n, v in before.items()}
        moved = {n: v + 3.0 * noise.normal(size=v.shape) for n, v in before.items()}
        by_set[finetune_set] = [
            retention_estimate(retention(before, kept, items, options=options), model="bit",
                               objective="supervised"),
            retention_estimate(retention(before, moved, items, options=options), model="moco",
                               objective="self_supervised")]
    row = retention_rule(by_set)
    assert row.verdict == "reproduced" and row.number > 0
    with pytest.raises(UserError, match="`objective`"):
        retention_estimate(retention(before, before, items, options=options), model="x",
                           objective="contrastive")
