"""Cosine primitives and the WEAT / iEAT effect size against direct loop implementations."""

import itertools

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity

from analyze.association import (
    association,
    cosine_matrix,
    effect_size,
    mean_cosine,
    mean_within_cosine,
)


def _reference_s(w, A, B):
    """s(w, A, B) as in ryansteed/weat Test.s_wAB, one image at a time."""
    cos_a = [w @ a / (np.linalg.norm(w) * np.linalg.norm(a)) for a in A]
    cos_b = [w @ b / (np.linalg.norm(w) * np.linalg.norm(b)) for b in B]
    return np.mean(cos_a) - np.mean(cos_b)


def _reference_effect_size(X, Y, A, B):
    """Test.effect_size of the iEAT reference: mean difference over np.std(ddof=1)."""
    s_x = [_reference_s(x, A, B) for x in X]
    s_y = [_reference_s(y, A, B) for y in Y]
    return (np.mean(s_x) - np.mean(s_y)) / np.std(s_x + s_y, ddof=1)


def _random_sets(seed, sizes=(7, 9, 6, 8), dim=16):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dim)) for n in sizes]


def test_cosine_matrix_matches_sklearn():
    X, Y, *_ = _random_sets(0)
    np.testing.assert_allclose(cosine_matrix(X, Y), cosine_similarity(X, Y), atol=1e-12)


def test_cosine_ignores_row_scale():
    X, Y, *_ = _random_sets(1)
    np.testing.assert_allclose(cosine_matrix(3.5 * X, Y), cosine_matrix(X, Y), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_association_matches_loop(seed):
    W, _, A, B = _random_sets(seed)
    expected = [_reference_s(w, A, B) for w in W]
    np.testing.assert_allclose(association(W, A, B), expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_effect_size_matches_ieat_reference(seed):
    X, Y, A, B = _random_sets(seed)
    assert effect_size(X, Y, A, B) == pytest.approx(_reference_effect_size(X, Y, A, B),
                                                    abs=1e-10)


def test_effect_size_uses_sample_std():
    X, Y, A, B = _random_sets(3, sizes=(3, 3, 4, 4))
    s = np.concatenate([association(X, A, B), association(Y, A, B)])
    numerator = s[:3].mean() - s[3:].mean()
    d = effect_size(X, Y, A, B)
    assert d == pytest.approx(numerator / s.std(ddof=1), rel=1e-12)
    assert d != pytest.approx(numerator / s.std(ddof=0), rel=1e-3)


def test_effect_size_is_antisymmetric():
    X, Y, A, B = _random_sets(4)
    d = effect_size(X, Y, A, B)
    assert effect_size(Y, X, A, B) == pytest.approx(-d, abs=1e-12)
    assert effect_size(X, Y, B, A) == pytest.approx(-d, abs=1e-12)


def test_float16_and_float32_inputs_are_computed_in_float64():
    X, Y, A, B = (array.astype(np.float16) for array in _random_sets(5))
    d16 = effect_size(X, Y, A, B)
    d64 = _reference_effect_size(*(array.astype(np.float64) for array in (X, Y, A, B)))
    assert d16 == pytest.approx(d64, abs=1e-10)
    assert isinstance(d16, float)


def test_large_planted_effect_is_close_to_two():
    rng = np.random.default_rng(6)
    dim, n = 32, 20
    a_centre, b_centre = rng.normal(size=dim), rng.normal(size=dim)
    A = a_centre + 0.3 * rng.normal(size=(n, dim))
    B = b_centre + 0.3 * rng.normal(size=(n, dim))
    X = a_centre + 0.3 * rng.normal(size=(n, dim))
    Y = b_centre + 0.3 * rng.normal(size=(n, dim))
    d = effect_size(X, Y, A, B)
    # The bound for equal sizes is 2 sqrt((2n - 1) / 2n) ~ 1.975.
    assert 1.8 < d <= 2 * np.sqrt((2 * n - 1) / (2 * n)) + 1e-12


def test_mean_cosine_is_block_mean():
    U, V, *_ = _random_sets(7)
    assert mean_cosine(U, V) == pytest.approx(cosine_similarity(U, V).mean(), abs=1e-12)


def test_mean_within_cosine_is_off_diagonal_mean():
    U, *_ = _random_sets(8)
    matrix = cosine_similarity(U, U)
    pairs = [matrix[i, j] for i, j in itertools.permutations(range(len(U)), 2)]
    assert mean_within_cosine(U) == pytest.approx(np.mean(pairs), abs=1e-12)
