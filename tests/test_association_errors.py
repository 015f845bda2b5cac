"""Bad input gives one-sentence UserErrors; degenerate sets give NaN with a warning."""

import numpy as np
import pytest

from analyze.association import (
    AssociationOptions,
    association,
    association_test,
    set_bootstrap_ci,
    concept_association,
    cosine_matrix,
    effect_size,
    pair_association,
    paired_change,
    permutation_pvalue,
)
from extract.errors import UserError


def _sets(seed=0, dim=6):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dim)) for n in (4, 4, 3, 3)]


def _one_sentence(error):
    message = str(error.value)
    assert message.endswith(".") and message.count(". ") == 0, message
    return message


@pytest.mark.parametrize("position", range(4))
def test_empty_set(position):
    sets = _sets()
    sets[position] = np.zeros((0, 6))
    with pytest.raises(UserError) as error:
        effect_size(*sets)
    assert "0 image" in _one_sentence(error)


def test_one_image_set_is_rejected_by_tests():
    X, Y, A, B = _sets()
    with pytest.raises(UserError) as error:
        association_test(X[:1], Y, A, B)
    assert "at least 2" in _one_sentence(error)
    with pytest.raises(UserError):
        concept_association(X, A[:1], B)


def test_mismatched_dimensions():
    X, Y, A, B = _sets()
    with pytest.raises(UserError) as error:
        permutation_pvalue(X, Y, A[:, :5], B)
    assert "feature dimensions" in _one_sentence(error)
    with pytest.raises(UserError):
        cosine_matrix(X, Y[:, :2])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(bad):
    X, Y, A, B = _sets()
    Y = Y.astype(np.float16)
    Y[2, 1] = bad
    with pytest.raises(UserError) as error:
        effect_size(X, Y, A, B)
    assert "row 2" in _one_sentence(error)


def test_wrong_shape_and_dtype():
    X, Y, A, B = _sets()
    with pytest.raises(UserError):
        association(X[0], B, B)
    with pytest.raises(UserError):
        association(X.astype(str), B, B)


@pytest.mark.parametrize("options", [
    {"n_permutations": 0}, {"seed": -1}, {"seed": 1.5}, {"exact": "yes"},
    {"alternative": "bigger"}, {"n_bootstrap": -1}, {"confidence": 1.0},
])
def test_bad_options(options):
    with pytest.raises(UserError) as error:
        association_test(*_sets(), options=AssociationOptions(**options))
    _one_sentence(error)


def test_exact_enumeration_has_a_cap():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))  # C(40, 20) ~ 1.4e11
    with pytest.raises(UserError) as error:
        permutation_pvalue(X, Y, X[:3], Y[:3], exact=True)
    assert "exact=False" in _one_sentence(error)


def test_paired_change_needs_the_same_images_and_sets():
    X, Y, A, B = _sets()
    before = {"X": X, "Y": Y, "A": A, "B": B}
    with pytest.raises(UserError) as error:
        paired_change(before, {**before, "X": X[:3]})
    assert "same images" in _one_sentence(error)
    with pytest.raises(UserError):
        paired_change(before, {"W": X, "A": A, "B": B})
    with pytest.raises(UserError) as error:
        set_bootstrap_ci({"X": X, "A": A})
    assert "match no measure" in _one_sentence(error)
    with pytest.raises(UserError):
        set_bootstrap_ci(before, measure="association")


def test_pair_association_names_its_sets_in_errors():
    X, Y, A, _ = _sets()
    with pytest.raises(UserError) as error:
        pair_association(X, Y, A[:1])
    assert "object_with_b" in _one_sentence(error)


def test_identical_associations_give_nan_effect_with_warning():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(1, 6))
    X = Y = np.repeat(image, 4, axis=0)  # every s(w, A, B) is the same
    A, B = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    with pytest.warns(RuntimeWarning, match="identical"):
        assert np.isnan(effect_size(X, Y, A, B))
    with pytest.warns(RuntimeWarning):
        result = association_test(X, Y, A, B, options=AssociationOptions(n_bootstrap=50))
    assert np.isnan(result.effect_size) and np.isnan(result.ci_low)
    assert result.p_value == 1.0  # every partition ties with the observed one
