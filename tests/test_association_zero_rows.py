"""An all-zero embedding row has cosine similarity 0 with every image (sklearn's convention).

`associate-experiment` once stopped after 37.7 minutes because one image's pooled ReLU
features were all zero; the measures now keep such a row, warn, and treat it as sklearn's
``cosine_similarity`` (the function the iEAT reference and Ranjit et al.'s code call) does.
"""

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity

from analyze.association import association, cosine_matrix, effect_size
from analyze.association.groups import (
    comparison_groups,
    intra_similarity,
    item_values,
    resample_counts,
    similarity_table,
)
from analyze.association.measures import mean_within_cosine, unit_sets


def _with_zero_rows(seed=0, n=7, dim=5, zero=(1, 4)):
    rng = np.random.default_rng(seed)
    array = rng.normal(size=(n, dim))
    array[list(zero)] = 0.0
    return array


def test_cosine_of_a_zero_row_is_zero_as_in_sklearn():
    X, Y = _with_zero_rows(0), _with_zero_rows(1, n=4, zero=(2,))
    with pytest.warns(RuntimeWarning, match="all-zero row"):
        matrix = cosine_matrix(X, Y)
    np.testing.assert_allclose(matrix, cosine_similarity(X, Y), atol=1e-12)
    assert (matrix[[1, 4]] == 0).all() and (matrix[:, 2] == 0).all()


def test_intra_similarity_with_zero_rows_is_the_off_diagonal_mean():
    S = _with_zero_rows(2)
    full = cosine_similarity(S, S)
    expected = full[~np.eye(len(S), dtype=bool)].mean()
    with pytest.warns(RuntimeWarning):
        assert intra_similarity(S) == pytest.approx(expected, abs=1e-12)
    with pytest.warns(RuntimeWarning):
        assert mean_within_cosine(S) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_intra_replicates_with_zero_rows_match_a_direct_computation():
    S = _with_zero_rows(3)
    with pytest.warns(RuntimeWarning):
        unit = unit_sets({"S": S})
    item = [i for i in comparison_groups(["o"]) if i.kind == "intra"][0]
    unit = {name: unit["S"] for name in item.sets}
    counts = resample_counts({name: len(S) for name in item.sets}, 20, 0)
    values = item_values(unit, [item], counts)[:, 0]
    full = cosine_similarity(S, S)
    for replicate in range(20):
        c = counts[item.sets[0]][replicate]
        weights = np.outer(c, c)
        np.fill_diagonal(weights, 0.0)  # pairs of distinct original images only
        if weights.sum() == 0:
            assert np.isnan(values[replicate])
            continue
        assert values[replicate] == pytest.approx((weights * full).sum() / weights.sum(), abs=1e-12)


def test_measures_run_through_zero_rows():
    rng = np.random.default_rng(4)
    X, Y, A, B = (rng.normal(size=(6, 5)) for _ in range(4))
    X[0] = 0.0
    A[2] = 0.0
    with pytest.warns(RuntimeWarning):
        s = association(X, A, B)
    assert s[0] == 0.0 and np.isfinite(s).all()
    with pytest.warns(RuntimeWarning):
        assert np.isfinite(effect_size(X, Y, A, B))
    sets = {name: _with_zero_rows(seed, n=6, zero=(0,)) for seed, name in
            enumerate(["o", "o+man", "o+woman", "man", "woman", "random", "stop_sign"])}
    with pytest.warns(RuntimeWarning):
        table = similarity_table(sets, comparison_groups(["o"]), n_bootstrap=50)
    assert table["value"].notna().all() and table["ci_low"].notna().all()
