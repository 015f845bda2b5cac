"""Intervals of the W&R findings (analyze.reproduce.inference) against direct computations."""

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from analyze.reproduce.inference import (
    bootstrap_cut,
    cluster_sandwich,
    sign_test,
    target_pooled_ci,
    wild_cluster_bootstrap,
)
from extract.errors import UserError


def _clustered(seed=0, clusters=6, per=8, slope=0.5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(clusters), per)
    x = rng.standard_normal(len(g))
    y = 1.0 + slope * x + rng.standard_normal(clusters)[g] + 0.5 * rng.standard_normal(len(g))
    return sm.add_constant(x), y, g


def test_sandwich_matches_statsmodels_cr0():
    x, y, g = _clustered()
    fit = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": g, "use_correction": False})
    assert np.allclose(cluster_sandwich(x, fit.resid, g), fit.cov_params())


def test_rademacher_enumeration_reproduces_the_sandwich_variance():
    x, y, g = _clustered(clusters=5)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    resid = y - x @ beta
    # every sign vector once: the bootstrap variance of the slope equals the CR0 variance exactly
    draws = np.array(list(itertools.product((-1.0, 1.0), repeat=5)))
    betas = (x @ beta + draws[:, g] * resid) @ np.linalg.pinv(x).T
    assert np.var(betas[:, 1]) == pytest.approx(cluster_sandwich(x, resid, g)[1, 1])
    ci = wild_cluster_bootstrap(x, y, g, term=1, weights="rademacher", n_boot=999)
    assert "every sign vector" in ci.method and ci.low < beta[1] < ci.high
    assert ci.estimate == pytest.approx(beta[1])


def test_webb_bootstrap_is_seeded_and_wider_than_cr0_with_few_clusters():
    x, y, g = _clustered(clusters=6, seed=3)
    a = wild_cluster_bootstrap(x, y, g, term=1, weights="webb", n_boot=199, seed=7)
    b = wild_cluster_bootstrap(x, y, g, term=1, weights="webb", n_boot=199, seed=7)
    assert (a.low, a.high) == (b.low, b.high) and "webb" in a.method and "6 clusters" in a.method
    fit = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": g, "use_correction": False})
    assert a.high - a.low > 2 * 1.96 * fit.bse[1]  # the normal CR0 interval is too narrow with 6 clusters
    assert a.low < fit.params[1] < a.high
    with pytest.raises(UserError, match="`weights`"):
        wild_cluster_bootstrap(x, y, g, term=1, weights="mammen")


def test_wild_cluster_bootstrap_covers_at_about_the_nominal_rate():
    hits = 0
    for seed in range(30):
        x, y, g = _clustered(seed=seed, clusters=8, per=6)
        ci = wild_cluster_bootstrap(x, y, g, term=1, weights="webb", n_boot=99, seed=seed)
        hits += ci.low < 0.5 < ci.high
    assert hits >= 27  # 95% nominal (about 92% in 200 simulations with 199 draws); at least 90% of 30


def test_the_interval_inverts_the_restricted_test():
    from analyze.reproduce.inference import _wcr_pvalue, _weights

    x, y, g = _clustered(seed=5, clusters=7)
    ci = wild_cluster_bootstrap(x, y, g, term=1, weights="webb", n_boot=199, seed=2)
    setup = (_weights(7, kind="webb", n_boot=199, seed=2), g, (g[None, :] == np.arange(7)[:, None]).astype(float))
    width = ci.high - ci.low
    assert _wcr_pvalue(x, y, setup, 1, ci.low + 0.01 * width) > 0.05 >= _wcr_pvalue(x, y, setup, 1, ci.low - 0.01 * width)
    assert _wcr_pvalue(x, y, setup, 1, ci.high - 0.01 * width) > 0.05 >= _wcr_pvalue(x, y, setup, 1, ci.high + 0.01 * width)


def test_target_pooled_interval_is_t_over_targets():
    cells = pd.DataFrame({"target": np.repeat(["a", "b", "c", "d"], 3), "seed": np.tile([0, 1, 2], 4),
                          "v": [0.1, 0.12, 0.11, 0.3, 0.28, 0.33, 0.2, 0.22, 0.19, 0.05, 0.04, 0.06]})
    means = cells.groupby("target")["v"].mean()
    low, high = stats.t.interval(0.95, len(means) - 1, loc=means.mean(), scale=stats.sem(means))
    ci = target_pooled_ci(cells, value="v")
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((means.mean(), low, high))
    assert "4 targets" in ci.method
    one = target_pooled_ci(cells[cells["target"] == "a"], value="v")
    assert one.low == pytest.approx(stats.t.interval(0.95, 2, loc=0.11, scale=stats.sem([0.1, 0.12, 0.11]))[0])


def test_bootstrap_cut_carries_both_gaps_uncertainty():
    rng = np.random.default_rng(0)
    cells = pd.DataFrame({"target": "a", "seed": range(5), "before": 0.3 + 0.01 * rng.standard_normal(5),
                          "after": 0.15 + 0.01 * rng.standard_normal(5)})
    ci = bootstrap_cut(cells, before="before", after="after", n_boot=2000)
    assert ci.estimate == pytest.approx(1 - cells["after"].mean() / cells["before"].mean())
    assert ci.low < ci.estimate < ci.high and "over seeds" in ci.method
    noisier = cells.assign(after=0.15 + 0.05 * rng.standard_normal(5))
    wide = bootstrap_cut(noisier, before="before", after="after", n_boot=2000)
    assert wide.high - wide.low > ci.high - ci.low
    exact = bootstrap_cut(cells.assign(before=0.3, after=0.15), before="before", after="after", n_boot=200)
    assert (exact.low, exact.high) == pytest.approx((0.5, 0.5))  # no noise, no width


def test_sign_test_matches_the_binomial_tail():
    assert sign_test(7, 8) == pytest.approx(stats.binom.sf(6, 8, 0.5))
    assert sign_test(8, 8) == pytest.approx(0.5 ** 8)
    with pytest.raises(UserError, match="`exceed`"):
        sign_test(9, 8)
