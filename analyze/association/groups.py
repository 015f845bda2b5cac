"""Ranjit et al.'s comparison groups and their intra- / inter-class cosine similarities [R].

The paper (docs/science.md section 11; its code ``cosine_analysis/cosine_exp.py`` and the
``COMPS`` / ``MISC_PLOTS`` sections of ``config/{coco,openimages}.yaml``) reads gender bias as
cosine similarities side by side, never as a difference:

* **intra-class similarity** of one concept set ``S``: in their code the mean over 50 random
  half splits ``(H1, H2)`` of the block mean ``M(H1, H2)``; its expectation is exactly the mean
  cosine over all pairs of distinct images, the off-diagonal mean of ``cos(S, S)``
  (:func:`intra_similarity`; :func:`intra_split_half` reproduces their resampled estimate);
* **inter-class similarity** of two sets ``U, V``: in their code the mean over 50 random
  subsets of ``k ~ U{5, ..., N-1}`` rows of each; its expectation is the full block mean
  ``M(U, V) = mean_{u, v} cos(u, v)`` (:func:`inter_similarity`; :func:`inter_random_subsets`).

:func:`comparison_groups` is the paper's named preset over any concept sets. Per object ``o``:
``o+man vs o``, ``o+woman vs o``, ``o vs man``, ``o vs woman``, ``o vs random`` (inter), the
intra similarity of ``o``, ``o+man`` and ``o+woman``; plus ``stop sign vs man / woman``,
``random vs man / woman`` and the intra similarity of ``man``, ``woman``, ``random`` and the
stop sign. Each item belongs to the plot groups of their code:

=========  ===================================================================================
group      items
=========  ===================================================================================
indiv      intra of every single concept
pairs      intra of ``o+man`` and ``o+woman`` for every ``o``, plus intra of ``random``
comps      ``o+man vs o``, ``o+woman vs o``, ``o vs random`` for every ``o``, plus intra of
           ``random``
object     ``o vs man``, ``o vs woman``, ``o vs random`` for every ``o``, ``stop sign vs man /
           woman``, ``random vs man / woman``
=========  ===================================================================================

The concept names come from a :class:`GroupNames`: :data:`PAPER_NAMES` for folder-per-concept
sets laid out like their canonical sets (``car``, ``car+man``, ``man``, ``random``,
``stop_sign``), :data:`AVATAR_NAMES` for the avatar concept sets (``hat``, ``hat+dark``,
``dark``, ``light``, ``random`` and the ``neutral`` reference set standing in for the stop
sign). The released Open Images config compared the mammal pairs against *sports* (a bug);
here ``o+g vs o`` always uses the same object ``o``.

Every value comes with a percentile bootstrap interval that resamples images within each set
(:func:`item_values` is vectorised over replicates; an intra replicate averages the cosine
over pairs of *distinct original* images, so a duplicated draw never adds a self-similarity
of 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze.association.bootstrap import check_interval_options
from analyze.association.measures import MIN_SET_SIZE, self_similarities, unit_sets
from extract.errors import UserError

#: Plot groups of the paper's code, in its order.
PLOT_GROUPS = ("indiv", "pairs", "comps", "object")
#: Iterations of the paper's resampled estimates (``NUM_ITER`` in ``cosine_exp.py``).
PAPER_ITERATIONS = 50
#: Smallest subset the paper's inter-class resampling draws (``np.random.randint(5, N)``).
PAPER_MIN_SUBSET = 5


@dataclass(frozen=True)
class GroupNames:
    """Concept names the preset reads: the two groups, the random set, the reference object.

    Pairs are named ``"<object>+<group>"`` (``car+man``, ``hat+dark``).
    """

    group_a: str = "man"
    group_b: str = "woman"
    random: str = "random"
    reference: str = "stop_sign"

    def pair(self, obj: str, group: str) -> str:
        """Name of the set of object ``obj`` shown with ``group``."""
        return f"{obj}+{group}"


#: The paper's canonical folder names.
PAPER_NAMES = GroupNames()
#: The avatar concept sets (analyze.association.concepts): dark / light skin, random, neutral.
AVATAR_NAMES = GroupNames(group_a="dark", group_b="light", random="random", reference="neutral")
#: Named presets of :func:`comparison_groups`.
NAME_PRESETS = {"paper": PAPER_NAMES, "avatars": AVATAR_NAMES}


@dataclass(frozen=True)
class ComparisonItem:
    """One similarity of the preset: ``intra`` of ``sets[0]`` or ``inter`` of ``sets[0], sets[1]``.

    ``object`` is the object category the item belongs to (None for the reference items);
    ``plot_groups`` the paper's plot groups that hold it.
    """

    name: str
    kind: str
    sets: tuple[str, ...]
    object: str | None
    plot_groups: tuple[str, ...]


def _intra(name: str, obj: str | None, groups: tuple[str, ...]) -> ComparisonItem:
    return ComparisonItem(f"{name} (intra)", "intra", (name,), obj, ("indiv", *groups))


def _inter(first: str, second: str, obj: str | None, groups: tuple[str, ...]) -> ComparisonItem:
    return ComparisonItem(f"{first} vs {second}", "inter", (first, second), obj, groups)


def comparison_groups(objects: Iterable[str], *,
                      names: GroupNames | str = PAPER_NAMES) -> list[ComparisonItem]:
    """The paper's comparison items for the given objects (see the module docstring).

    Parameters
    ----------
    objects : iterable of str
        Object concepts, e.g. ``["car", "fashion"]`` or avatar targets ``["hat", "eyewear"]``.
    names : GroupNames or {"paper", "avatars"}, default PAPER_NAMES
        Names of the groups and reference sets.

    Returns
    -------
    list of ComparisonItem
        Per object in the given order, then the reference items; names unique.
    """
    if isinstance(names, str):
        if names not in NAME_PRESETS:
            raise UserError(f"`names` {names!r} is not a preset; pass one of "
                            f"{sorted(NAME_PRESETS)} or a GroupNames.")
        names = NAME_PRESETS[names]
    objects = list(dict.fromkeys(objects))
    if not objects:
        raise UserError("no object was given; pass at least one object concept in `objects`.")
    a, b, random = names.group_a, names.group_b, names.random
    clash = sorted(set(objects) & {a, b, random, names.reference})
    if clash:
        raise UserError(f"the object {clash[0]!r} is also a group or reference set; pass object "
                        "concepts only in `objects`.")
    items = []
    for obj in objects:
        with_a, with_b = names.pair(obj, a), names.pair(obj, b)
        items += [_inter(with_a, obj, obj, ("comps",)), _inter(with_b, obj, obj, ("comps",)),
                  _inter(obj, a, obj, ("object",)), _inter(obj, b, obj, ("object",)),
                  _inter(obj, random, obj, ("comps", "object")), _intra(obj, obj, ()),
                  _intra(with_a, obj, ("pairs",)), _intra(with_b, obj, ("pairs",))]
    reference = names.reference
    items += [_inter(reference, a, None, ("object",)), _inter(reference, b, None, ("object",)),
              _inter(random, a, None, ("object",)), _inter(random, b, None, ("object",)),
              _intra(random, None, ("pairs", "comps")), _intra(a, None, ()),
              _intra(b, None, ()), _intra(reference, None, ())]
    return items


def item_sets(items: Iterable[ComparisonItem]) -> list[str]:
    """Every concept set the items use, in first-use order."""
    return list(dict.fromkeys(name for item in items for name in item.sets))


def items_in(items: Sequence[ComparisonItem], *, plot_group: str | None = None,
             obj: str | None = None) -> list[ComparisonItem]:
    """The items of one plot group and / or one object category, in preset order."""
    if plot_group is not None and plot_group not in PLOT_GROUPS:
        raise UserError(f"`plot_group` {plot_group!r} is unknown; pass one of {PLOT_GROUPS}.")
    return [item for item in items
            if (plot_group is None or plot_group in item.plot_groups)
            and (obj is None or item.object == obj)]


# -- the similarities ------------------------------------------------------------------------
def intra_similarity(S) -> float:
    """Mean cosine over all pairs of distinct rows of ``S`` (the expectation of their split halves).

    Parameters
    ----------
    S : array-like of shape (n, d), n >= 2

    Returns
    -------
    float in [-1, 1]
    """
    unit = unit_sets({"S": S}, min_rows=MIN_SET_SIZE)["S"]
    total = unit.sum(axis=0)
    n_rows = unit.shape[0]
    return float((total @ total - self_similarities(unit).sum()) / (n_rows * (n_rows - 1)))


def inter_similarity(U, V) -> float:
    """Block mean ``mean_{u in U, v in V} cos(u, v)`` (the expectation of their subsets)."""
    unit = unit_sets({"U": U, "V": V})
    return float(unit["U"].mean(axis=0) @ unit["V"].mean(axis=0))


def _check_iterations(n_iter) -> int:
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise UserError(f"`n_iter` {n_iter!r} is invalid; pass a positive integer such as 50.")
    return int(n_iter)


def intra_split_half(S, *, n_iter: int = PAPER_ITERATIONS, seed: int = 0) -> np.ndarray:
    """Their resampled intra estimate: ``M(H1, H2)`` over ``n_iter`` seeded random half splits.

    Each iteration permutes the rows, takes ``H1`` = the first ``n // 2`` and ``H2`` = the rest
    (``cosine_exp.py:split_features``). The mean of the returned values estimates
    :func:`intra_similarity`, which is its exact expectation.

    Returns
    -------
    ndarray of shape (n_iter,)
    """
    unit = unit_sets({"S": S}, min_rows=MIN_SET_SIZE)["S"]
    rng = np.random.default_rng(seed)
    half = unit.shape[0] // 2
    values = []
    for _ in range(_check_iterations(n_iter)):
        order = rng.permutation(unit.shape[0])
        values.append(unit[order[:half]].mean(axis=0) @ unit[order[half:]].mean(axis=0))
    return np.asarray(values)


def inter_random_subsets(U, V, *, n_iter: int = PAPER_ITERATIONS, seed: int = 0) -> np.ndarray:
    """Their resampled inter estimate: ``M(U_k1, V_k2)`` over ``n_iter`` seeded random subsets.

    ``k1`` is uniform on ``{5, ..., |U| - 1}`` (``np.random.randint(5, N1)``), ``k2`` likewise,
    rows drawn without replacement (``cosine_exp.py:random_split_two_features``); both sets
    need more than 5 images, as in their code. The mean estimates :func:`inter_similarity`.

    Returns
    -------
    ndarray of shape (n_iter,)
    """
    unit = unit_sets({"U": U, "V": V}, min_rows=PAPER_MIN_SUBSET + 1)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(_check_iterations(n_iter)):
        picked = [unit[key][rng.choice(len(unit[key]), rng.integers(PAPER_MIN_SUBSET,
                                                                    len(unit[key])),
                                       replace=False)] for key in ("U", "V")]
        values.append(picked[0].mean(axis=0) @ picked[1].mean(axis=0))
    return np.asarray(values)


def resample_counts(sizes: Mapping[str, int], n_bootstrap: int, seed: int) -> dict:
    """Seeded with-replacement draw counts per set, shape (n_bootstrap, size), sets in sorted order.

    The draw depends only on the set names, sizes, ``n_bootstrap`` and ``seed``: two models
    measured on the same images get the same resamples, which pairs their bootstraps.
    """
    rng = np.random.default_rng(seed)
    counts = {}
    for name in sorted(sizes):
        index = rng.integers(0, sizes[name], size=(n_bootstrap, sizes[name]))
        offsets = index + sizes[name] * np.arange(n_bootstrap)[:, None]
        counts[name] = np.bincount(offsets.ravel(), minlength=n_bootstrap * sizes[name]) \
            .reshape(n_bootstrap, sizes[name]).astype(np.float64)
    return counts


def item_values(unit: Mapping[str, np.ndarray], items: Sequence[ComparisonItem],
                counts: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Every item's similarity under each resample: shape ``(n_resamples, n_items)``.

    ``unit`` holds unit-row float64 sets; ``counts[name]`` is ``(n_resamples, n_name)`` draw
    counts (None: the point estimate, one row). An intra replicate is the mean cosine over
    pairs of distinct original images weighted by their draw counts,
    ``(|sum_k c_k u_k|^2 - sum_k c_k^2) / (n^2 - sum_k c_k^2)``; NaN when one image was drawn
    ``n`` times.
    """
    if counts is None:
        counts = {name: np.ones((1, len(array))) for name, array in unit.items()}
    sums = {name: counts[name] @ unit[name] for name in item_sets(items)}
    columns = []
    for item in items:
        if item.kind == "inter":
            first, second = item.sets
            columns.append(np.einsum("md,md->m", sums[first], sums[second])
                           / (len(unit[first]) * len(unit[second])))
            continue
        name = item.sets[0]
        squares = (counts[name] ** 2).sum(axis=1)
        pairs = len(unit[name]) ** 2 - squares
        # a zero row's self-similarity is 0, not 1 (measures.unit_rows)
        same = np.einsum("md,md->m", sums[name], sums[name]) \
            - counts[name] ** 2 @ self_similarities(unit[name])
        with np.errstate(invalid="ignore", divide="ignore"):
            columns.append(np.where(pairs > 0, same / np.where(pairs > 0, pairs, 1), np.nan))
    return np.column_stack(columns)


def check_item_sets(items: Sequence[ComparisonItem], available: Iterable[str]) -> None:
    """Raise a :class:`UserError` naming the first concept set an item needs but is missing."""
    available = set(available)
    for item in items:
        for name in item.sets:
            if name not in available:
                raise UserError(f"the comparison {item.name!r} needs the concept set {name!r}, "
                                f"which does not exist; the sets are {sorted(available)}.")


def similarity_table(sets: Mapping[str, object], items: Sequence[ComparisonItem], *,
                     n_bootstrap: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Each item's similarity with its percentile bootstrap interval over images.

    Parameters
    ----------
    sets : mapping of concept name -> array-like of shape (n_name, d)
        Embeddings of every set the items use (at least 2 images each).
    items : sequence of ComparisonItem
        E.g. :func:`comparison_groups`.
    n_bootstrap : int, default 2000
    confidence : float, default 0.95
    seed : int, default 0

    Returns
    -------
    DataFrame with columns ``item, kind, object, plot_groups, value, ci_low, ci_high``.
    """
    check_item_sets(items, sets)
    check_interval_options(n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    unit = unit_sets({name: sets[name] for name in item_sets(items)}, min_rows=MIN_SET_SIZE)
    value = item_values(unit, items)[0]
    counts = resample_counts({name: len(array) for name, array in unit.items()},
                             n_bootstrap, seed)
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(item_values(unit, items, counts), [tail, 1 - tail], axis=0)
    return pd.DataFrame({
        "item": [item.name for item in items], "kind": [item.kind for item in items],
        "object": [item.object for item in items],
        "plot_groups": [",".join(item.plot_groups) for item in items],
        "value": value, "ci_low": low, "ci_high": high})
