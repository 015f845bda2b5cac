"""Permutation p-values for association tests, vectorized over partitions [R].

Both tests here re-partition a pool of per-image scalars into two groups of the original sizes
and compare a statistic that is increasing in the **sum of the first group's values**, so one
engine (:func:`partition_pvalue`) serves both:

* WEAT / iEAT (:func:`permutation_pvalue`): pool ``X u Y``, values ``s(w, A, B)``. Caliskan's
  statistic ``sum_{x in X'} s(x) - sum_{y in Y'} s(y) = 2 sum_{x in X'} s(x) - const`` (and the
  mean difference too) orders partitions exactly as ``sum_{x in X'} s(x)`` does, the shortcut
  of the reference's ``Test.s_XAB``.
* Single concept (``association.concept_association``): pool ``A u B``.

Convention, following the iEAT reference (``ryansteed/weat`` ``Test.p``):

* ``alternative="greater"`` (the reference's only one): ``p = #{partitions with statistic >=
  observed} / #partitions``; ties count as exceedances (its "conservative test"); ties are
  judged with a tolerance of a few float64 ulps so that equal sums added in another order tie.
* Exact enumeration of all ``C(n_x + n_y, n_x)`` partitions (the observed one included) when
  that number is at most ``n_permutations`` (``exact="auto"``).
* Otherwise ``n_permutations - 1`` independent uniformly random partitions (seeded; repeats
  possible, as with the reference's ``np.random.shuffle``) plus the observed one
  as a pseudo-count in numerator and denominator: ``p = (1 + #{>= observed}) / n_permutations``,
  so ``p >= 1 / n_permutations`` and the test stays valid; ``n_partitions`` records
  ``n_permutations``.
* ``"less"`` counts ``<=`` the same way; ``"two-sided"`` is ``min(1, 2 min(p_greater, p_less))``.

Unlike the reference, ``|X| != |Y|`` is allowed (partitions keep the original sizes).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from analyze.association.measures import MIN_SET_SIZE, association_from_unit, unit_sets
from extract.errors import UserError

ALTERNATIVES = ("greater", "less", "two-sided")

#: Largest number of partitions ``exact=True`` will enumerate (seconds of work, bounded memory).
MAX_EXACT_PARTITIONS = 5_000_000

#: Index elements per chunk of partitions (~16 MiB of int64): bounds memory for any pool size.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class PermutationResult:
    """Outcome of a WEAT / iEAT permutation test.

    Attributes
    ----------
    p_value : float
        One- or two-sided permutation p-value (see the module docstring for the convention).
    statistic : float
        Caliskan's test statistic ``sum_{x in X} s(x, A, B) - sum_{y in Y} s(y, A, B)``.
    n_partitions : int
        Denominator of the p-value: ``C(n_x + n_y, n_x)`` when exact, else ``n_permutations``
        (``n_permutations - 1`` random partitions plus the observed one).
    exact : bool
        Whether every partition was enumerated.
    alternative : str
    seed : int
        Seed of the random partitions (recorded even when unused).
    """

    p_value: float
    statistic: float
    n_partitions: int
    exact: bool
    alternative: str
    seed: int

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


def check_test_options(*, n_permutations, seed, exact, alternative) -> None:
    """Raise a one-sentence :class:`UserError` for a bad permutation-test option."""
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) \
            or n_permutations < 1:
        raise UserError(f"n_permutations={n_permutations!r} is invalid; pass a positive integer "
                        "such as 10000.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed={seed!r} is invalid; pass a non-negative integer.")
    if not (exact == "auto" or exact is True or exact is False):
        raise UserError(f"exact={exact!r} is invalid; pass 'auto', True or False.")
    if alternative not in ALTERNATIVES:
        raise UserError(f"alternative={alternative!r} is invalid; pass one of {ALTERNATIVES}.")


def _exact_index_chunks(n_total: int, n_first: int, chunk_rows: int):
    """Yield every ``n_first``-subset of ``range(n_total)`` as rows of int index arrays."""
    combos = itertools.combinations(range(n_total), n_first)
    while True:
        flat = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk_rows)),
                           dtype=np.intp)
        if flat.size == 0:
            return
        yield flat.reshape(-1, n_first)


def _random_index_chunks(n_total: int, n_first: int, n_draws: int, rng, chunk_rows: int):
    """Yield ``n_draws`` uniformly random ``n_first``-subsets of ``range(n_total)``, i.i.d."""
    remaining = n_draws
    while remaining > 0:
        rows = min(chunk_rows, remaining)
        # The n_first smallest of i.i.d. uniform keys form a uniformly random subset.
        keys = rng.random((rows, n_total))
        yield np.argpartition(keys, n_first - 1, axis=1)[:, :n_first]
        remaining -= rows


def partition_pvalue(values, n_first: int, *, n_permutations: int = 10000, seed: int = 0,
                     exact="auto", alternative: str = "greater") -> tuple[float, int, bool]:
    """Permutation p-value of ``sum(values[:n_first])`` over re-partitions of ``values``.

    Parameters
    ----------
    values : array-like of shape (n_total,)
        Per-item scalars; the first ``n_first`` are the observed first group.
    n_first : int
        Size of the first group (``0 < n_first < n_total``).
    n_permutations, seed, exact, alternative
        See the module docstring.

    Returns
    -------
    (p_value, n_partitions, exact) : (float, int, bool)
    """
    check_test_options(n_permutations=n_permutations, seed=seed, exact=exact,
                       alternative=alternative)
    # Centring leaves the ordering of equal-size sums unchanged and makes the tie tolerance
    # relative to the spread of the values rather than to their common offset.
    values = np.asarray(values, dtype=np.float64)
    values = values - values.mean()
    n_total = values.size
    n_possible = math.comb(n_total, n_first)
    use_exact = n_possible <= n_permutations if exact == "auto" else exact
    if use_exact and n_possible > MAX_EXACT_PARTITIONS:
        raise UserError(f"Exact enumeration needs {n_possible} partitions, more than "
                        f"{MAX_EXACT_PARTITIONS}; pass exact='auto' or exact=False to sample.")
    chunk_rows = max(1, _CHUNK_ELEMENTS // max(n_total, 1))
    if use_exact:
        chunks = _exact_index_chunks(n_total, n_first, chunk_rows)
    else:
        rng = np.random.default_rng(seed)
        chunks = _random_index_chunks(n_total, n_first, n_permutations - 1, rng, chunk_rows)

    observed = values[np.arange(n_first)[None, :]].sum(axis=1)[0]
    tolerance = 8 * n_first * np.finfo(np.float64).eps * max(np.abs(values).max(), 1e-300)
    n_ge = n_le = 0
    for index in chunks:
        sums = values[index].sum(axis=1)
        n_ge += int(np.count_nonzero(sums >= observed - tolerance))
        n_le += int(np.count_nonzero(sums <= observed + tolerance))
    n_partitions = n_possible if use_exact else n_permutations
    if not use_exact:  # the observed partition as a pseudo-count, as in the reference
        n_ge, n_le = n_ge + 1, n_le + 1
    p_greater, p_less = n_ge / n_partitions, n_le / n_partitions
    p_value = {"greater": p_greater, "less": p_less,
               "two-sided": min(1.0, 2 * min(p_greater, p_less))}[alternative]
    return float(p_value), int(n_partitions), bool(use_exact)


def permutation_pvalue(X, Y, A, B, *, n_permutations: int = 10000, seed: int = 0,
                       exact="auto", alternative: str = "greater") -> PermutationResult:
    """WEAT / iEAT permutation test of "X and Y associate equally with A and B".

    ``s(w, A, B)`` is computed once for every image of ``X u Y``; the statistic over
    re-partitions ``(X', Y')`` of ``X u Y`` with ``|X'| = |X|`` is then gathered in chunks of
    index matrices. With ``alternative="greater"`` a small p means ``X`` is more associated
    with ``A`` (and ``Y`` with ``B``) than random splits are. Conventions: module docstring.

    Parameters
    ----------
    X, Y : array-like of shape (n_x, d) and (n_y, d)
        Target images, at least 2 each.
    A, B : array-like of shape (n_a, d) and (n_b, d)
        Attribute images, at least 2 each.
    n_permutations : int, default 10000
        Exact enumeration when ``C(n_x + n_y, n_x) <= n_permutations`` (``exact="auto"``),
        else this many partitions in the denominator.
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` for the sampled partitions.
    exact : {"auto", True, False}
    alternative : {"greater", "less", "two-sided"}

    Returns
    -------
    PermutationResult
    """
    unit = unit_sets({"X": X, "Y": Y, "A": A, "B": B}, min_rows=MIN_SET_SIZE)
    s_x = association_from_unit(unit["X"], unit["A"], unit["B"])
    s_y = association_from_unit(unit["Y"], unit["A"], unit["B"])
    p_value, n_partitions, used_exact = partition_pvalue(
        np.concatenate([s_x, s_y]), s_x.size, n_permutations=n_permutations, seed=seed,
        exact=exact, alternative=alternative)
    return PermutationResult(p_value=p_value, statistic=float(s_x.sum() - s_y.sum()),
                             n_partitions=n_partitions, exact=used_exact,
                             alternative=alternative, seed=int(seed))
