"""The salience estimator: components, formula, interval, the sets it trains on, and probes
on synthetic features whose answer is known."""

import numpy as np
from scipy import stats
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from analyze.salience.estimate import (
    salience_components,
    salience_from_scores,
    true_relative_strength,
    validate_salience,
)
from analyze.salience.fit import (
    DEFAULT_CS,
    probe_scores,
    quadrant_test,
    rows_needed,
    salience_specs,
)
from extract.errors import UserError


def _quadrants(q=25):
    """Four equal quadrants of (y, s)."""
    y = np.repeat([0, 0, 1, 1], q)
    s = np.tile(np.repeat([0, 1], q), 2)
    return y, s


def _meta(n=800, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image_id": [f"i{i}" for i in range(n)], "split": rng.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2]),
        "y": rng.integers(0, 2, n).astype(np.int8), "s": rng.integers(0, 2, n).astype(np.int8),
    })


def test_components_match_sklearn_and_lie_in_half_to_one():
    rng = np.random.default_rng(0)
    y, s = _quadrants()
    scores = rng.normal(size=(6, len(y))) + np.array([2, -2, 0, 0, 1, -1])[:, None] * y \
        + np.array([0, 0, 2, -2, 1, 1])[:, None] * s
    a_y, a_s = salience_components(y, s, scores)
    for m in range(6):
        assert a_y[m] == pytest.approx(max(roc_auc_score(y, scores[m]), roc_auc_score(1 - y, scores[m])))
        assert a_s[m] == pytest.approx(max(roc_auc_score(s, scores[m]), roc_auc_score(1 - s, scores[m])))
    assert ((a_y >= 0.5) & (a_y <= 1)).all() and ((a_s >= 0.5) & (a_s <= 1)).all()
    # a model that ranks by "not y" is as y-driven as one that ranks by y
    assert a_y[1] > 0.85 and a_s[3] > 0.85


def test_salience_formula_on_hand_computed_scores():
    y, s = _quadrants(q=2)  # y = 0 0 0 0 1 1 1 1, s = 0 0 1 1 0 0 1 1
    follows_s = s.astype(float)  # A_s = 1, A_y = 0.5
    follows_not_y = 1.0 - y  # A_y = 1 (through the max), A_s = 0.5
    mixed = np.array([0, 1, 2, 5, 3, 4, 6, 7], float)
    scores = np.stack([follows_s, follows_s, follows_not_y, mixed])
    auc_mixed_y = roc_auc_score(y, mixed)
    auc_mixed_s = roc_auc_score(s, mixed)
    a_y = np.array([0.5, 0.5, 1.0, max(auc_mixed_y, 1 - auc_mixed_y)])
    a_s = np.array([1.0, 1.0, 0.5, max(auc_mixed_s, 1 - auc_mixed_s)])
    est = salience_from_scores(y, s, scores, ["aligned", "aligned", "inverted", "inverted"], target="t")
    assert est.salience == pytest.approx(a_s.mean() - a_y.mean() + 0.5)
    assert (est.A_y, est.A_s) == (pytest.approx(a_y.mean()), pytest.approx(a_s.mean()))
    assert est.A_s_aligned == 1.0 and est.A_y_aligned == 0.5
    assert est.A_y_inverted == pytest.approx(a_y[2:].mean()) and est.n_models == 4
    values = a_s - a_y + 0.5
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) / np.sqrt(4)  # t interval, 4 models
    assert (est.ci_low, est.ci_high) == (pytest.approx(values.mean() - half), pytest.approx(values.mean() + half))
    row = est.to_row()
    assert row["target"] == "t" and set(row) >= {"salience", "ci_low", "ci_high", "A_y", "A_s", "n_models", "method"}


def test_salience_bounds_and_direction():
    y, s = _quadrants()
    only_s = salience_from_scores(y, s, np.stack([s, 1 - s]).astype(float), ["aligned", "inverted"])
    only_y = salience_from_scores(y, s, np.stack([y, 1 - y]).astype(float), ["aligned", "inverted"])
    assert only_s.salience == 1.0 and only_y.salience == 0.0


def test_bad_inputs():
    y, s = _quadrants()
    with pytest.raises(UserError, match="both 0 and 1"):
        salience_components(np.zeros_like(y), s, np.ones(len(y)))
    with pytest.raises(UserError, match="one value per test row"):
        salience_components(y[:-1], s, np.ones(len(y)))
    with pytest.raises(UserError, match="arrangements"):
        salience_from_scores(y, s, np.ones((2, len(y))), ["aligned", "sideways"])


def test_aligned_and_inverted_sets_really_are_aligned_and_inverted():
    meta = _meta()
    specs = salience_specs("y", "s", replicates=3, seed=5, n=None)
    assert [s.seed for s in specs["aligned"]] == [5, 6, 7]
    y, s = meta["y"].to_numpy(), meta["s"].to_numpy()
    for spec in specs["aligned"]:
        split = spec.split_indices(meta)
        for rows in split:
            assert (y[rows] == s[rows]).all() and 0.4 < y[rows].mean() < 0.6
    for spec in specs["inverted"]:
        split = spec.split_indices(meta)
        for rows in split:
            assert (y[rows] != s[rows]).all() and 0.4 < y[rows].mean() < 0.6
        assert set(split.train) & set(specs["aligned"][0].split_indices(meta).train) == set()
    test = quadrant_test(meta, "y", "s", seed=5)
    counts = pd.crosstab(y[test], s[test]).to_numpy()
    assert (counts == counts[0, 0]).all() and (meta["split"].to_numpy()[test] == "test").all()
    needed = rows_needed(meta, ["y"], "s", replicates=3, seed=5, n=None)
    assert set(test) <= set(needed) and set(specs["inverted"][2].split_indices(meta).val) <= set(needed)


@pytest.mark.parametrize("s_noise, y_noise, expect_above_half", [(0.2, 3.0, True), (3.0, 0.2, False)])
def test_probe_salience_follows_the_cue_that_is_easier_to_read(s_noise, y_noise, expect_above_half):
    # feature 0 carries s, feature 1 carries y; the cleaner one is the more salient
    meta = _meta(n=1200, seed=1)
    rng = np.random.default_rng(2)
    features = np.column_stack([meta["s"] + s_noise * rng.normal(size=len(meta)),
                                meta["y"] + y_noise * rng.normal(size=len(meta)),
                                rng.normal(size=(len(meta), 3))])
    scores, arrangements, test, details = probe_scores(lambda rows, r: features[rows], meta, "y", "s", replicates=2,
                                                       seed=0)
    assert scores.shape == (4, len(test)) and arrangements == ["aligned"] * 2 + ["inverted"] * 2
    assert set(details) == {"aligned", "inverted"} and details["aligned"]["C"] in DEFAULT_CS
    est = salience_from_scores(meta["y"].to_numpy()[test], meta["s"].to_numpy()[test], scores, arrangements)
    assert (est.salience > 0.6) if expect_above_half else (est.salience < 0.4)
    assert est.ci_low <= est.salience <= est.ci_high


def test_truth_and_spearman_validation():
    strength = {"s": 1.0, "a": 4.0, "b": 1.0, "c": 0.5, "d": 0.1}
    truth = true_relative_strength(strength, ["a", "b", "c", "d"], "s")
    assert truth["a"] == pytest.approx(np.log(0.25)) and truth["b"] == 0.0 and truth.is_monotonic_increasing
    table = pd.DataFrame({"target": ["a", "b", "c", "d"], "salience": [0.1, 0.3, 0.6, 0.9]})
    check = validate_salience(table, strength, sensitive="s")
    assert check.spearman == pytest.approx(1.0)
    assert list(check.table["strength_target"]) == [4.0, 1.0, 0.5, 0.1]
    reversed_ = validate_salience(table.assign(salience=table["salience"][::-1].to_numpy()), strength, sensitive="s")
    assert reversed_.spearman == pytest.approx(-1.0)
    with pytest.raises(UserError, match="at least 3"):
        validate_salience(table.head(2), strength, sensitive="s")
    with pytest.raises(UserError, match="lack"):
        true_relative_strength(strength, ["zz"], "s")
