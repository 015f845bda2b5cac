"""Bootstrap intervals and the paired before/after change of association measures."""

import numpy as np
import pytest

import analyze.association.bootstrap as bootstrap_module
from analyze.association import (
    AssociationOptions,
    association,
    association_test,
    set_bootstrap_ci,
    bootstrap_replicates,
    concept_association,
    effect_size,
    paired_change,
)


def _sets(seed, sizes=(9, 8, 7, 6), dim=12, strength=0.5):
    rng = np.random.default_rng(seed)
    a_centre, b_centre = rng.normal(size=dim), rng.normal(size=dim)
    X = strength * a_centre + rng.normal(size=(sizes[0], dim))
    Y = strength * b_centre + rng.normal(size=(sizes[1], dim))
    A = a_centre + rng.normal(size=(sizes[2], dim))
    B = b_centre + rng.normal(size=(sizes[3], dim))
    return {"X": X, "Y": Y, "A": A, "B": B}


def test_effect_size_replicates_match_a_loop_over_resampled_sets():
    sets = _sets(0)
    replicates = bootstrap_replicates(sets, n_bootstrap=25, seed=4)
    # The documented scheme: one generator, with-replacement rows drawn for X, Y, A, B in turn.
    rng = np.random.default_rng(4)
    index = {name: rng.integers(0, len(sets[name]), size=(25, len(sets[name])))
             for name in ("X", "Y", "A", "B")}
    expected = [effect_size(*(sets[name][index[name][b]] for name in ("X", "Y", "A", "B")))
                for b in range(25)]
    np.testing.assert_allclose(replicates, expected, atol=1e-10)


def test_association_replicates_match_a_loop():
    sets = _sets(1)
    concept = {"W": sets["X"], "A": sets["A"], "B": sets["B"]}
    replicates = bootstrap_replicates(concept, n_bootstrap=20, seed=2)
    rng = np.random.default_rng(2)
    index = {name: rng.integers(0, len(concept[name]), size=(20, len(concept[name])))
             for name in ("W", "A", "B")}
    expected = [association(*(concept[name][index[name][b]] for name in ("W", "A", "B"))).mean()
                for b in range(20)]
    np.testing.assert_allclose(replicates, expected, atol=1e-12)


def test_chunking_does_not_change_replicates(monkeypatch):
    sets = _sets(2)
    whole = bootstrap_replicates(sets, n_bootstrap=40, seed=0)
    monkeypatch.setattr(bootstrap_module, "_CHUNK_ELEMENTS", 60)  # one or two replicates a chunk
    np.testing.assert_allclose(bootstrap_replicates(sets, n_bootstrap=40, seed=0), whole,
                               atol=1e-12)


@pytest.mark.parametrize("measure", ["effect_size", "association"])
def test_interval_covers_estimate_and_is_deterministic(measure):
    sets = _sets(3)
    if measure == "association":
        sets = {"W": sets["X"], "A": sets["A"], "B": sets["B"]}
    interval = set_bootstrap_ci(sets, n_bootstrap=500, seed=7)
    assert interval.measure == measure
    assert interval.ci_low < interval.estimate < interval.ci_high
    assert set_bootstrap_ci(sets, n_bootstrap=500, seed=7) == interval
    assert set_bootstrap_ci(sets, n_bootstrap=500, seed=8) != interval
    wider = set_bootstrap_ci(sets, n_bootstrap=500, seed=7, confidence=0.99)
    assert wider.ci_low <= interval.ci_low and wider.ci_high >= interval.ci_high


def test_estimate_equals_effect_size_and_test_reuses_the_interval():
    sets = _sets(4)
    interval = set_bootstrap_ci(sets, n_bootstrap=300, seed=1)
    assert interval.estimate == pytest.approx(effect_size(**sets), abs=1e-12)
    result = association_test(*sets.values(), options=AssociationOptions(n_bootstrap=300, seed=1))
    assert (result.ci_low, result.ci_high) == (interval.ci_low, interval.ci_high)
    assert result.to_dict()["n_bootstrap"] == 300


def test_concept_association_interval_surrounds_estimate():
    sets = _sets(5)
    result = concept_association(sets["X"], sets["A"], sets["B"],
                                 options=AssociationOptions(n_bootstrap=400, seed=3))
    assert result.ci_low < result.association < result.ci_high
    assert result.association > 0 and result.p_value < 0.05  # X was planted near A


def _finetuned(sets, seed, shift=0.4, noise=0.05):
    """Same images after "finetuning": X pulled towards A's centre, small per-image noise."""
    rng = np.random.default_rng(seed)
    after = {name: array + noise * rng.normal(size=array.shape) for name, array in sets.items()}
    after["X"] = after["X"] + shift * sets["A"].mean(axis=0)
    return after


def test_paired_change_is_after_minus_before():
    before = _sets(6)
    after = _finetuned(before, seed=0)
    change = paired_change(before, after, n_bootstrap=400, seed=2)
    assert change.before == pytest.approx(effect_size(**before), abs=1e-12)
    assert change.after == pytest.approx(effect_size(**after), abs=1e-12)
    assert change.change == pytest.approx(change.after - change.before, abs=1e-15)
    assert change.change > 0 and change.ci_low > 0  # X moved towards A
    assert change.ci_low < change.change < change.ci_high
    assert change.set_sizes == {"X": 9, "Y": 8, "A": 7, "B": 6}
    assert paired_change(before, after, n_bootstrap=400, seed=2) == change


def test_paired_interval_is_narrower_than_unpaired():
    before = _sets(7, sizes=(15, 15, 15, 15))
    after = _finetuned(before, seed=1, shift=0.1)
    paired = paired_change(before, after, n_bootstrap=1000, seed=3)
    independent = (bootstrap_replicates(after, n_bootstrap=1000, seed=4)
                   - bootstrap_replicates(before, n_bootstrap=1000, seed=5))
    unpaired_width = np.subtract(*np.quantile(independent, [0.975, 0.025]))
    assert paired.ci_high - paired.ci_low < 0.5 * unpaired_width


def test_paired_change_of_association_and_before_interval():
    before = _sets(8)
    concept_before = {"W": before["X"], "A": before["A"], "B": before["B"]}
    after = _finetuned(before, seed=2)
    concept_after = {"W": after["X"], "A": after["A"], "B": after["B"]}
    change = paired_change(concept_before, concept_after, n_bootstrap=300, seed=9)
    assert change.measure == "association"
    alone = set_bootstrap_ci(concept_before, n_bootstrap=300, seed=9)
    # The before-stage interval is the plain bootstrap with the same seed (same indices).
    assert (change.before_ci_low, change.before_ci_high) == (alone.ci_low, alone.ci_high)
    assert change.to_dict()["change"] == change.change
