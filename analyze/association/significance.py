"""The three association tests, each an estimate with its permutation p-value and bootstrap interval.

:func:`association_test` (WEAT / iEAT on target sets ``X, Y`` and attribute sets ``A, B``),
:func:`concept_association` (one target set ``W`` against two group sets) and
:func:`pair_association` (the paper's concept-pair measure), with their result records
:class:`AssociationTest` and :class:`ConceptAssociation`. Sign convention: positive means
"closer to ``A``".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analyze.association.bootstrap import set_bootstrap_ci
from analyze.association.measures import MIN_SET_SIZE, effect_size, unit_sets
from analyze.association.options import AssociationOptions
from analyze.association.permutation import partition_pvalue, permutation_pvalue

_NAN = float("nan")


@dataclass(frozen=True)
class AssociationTest:
    """WEAT / iEAT test of targets ``X, Y`` on attributes ``A, B``.

    ``effect_size > 0`` means ``X`` is closer to ``A`` (relative to ``B``) than ``Y`` is.
    ``n_partitions`` is the p-value's denominator (all partitions when ``exact``, else the
    sampled ones plus the observed one). ``ci_low, ci_high`` are NaN when ``n_bootstrap == 0``.
    """

    effect_size: float
    p_value: float
    n_partitions: int
    exact: bool
    n_x: int
    n_y: int
    n_a: int
    n_b: int
    seed: int
    statistic: float
    alternative: str
    ci_low: float = _NAN
    ci_high: float = _NAN
    confidence: float = 0.95
    n_bootstrap: int = 0

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


@dataclass(frozen=True)
class ConceptAssociation:
    """Association of one target set ``W`` with group ``A`` rather than ``B``.

    ``association = mean_{w in W} s(w, A, B) = mean cos(W, A) - mean cos(W, B)``, positive
    when ``W`` lies closer to ``A``. ``p_value`` tests the exchangeability of ``A`` and ``B``
    (see :func:`concept_association`); ``ci_*`` is a within-set bootstrap interval.
    """

    association: float
    p_value: float
    n_partitions: int
    exact: bool
    ci_low: float
    ci_high: float
    confidence: float
    n_bootstrap: int
    n_w: int
    n_a: int
    n_b: int
    seed: int
    alternative: str

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


def association_test(X, Y, A, B, *,
                     options: AssociationOptions = AssociationOptions()) -> AssociationTest:
    """Effect size, permutation p-value and bootstrap interval of a WEAT / iEAT test.

    Parameters
    ----------
    X, Y : array-like of shape (n_x, d) and (n_y, d)
        Target images (e.g. X = man, Y = woman in the paper), at least 2 each.
    A, B : array-like of shape (n_a, d) and (n_b, d)
        Attribute images (e.g. two objects), at least 2 each.
    options : AssociationOptions
        ``n_permutations`` (see :func:`permutation_pvalue`), ``n_bootstrap`` (within-set
        bootstrap replicates of the effect size; 0 skips the interval), ``confidence``,
        ``seed`` (seeds both the sampled partitions and the bootstrap, each from its own
        generator), ``exact`` and ``alternative``.

    Returns
    -------
    AssociationTest
    """
    o = options
    sets = {"X": X, "Y": Y, "A": A, "B": B}
    permutation = permutation_pvalue(X, Y, A, B, n_permutations=o.n_permutations, seed=o.seed,
                                     exact=o.exact, alternative=o.alternative)
    d = effect_size(X, Y, A, B)
    low, high = _interval(sets, "effect_size", o)
    sizes = {f"n_{name.lower()}": int(np.shape(value)[0]) for name, value in sets.items()}
    return AssociationTest(effect_size=d, p_value=permutation.p_value,
                           n_partitions=permutation.n_partitions, exact=permutation.exact,
                           seed=int(o.seed), statistic=permutation.statistic,
                           alternative=o.alternative, ci_low=low, ci_high=high,
                           confidence=float(o.confidence), n_bootstrap=int(o.n_bootstrap),
                           **sizes)


def _interval(sets, measure, options: AssociationOptions) -> tuple[float, float]:
    if options.n_bootstrap == 0:
        return _NAN, _NAN
    interval = set_bootstrap_ci(sets, measure=measure, n_bootstrap=options.n_bootstrap,
                                confidence=options.confidence, seed=options.seed)
    return interval.ci_low, interval.ci_high


def concept_association(W, A, B, *,
                        options: AssociationOptions = AssociationOptions()) -> ConceptAssociation:
    """Association of one target concept ``W`` with group ``A`` rather than group ``B``.

    Estimate: ``mean_{w in W} s(w, A, B)``, equal to ``mean_cosine(W, A) - mean_cosine(W, B)``
    (the paper's ``gender_gap`` for ``W`` = object, ``A`` = man, ``B`` = woman).

    Null hypothesis: ``A`` and ``B`` are exchangeable, i.e. the group labels of the images of
    ``A u B`` carry no information about their similarity to ``W``. The permutation test
    re-partitions ``A u B`` into sets of sizes ``|A|`` and ``|B|``; the statistic
    ``mean_{j in A'} q_j - mean_{j in B'} q_j`` with ``q_j = mean_{w in W} cos(w, g_j)`` is the
    association under the new labels and is increasing in ``sum_{j in A'} q_j``. Counting
    convention (ties as exceedances, exact enumeration when ``C(|A|+|B|, |A|) <=
    n_permutations``, else a +1 pseudo-count) as in :func:`permutation_pvalue`. ``W`` is held
    fixed by this test; the bootstrap interval resamples ``W``, ``A`` and ``B``.

    Parameters
    ----------
    W : array-like of shape (n_w, d)
        Target images, at least 2.
    A, B : array-like of shape (n_a, d) and (n_b, d)
        Group images, at least 2 each.
    options : AssociationOptions
        As in :func:`association_test`.

    Returns
    -------
    ConceptAssociation
    """
    return _concept_association({"W": W, "A": A, "B": B}, options)


def _concept_association(named_sets: dict, options: AssociationOptions) -> ConceptAssociation:
    """:func:`concept_association` on sets given as ``{name: array}`` in W, A, B order."""
    o = options
    unit = unit_sets(named_sets, min_rows=MIN_SET_SIZE)
    target, group_a, group_b = unit.values()
    similarity_to_target = np.concatenate([group_a, group_b]) @ target.mean(axis=0)
    estimate = float(similarity_to_target[:len(group_a)].mean()
                     - similarity_to_target[len(group_a):].mean())
    p_value, n_partitions, used_exact = partition_pvalue(
        similarity_to_target, len(group_a), n_permutations=o.n_permutations, seed=o.seed,
        exact=o.exact, alternative=o.alternative)
    sets = dict(zip(("W", "A", "B"), named_sets.values(), strict=True))
    low, high = _interval(sets, "association", o)
    return ConceptAssociation(association=estimate, p_value=p_value, n_partitions=n_partitions,
                              exact=used_exact, ci_low=low, ci_high=high,
                              confidence=float(o.confidence), n_bootstrap=int(o.n_bootstrap),
                              n_w=len(target), n_a=len(group_a), n_b=len(group_b),
                              seed=int(o.seed), alternative=o.alternative)


def pair_association(object_only, object_with_a, object_with_b, *,
                     options: AssociationOptions = AssociationOptions()) -> ConceptAssociation:
    """The paper's concept-pair measure: is an object closer to its images with group ``a``?

    ``mean_cosine(object_with_a, object_only) - mean_cosine(object_with_b, object_only)``,
    e.g. ``M(car+man, car) - M(car+woman, car)`` (``pair_gap``, docs/science.md section 11). The
    original code compares the block means side by side ("o+man vs o", "o+woman vs o", each
    estimated by resampling whose expectation is this block mean); we take the intended
    difference against the *same* object set (the released Open Images config compared the
    mammal pairs against sports, a bug). Since a block mean is a mean of per-image cosines,
    this equals :func:`concept_association` with ``W`` = object-only, ``A`` = object+a,
    ``B`` = object+b, whose null (the pair images' group labels are exchangeable) and interval
    apply unchanged. Positive means the object-only images lie closer to the object+a images.

    Parameters
    ----------
    object_only : array-like of shape (n_o, d)
    object_with_a, object_with_b : array-like of shape (n_oa, d) and (n_ob, d)
    options : AssociationOptions
        As in :func:`association_test`.

    Returns
    -------
    ConceptAssociation
        ``n_w``, ``n_a``, ``n_b`` are the sizes of the three sets in the order above.
    """
    named_sets = {"object_only": object_only, "object_with_a": object_with_a,
                  "object_with_b": object_with_b}
    return _concept_association(named_sets, options)
