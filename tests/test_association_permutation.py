"""Permutation p-values: the iEAT reference's counting, exact vs sampled, seeds, calibration."""

import itertools

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity

import analyze.association.permutation as permutation_module
from analyze.association import (
    AssociationOptions,
    association_test,
    concept_association,
    mean_cosine,
    pair_association,
    permutation_pvalue,
)


def _reference_exact_p(X, Y, A, B):
    """Non-parametric exact branch of ryansteed/weat Test.p, loops and all."""
    similarity = cosine_similarity(np.concatenate([X, Y]), np.concatenate([A, B]))
    s_ab = similarity[:, :len(A)].mean(axis=1) - similarity[:, len(A):].mean(axis=1)
    observed = s_ab[np.arange(len(X))].sum()
    total_true = total = 0
    for subset in itertools.combinations(range(len(X) + len(Y)), len(X)):
        statistic = s_ab[np.array(subset)].sum()
        if statistic > observed or statistic == observed:  # the reference's conservative test
            total_true += 1
        total += 1
    return total_true / total, total


def _planted(seed, n=8, dim=16, strength=0.15):
    """X leans towards A and Y towards B by ``strength`` (0 = no association)."""
    rng = np.random.default_rng(seed)
    a_centre, b_centre = rng.normal(size=dim), rng.normal(size=dim)
    A = a_centre + rng.normal(size=(n, dim))
    B = b_centre + rng.normal(size=(n, dim))
    X = strength * a_centre + rng.normal(size=(n, dim))
    Y = strength * b_centre + rng.normal(size=(n, dim))
    return X, Y, A, B


@pytest.mark.parametrize("seed, n", [(0, 5), (1, 6), (2, 4)])
def test_exact_p_matches_reference_loop(seed, n):
    X, Y, A, B = _planted(seed, n=n)
    expected_p, expected_total = _reference_exact_p(X, Y, A, B)
    result = permutation_pvalue(X, Y, A, B, n_permutations=10000)
    assert result.exact and result.n_partitions == expected_total
    assert result.p_value == pytest.approx(expected_p, abs=1e-15)


def test_statistic_is_caliskans_sum_difference():
    X, Y, A, B = _planted(3, n=5)
    similarity = cosine_similarity(np.concatenate([X, Y]), np.concatenate([A, B]))
    s = similarity[:, :5].mean(axis=1) - similarity[:, 5:].mean(axis=1)
    result = permutation_pvalue(X, Y, A, B)
    assert result.statistic == pytest.approx(s[:5].sum() - s[5:].sum(), abs=1e-12)


def test_unequal_sizes_enumerate_all_partitions():
    X, Y, A, B = _planted(4, n=6)
    result = permutation_pvalue(X[:3], Y, A, B, n_permutations=10000)
    assert result.exact and result.n_partitions == 84  # C(9, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_and_sampled_agree(seed):
    X, Y, A, B = _planted(seed, n=8, strength=0.1)
    exact = permutation_pvalue(X, Y, A, B, n_permutations=20000, exact="auto")
    sampled = permutation_pvalue(X, Y, A, B, n_permutations=20000, exact=False, seed=seed)
    assert exact.exact and exact.n_partitions == 12870
    assert not sampled.exact and sampled.n_partitions == 20000
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.02)


def test_auto_samples_when_partitions_exceed_budget():
    X, Y, A, B = _planted(5, n=8)
    result = permutation_pvalue(X, Y, A, B, n_permutations=10000)  # C(16, 8) = 12870 > 10000
    assert not result.exact and result.n_partitions == 10000
    assert result.p_value >= 1 / 10000


def test_sampled_p_is_deterministic_for_a_seed_and_varies_across_seeds():
    X, Y, A, B = _planted(6, n=12, strength=0.05)
    first = permutation_pvalue(X, Y, A, B, n_permutations=2000, seed=11)
    again = permutation_pvalue(X, Y, A, B, n_permutations=2000, seed=11)
    other = permutation_pvalue(X, Y, A, B, n_permutations=2000, seed=12)
    assert first == again
    assert first.p_value != other.p_value


def test_chunking_does_not_change_the_result(monkeypatch):
    X, Y, A, B = _planted(7, n=7)
    exact = permutation_pvalue(X, Y, A, B).p_value
    sampled = permutation_pvalue(X, Y, A, B, exact=False, n_permutations=3001, seed=3).p_value
    monkeypatch.setattr(permutation_module, "_CHUNK_ELEMENTS", 50)  # a few partitions a chunk
    assert permutation_pvalue(X, Y, A, B).p_value == exact
    # Sampling draws the same stream only with the same chunking, so compare loosely.
    assert permutation_pvalue(X, Y, A, B, exact=False, n_permutations=3001,
                              seed=3).p_value == pytest.approx(sampled, abs=0.05)


def test_large_effect_gives_tiny_p_and_no_effect_does_not():
    X, Y, A, B = _planted(8, n=20, strength=1.5)
    strong = association_test(X, Y, A, B, options=AssociationOptions(n_bootstrap=0))
    assert strong.effect_size > 1.5
    assert strong.p_value == pytest.approx(1 / 10000)  # the +1 pseudo-count is the floor
    null_p = [permutation_pvalue(*_planted(seed, n=6, strength=0.0)).p_value
              for seed in range(40)]
    assert 0.35 < np.mean(null_p) < 0.65
    assert np.mean(np.array(null_p) < 0.05) < 0.2


def test_alternatives_are_consistent():
    X, Y, A, B = _planted(9, n=6, strength=0.3)
    greater = permutation_pvalue(X, Y, A, B, alternative="greater").p_value
    less = permutation_pvalue(X, Y, A, B, alternative="less").p_value
    two_sided = permutation_pvalue(X, Y, A, B, alternative="two-sided").p_value
    reversed_less = permutation_pvalue(Y, X, A, B, alternative="less").p_value
    assert greater < 0.5 < less
    assert two_sided == pytest.approx(min(1.0, 2 * min(greater, less)))
    # Exact: p_greater + p_less = 1 + (partitions tying the observed one, here only itself) / C.
    assert greater + less == pytest.approx(1 + 1 / 924)  # C(12, 6)
    assert reversed_less == pytest.approx(greater)


def test_concept_association_p_matches_loop_over_group_labels():
    rng = np.random.default_rng(10)
    W = rng.normal(size=(5, 8)) + 0.5
    A, B = rng.normal(size=(4, 8)) + 0.4, rng.normal(size=(5, 8))
    result = concept_association(W, A, B, options=AssociationOptions(n_bootstrap=0))
    pool = np.concatenate([A, B])
    observed = mean_cosine(W, A) - mean_cosine(W, B)
    hits = total = 0
    for subset in itertools.combinations(range(9), 4):
        rest = [j for j in range(9) if j not in subset]
        statistic = mean_cosine(W, pool[list(subset)]) - mean_cosine(W, pool[rest])
        hits += statistic >= observed - 1e-12
        total += 1
    assert result.association == pytest.approx(observed, abs=1e-12)
    assert result.exact and result.n_partitions == total == 126
    assert result.p_value == pytest.approx(hits / total)


def test_pair_association_is_the_papers_pair_gap():
    rng = np.random.default_rng(11)
    car, car_man, car_woman = (rng.normal(size=(n, 8)) for n in (6, 5, 4))
    result = pair_association(car, car_man, car_woman,
                              options=AssociationOptions(n_bootstrap=0))
    expected = mean_cosine(car_man, car) - mean_cosine(car_woman, car)
    assert result.association == pytest.approx(expected, abs=1e-12)
    assert (result.n_w, result.n_a, result.n_b) == (6, 5, 4)
