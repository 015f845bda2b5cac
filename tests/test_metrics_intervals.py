"""Honest replicate intervals: Student's t with k - 1 df by default, paired differences by seed, Welch otherwise."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyze.metrics.intervals import difference_ci, difference_from_summaries, replicate_ci, replicate_summary
from extract.errors import UserError


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_replicate_ci_is_scipy_t_interval(k):
    values = np.random.default_rng(k).normal(0.2, 0.1, k)
    ci = replicate_ci(values)
    low, high = stats.t.interval(0.95, k - 1, loc=values.mean(), scale=stats.sem(values))
    assert (ci.low, ci.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert ci.method == f"95% t interval over {k} seeds ({k - 1} df)"
    # the normal interval stays available, narrower
    normal = replicate_ci(values, method="normal")
    assert normal.high - normal.low < ci.high - ci.low and "normal" in normal.method
    if k == 5:  # t(0.975, 4) = 2.776: ~42% wider than 1.96
        assert (ci.high - ci.low) / (normal.high - normal.low) == pytest.approx(2.7764451 / 1.9599640, rel=1e-6)


def test_replicate_summary_uses_t_per_group():
    table = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 3, "v": [0.1, 0.4, 0.3, 0.2, 0.5, 1.0, 2.0, 4.0]})
    summary = replicate_summary(table, ["g"], "v").set_index("g")
    for g, values in (("a", table.v[:5]), ("b", table.v[5:])):
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert summary.loc[g, "ci_low"] == pytest.approx(low) and summary.loc[g, "ci_high"] == pytest.approx(high)


def test_paired_difference_by_hand_on_five_seeds():
    biased = np.array([0.30, 0.42, 0.25, 0.38, 0.35])
    control = np.array([0.10, 0.30, 0.02, 0.21, 0.20])  # seed i of both drew the same rows
    # by hand: d = 0.20, 0.12, 0.23, 0.17, 0.15; mean 0.174; sd = sqrt(sum((d - 0.174)^2) / 4)
    d = [0.20, 0.12, 0.23, 0.17, 0.15]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4)
    ci = difference_ci(biased, control, paired=True)
    assert ci.estimate == pytest.approx(0.174, abs=1e-12)
    assert (ci.low, ci.high) == (pytest.approx(mean - half, abs=1e-12), pytest.approx(mean + half, abs=1e-12))
    assert ci.method == "95% paired t interval of the per-seed differences over 5 seeds (4 df)"
    # the same numbers unpaired (Welch) give a much wider interval: pairing removes the seed-to-seed variation
    welch = difference_ci(biased, control, paired=False)
    assert welch.estimate == pytest.approx(0.174) and welch.high - welch.low > 2 * (ci.high - ci.low)
    assert welch.method.startswith("95% Welch t interval (unpaired)")
    res = stats.ttest_ind(biased, control, equal_var=False)
    low, high = res.confidence_interval(0.95)
    assert (welch.low, welch.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    paired = stats.ttest_rel(biased, control).confidence_interval(0.95)
    assert (ci.low, ci.high) == (pytest.approx(paired.low, abs=1e-12), pytest.approx(paired.high, abs=1e-12))


def test_difference_edge_cases():
    assert math.isnan(difference_ci([1.0], [0.5], paired=True).low)
    nan_pair = difference_ci([1.0, np.nan, 2.0, 3.0], [0.5, 1.0, 1.0, 2.5], paired=True)
    assert nan_pair.estimate == pytest.approx((0.5 + 1.0 + 0.5) / 3) and "3 seeds" in nan_pair.method
    with pytest.raises(UserError, match="one value per seed"):
        difference_ci([1.0, 2.0], [1.0], paired=True)
    d, low, high = difference_from_summaries(1.0, 0.0, 5, 0.5, 0.0, 5)
    assert d == low == high == 0.5  # zero spread: a zero-width interval, not NaN
