"""Effect models against statsmodels fitted directly; planted and null effects; R²; bad input."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analyze.effects.fit import fit_model, nakagawa_r2
from analyze.effects.models import (
    EffectsModel,
    fit_general,
    fit_moderation,
    fit_paper,
    paper_rows,
    run_effects,
)
from extract.errors import UserError
from tests.test_effects_table import synthetic_results


def _compare(table: pd.DataFrame, result, terms):
    rows = table.set_index("term").loc[terms]
    interval = result.conf_int()
    np.testing.assert_allclose(rows["coef"], result.params[terms], rtol=1e-12)
    np.testing.assert_allclose(rows["se"], result.bse[terms], rtol=1e-12)
    np.testing.assert_allclose(rows["ci_low"], interval.loc[terms, 0], rtol=1e-12)
    np.testing.assert_allclose(rows["ci_high"], interval.loc[terms, 1], rtol=1e-12)
    np.testing.assert_allclose(rows["p_value"], result.pvalues[terms], rtol=1e-10)


@pytest.fixture(scope="module")
def planted_rows():
    return paper_rows(synthetic_results(n_targets=20, random_state=1))


def test_paper_tables_equal_statsmodels_fitted_directly(planted_rows):
    mixed, ols = fit_paper(planted_rows, estimators=("mixed", "ols"))
    direct = smf.mixedlm("Value ~ Saliency + Skew", planted_rows, groups=planted_rows["Attribute"]).fit()
    _compare(mixed.table, direct, ["Intercept", "Saliency", "Skew"])
    assert mixed.table["group_var"].iloc[0] == pytest.approx(float(direct.cov_re.iloc[0, 0]))
    clusters = pd.factorize(planted_rows["Attribute"])[0]
    direct_ols = smf.ols("Value ~ Saliency + Skew", planted_rows).fit(
        cov_type="cluster", cov_kwds={"groups": clusters}, use_t=True)
    _compare(ols.table, direct_ols, ["Intercept", "Saliency", "Skew"])
    assert ols.table["r2"].iloc[0] == pytest.approx(direct_ols.rsquared)
    assert (mixed.table["n_obs"] == 40).all() and (mixed.table["n_groups"] == 20).all()


def test_planted_effects_are_recovered(planted_rows):
    for fit in fit_paper(planted_rows):
        rows = fit.table.set_index("term")
        for term, truth in (("Saliency", 2.0), ("Skew", 1.3)):
            assert rows.loc[term, "ci_low"] <= truth <= rows.loc[term, "ci_high"], (fit.estimator, term)
            assert rows.loc[term, "p_value"] < 0.05
    difference = fit_paper(planted_rows, model="difference", estimators=("ols",))[0].table.set_index("term")
    assert difference.loc["Saliency", "ci_low"] <= 0.2 <= difference.loc["Saliency", "ci_high"]


def test_no_planted_effect_shows_none():
    rows = paper_rows(synthetic_results(n_targets=20, coef_salience=0.0, coef_skew=0.0, random_state=2))
    for fit in fit_paper(rows):
        table = fit.table.set_index("term")
        assert (table.loc[["Saliency", "Skew"], "p_value"] > 0.05).all(), fit.estimator
        assert (table.loc[["Saliency", "Skew"], "ci_low"] < 0).all()
        assert (table.loc[["Saliency", "Skew"], "ci_high"] > 0).all()


def test_general_model_recovers_the_base_interaction():
    table = synthetic_results(n_targets=10, seeds=2)
    table = table[table["spec_kind"] == "correlation"]
    ols, mixed = fit_general(table)
    for fit in (ols, mixed):
        rows = fit.table.set_index("term")
        truth = {"correlation_strength": 0.3, "base[T.biased]:correlation_strength": 0.3, "salience": 0.1,
                 "log2_n": 0.01}
        for term, value in truth.items():
            assert rows.loc[term, "ci_low"] - 0.01 <= value <= rows.loc[term, "ci_high"] + 0.01, (fit.estimator, term)
        assert rows.loc["base[T.biased]:correlation_strength", "p_value"] < 1e-6
    assert ols.table["errors"].iloc[0] == "cluster-robust by target (t)" and ols.table["n_groups"].iloc[0] == 10


def moderated_cells(*, n_targets=8, seeds=4, random_state=0) -> pd.DataFrame:
    """Stereotype-signed gaps: 0.5 cs + 0.3 cs [biased] + 2 cs * salience + noise, cs = level - 0.5."""
    rng = np.random.default_rng(random_state)
    salience = rng.uniform(0.5, 1.0, n_targets)
    rows = [dict(target=f"t{t}", base_kind=kind, stereotype_level=level, seed=seed, n=128, salience=salience[t])
            for t in range(n_targets) for kind in ("biased", "control") for level in (0.0, 0.25, 0.5, 0.75, 1.0)
            for seed in range(seeds)]
    table = pd.DataFrame(rows)
    cs = table["stereotype_level"] - 0.5
    table["fpr_gap_stereotype"] = (0.5 * cs + 0.3 * cs * (table["base_kind"] == "biased") + 2.0 * cs * table["salience"]
                                   + rng.normal(0, 0.03, len(table)))
    return table


def test_moderation_model_equals_statsmodels_and_recovers_the_interaction():
    table = moderated_cells()
    ols, mixed = fit_moderation(table)
    formula = "fpr_gap_stereotype ~ base * correlation_strength + correlation_strength:salience"
    assert ols.table["formula"].iloc[0] == formula
    data = table.assign(correlation_strength=table["stereotype_level"] - 0.5,
                        base=pd.Categorical(table["base_kind"], categories=["control", "biased"]))
    groups = pd.factorize(data["target"])[0]
    direct = smf.ols(formula, data).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    terms = list(direct.params.index)
    _compare(ols.table, direct, terms)
    rows = mixed.table.set_index("term")
    for term, value in {"correlation_strength:salience": 2.0, "base[T.biased]:correlation_strength": 0.3}.items():
        assert rows.loc[term, "ci_low"] <= value <= rows.loc[term, "ci_high"] and rows.loc[term, "p_value"] < 1e-6
    flat = table.assign(salience=0.7)
    with pytest.raises(UserError, match="salience is constant"):
        fit_moderation(flat)


def test_constant_predictor_is_left_out_with_a_note():
    table = synthetic_results(n_targets=5, seeds=2, sizes=(1024,))
    table = table[table["spec_kind"] == "correlation"]
    fits = fit_general(table, estimators=("ols",))
    assert "log2_n" not in " ".join(fits[0].table["term"]) and "log2_n" in fits[0].table["note"].iloc[0]


def test_nakagawa_r2_by_hand_and_against_simulated_truth():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(150), 8)
    x = rng.normal(size=groups.size)
    # var(fixed) = 1, var(random) = 1, var(residual) = 2 => marginal 0.25, conditional 0.5
    y = x + rng.normal(0, 1, 150)[groups] + rng.normal(0, np.sqrt(2), groups.size)
    data = pd.DataFrame({"y": y, "x": x, "g": groups})
    fit = fit_model(data, "y ~ x", estimator="mixed", groups="g")
    res = fit.result
    fixed = res.fe_params["Intercept"] + res.fe_params["x"] * x
    var_f, var_r, var_e = np.var(fixed, ddof=1), float(res.cov_re.iloc[0, 0]), res.scale
    marginal, conditional = nakagawa_r2(res)
    assert marginal == pytest.approx(var_f / (var_f + var_r + var_e))
    assert conditional == pytest.approx((var_f + var_r) / (var_f + var_r + var_e))
    assert fit.table["r2_marginal"].iloc[0] == pytest.approx(marginal)
    assert marginal == pytest.approx(0.25, abs=0.05) and conditional == pytest.approx(0.5, abs=0.06)


def test_user_formula_matches_statsmodels_and_bad_formulas_fail():
    table = synthetic_results(n_targets=4, seeds=2)
    coefficients, rows = run_effects(table, model=EffectsModel("formula", formula="fpr_gap_stereotype ~ level * C(backbone)"))
    plain = table.dropna(subset=["level"]).drop(columns=["C"])  # the column C would hide patsy's C()
    direct = smf.ols("fpr_gap_stereotype ~ level * C(backbone)", plain).fit(cov_type="HC3")
    _compare(coefficients, direct, list(direct.params.index))
    assert rows is None and coefficients["errors"].iloc[0] == "HC3 robust (t)"
    with pytest.raises(UserError, match="no_such_column"):
        run_effects(table, model=EffectsModel("formula", formula="fpr_gap_stereotype ~ no_such_column"))
    with pytest.raises(UserError, match="as `groups`"):
        run_effects(table, model=EffectsModel("formula", formula="auc ~ level", groups="nope"))
    with pytest.raises(UserError, match="needs `formula="):
        run_effects(table, model=EffectsModel("formula"))


def test_too_few_groups_for_a_mixed_model():
    table = synthetic_results(n_targets=2, seeds=2)
    with pytest.raises(UserError, match="2 group"):
        run_effects(table, model="paper")
    with pytest.raises(UserError, match="at least 3"):
        run_effects(table, model=EffectsModel("formula", formula="auc ~ level", groups="target", estimators=("mixed",)))


def test_rank_deficient_design_is_a_user_error():
    table = synthetic_results(n_targets=4, seeds=2).assign(twice=lambda t: 2 * t["level"])
    with pytest.raises(UserError, match="rank deficient"):
        run_effects(table, model=EffectsModel("formula", formula="auc ~ level + twice"))


def test_mixed_fit_at_the_variance_boundary_is_refitted():
    # Bias depends on the target only through salience: the group variance MLE is 0, where
    # statsmodels' default optimisers return a degenerate fit (intercept and salience ~ 0).
    table = synthetic_results(n_targets=8)
    table = table[table["spec_kind"] == "correlation"]
    mixed, = fit_general(table, estimators=("mixed",))
    ols, = fit_general(table, estimators=("ols",))
    rows, reference = mixed.table.set_index("term"), ols.table.set_index("term")
    assert "refitted with Powell" in rows["note"].iloc[0]
    assert np.isfinite(rows["se"]).all() and rows.loc["salience", "se"] < 0.05
    np.testing.assert_allclose(rows["coef"], reference["coef"], atol=1e-6)  # boundary: GLS = OLS
