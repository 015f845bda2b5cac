"""Ranjit et al.'s comparison groups: the preset's items, and intra / inter similarity in closed form."""

import itertools

import numpy as np
import pytest

from analyze.association.groups import (
    AVATAR_NAMES,
    PLOT_GROUPS,
    comparison_groups,
    inter_random_subsets,
    inter_similarity,
    intra_similarity,
    intra_split_half,
    item_sets,
    items_in,
    similarity_table,
)
from extract.errors import UserError


def equiangular(n, cosine, offset, dim=64, axis=0):
    """n unit vectors whose pairwise cosines are exactly ``cosine``: sqrt(c) e_axis + sqrt(1-c) e_i."""
    rows = np.zeros((n, dim))
    rows[:, axis] = np.sqrt(cosine)
    rows[np.arange(n), offset + np.arange(n)] = np.sqrt(1 - cosine)
    return rows


def test_preset_has_the_papers_items_and_plot_groups():
    items = comparison_groups(["car", "fashion"])
    names = [item.name for item in items]
    for obj in ("car", "fashion"):
        for expected in (f"{obj}+man vs {obj}", f"{obj}+woman vs {obj}", f"{obj} vs man",
                         f"{obj} vs woman", f"{obj} vs random", f"{obj}+man (intra)"):
            assert expected in names
    for expected in ("stop_sign vs man", "stop_sign vs woman", "random vs man", "random vs woman"):
        assert expected in names
    assert len(names) == len(set(names))
    object_group = {item.name for item in items_in(items, plot_group="object")}
    assert object_group == {"car vs man", "car vs woman", "car vs random", "fashion vs man",
                            "fashion vs woman", "fashion vs random", "stop_sign vs man",
                            "stop_sign vs woman", "random vs man", "random vs woman"}
    pairs = {item.name for item in items_in(items, plot_group="pairs")}
    assert pairs == {"car+man (intra)", "car+woman (intra)", "fashion+man (intra)",
                     "fashion+woman (intra)", "random (intra)"}
    comps = {item.name for item in items_in(items, plot_group="comps")}
    assert "random (intra)" in comps and "car+man vs car" in comps and "car vs man" not in comps
    assert all(item.kind == "intra" for item in items_in(items, plot_group="indiv"))
    assert set(PLOT_GROUPS) == {g for item in items for g in item.plot_groups}


def test_avatar_preset_names_the_avatar_sets():
    items = comparison_groups(["hat"], names="avatars")
    assert set(item_sets(items)) == {"hat", "hat+dark", "hat+light", "dark", "light", "random",
                                     "neutral"}
    assert comparison_groups(["hat"], names=AVATAR_NAMES) == items
    with pytest.raises(UserError, match="`names`"):
        comparison_groups(["hat"], names="nope")
    with pytest.raises(UserError, match="group or reference"):
        comparison_groups(["man"])


def test_intra_and_inter_in_closed_form():
    # Pairwise cosine c within a set; across two sets built on the same axis, sqrt(a b).
    first, second = equiangular(10, 0.36, offset=1), equiangular(12, 0.25, offset=20)
    assert intra_similarity(first) == pytest.approx(0.36, abs=1e-12)
    assert inter_similarity(first, second) == pytest.approx(0.3, abs=1e-12)
    # Every split half and every subset of such sets has the same value: the paper's estimates
    # are exact here.
    np.testing.assert_allclose(intra_split_half(first, seed=3), 0.36, atol=1e-12)
    np.testing.assert_allclose(inter_random_subsets(first, second, seed=3), 0.3, atol=1e-12)


def test_split_half_expectation_is_the_off_diagonal_mean():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(6, 5)) + 1.0
    unit = S / np.linalg.norm(S, axis=1, keepdims=True)
    cos = unit @ unit.T
    off_diagonal = cos[~np.eye(6, dtype=bool)].mean()
    assert intra_similarity(S) == pytest.approx(off_diagonal, abs=1e-12)
    # Exact expectation over all half splits (H1 = 3 rows, H2 = the rest).
    halves = [cos[np.ix_(h1, [i for i in range(6) if i not in h1])].mean()
              for h1 in itertools.combinations(range(6), 3)]
    assert np.mean(halves) == pytest.approx(off_diagonal, abs=1e-12)
    assert intra_split_half(S, n_iter=4000, seed=1).mean() == pytest.approx(off_diagonal, abs=3e-3)
    V = rng.normal(size=(9, 5))
    block = (unit @ (V / np.linalg.norm(V, axis=1, keepdims=True)).T).mean()
    assert inter_similarity(S, V) == pytest.approx(block, abs=1e-12)
    assert inter_random_subsets(S, V, n_iter=4000, seed=1).mean() == pytest.approx(block, abs=5e-3)


def test_similarity_table_intervals_cover_and_bracket_the_estimate():
    rng = np.random.default_rng(1)
    names = ["hat", "hat+dark", "hat+light", "dark", "light", "random", "neutral"]
    sets = {name: rng.normal(size=(8, 6)) + (i % 3) for i, name in enumerate(names)}
    items = comparison_groups(["hat"], names="avatars")
    table = similarity_table(sets, items, n_bootstrap=300, seed=0)
    assert len(table) == len(items)
    assert (table["ci_low"] <= table["value"] + 1e-9).all()
    assert (table["value"] <= table["ci_high"] + 1e-9).all()
    same = similarity_table(sets, items, n_bootstrap=300, seed=0)
    assert table.equals(same)
    # Constant-cosine sets: every replicate equals the closed form, so the interval collapses.
    exact = {name: equiangular(8, 0.49, offset=1 + 8 * i) for i, name in enumerate(names)}
    collapsed = similarity_table(exact, items, n_bootstrap=100, seed=0)
    intra = collapsed[collapsed["kind"] == "intra"]
    np.testing.assert_allclose(intra[["value", "ci_low", "ci_high"]].to_numpy(), 0.49, atol=1e-12)
    inter = collapsed[collapsed["kind"] == "inter"]
    np.testing.assert_allclose(inter[["value", "ci_low", "ci_high"]].to_numpy(), 0.49, atol=1e-12)
    with pytest.raises(UserError, match="needs the concept set 'neutral'"):
        similarity_table({k: v for k, v in sets.items() if k != "neutral"}, items)
