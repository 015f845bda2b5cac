"""Retention (Ranjit et al.): Spearman rho per group equals scipy's, on trial-averaged values, with a paired bootstrap."""

import numpy as np
import pytest
from scipy import stats

from analyze.association.groups import comparison_groups, item_values, items_in
from analyze.association.measures import unit_sets
from analyze.association.retention import (
    RetentionOptions,
    rank_correlations,
    retention,
)
from extract.errors import UserError

NAMES = ["car", "car+man", "car+woman", "fashion", "fashion+man", "fashion+woman", "man",
         "woman", "random", "stop_sign"]


def embeddings(seed, n=7, dim=6):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(n, dim)) + rng.normal(size=dim) for name in NAMES}


def drift(sets, scale, seed):
    rng = np.random.default_rng(seed)
    return {name: value + scale * rng.normal(size=value.shape) for name, value in sets.items()}


ITEMS = comparison_groups(["car", "fashion"])
OPTIONS = RetentionOptions(n_bootstrap=200, seed=0)


def test_rho_and_p_equal_scipy_spearmanr():
    before = embeddings(0)
    after = drift(before, 0.5, 1)
    result = retention(before, after, ITEMS, options=OPTIONS)
    unit = lambda sets: unit_sets({k: sets[k] for k in NAMES})  # noqa: E731
    v_before, v_after = item_values(unit(before), ITEMS)[0], item_values(unit(after), ITEMS)[0]
    for row in result.table.itertuples():
        chosen = items_in(ITEMS, plot_group=row.group) if row.scope == "plot_group" \
            else items_in(ITEMS, obj=row.group)
        positions = [ITEMS.index(item) for item in chosen]
        expected = stats.spearmanr(v_before[positions], v_after[positions])
        assert row.rho == pytest.approx(expected.statistic, abs=1e-12)
        assert row.p_value == pytest.approx(expected.pvalue, rel=1e-10)
        assert row.n_items == len(positions)
        assert row.ci_low <= row.ci_high
    assert {"object", "comps", "pairs", "indiv", "car", "fashion"} <= set(result.table["group"])


def test_trials_are_averaged_before_the_correlation():
    before = embeddings(0)
    trials = [drift(before, 0.8, seed) for seed in (1, 2, 3)]
    result = retention(before, trials, ITEMS, options=OPTIONS)
    unit = lambda sets: unit_sets({k: sets[k] for k in NAMES})  # noqa: E731
    averaged = np.mean([item_values(unit(t), ITEMS)[0] for t in trials], axis=0)
    np.testing.assert_allclose(result.values["after"], averaged, atol=1e-12)
    row = result.table.set_index("group").loc["object"]
    positions = [ITEMS.index(item) for item in items_in(ITEMS, plot_group="object")]
    expected = stats.spearmanr(result.values["before"].to_numpy()[positions], averaged[positions])
    assert row["rho"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["n_trials_after"] == 3 and row["n_trials_before"] == 1


def test_unchanged_embeddings_retain_fully_and_drift_retains_less():
    before = embeddings(0)
    same = retention(before, before, ITEMS, options=OPTIONS)
    assert np.allclose(same.table["rho"], 1.0)
    assert np.allclose(same.table["ci_low"], 1.0)
    scrambled = retention(before, embeddings(9), ITEMS, options=OPTIONS)
    assert (scrambled.table["rho"] < 1).all()


def test_paired_replicates_are_shared_between_models():
    before = embeddings(0)
    first = retention(before, drift(before, 0.3, 1), ITEMS, options=OPTIONS)
    again = retention(before, drift(before, 0.3, 1), ITEMS, options=OPTIONS)
    key = ("plot_group", "object")
    np.testing.assert_array_equal(first.replicates[key], again.replicates[key])
    assert first.replicates[key].shape == (200,)


def test_rank_correlations_match_scipy_row_by_row():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(20, 9)), rng.normal(size=(20, 9))
    b[:, 0] = b[:, 1]  # ties
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(rank_correlations(a, b), expected, atol=1e-12)


def test_mismatched_inputs_are_user_errors():
    before = embeddings(0)
    with pytest.raises(UserError, match="lack the concept set"):
        retention(before, {k: v for k, v in before.items() if k != "man"}, ITEMS)
    shorter = dict(before, man=before["man"][:5])
    with pytest.raises(UserError, match="same images"):
        retention(before, shorter, ITEMS)
    with pytest.raises(UserError, match="n_bootstrap"):
        RetentionOptions(n_bootstrap=0)
