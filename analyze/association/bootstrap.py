"""Bootstrap intervals for association measures and their paired change under finetuning [R].

Two measures, each named by the keys of its dict of embedding sets:

* ``"effect_size"`` — keys ``X, Y, A, B``: the WEAT / iEAT effect size ``d``.
* ``"association"`` — keys ``W, A, B``: the single-concept association
  ``mean_{w in W} s(w, A, B)``. The paper's concept-pair measure is this with ``W`` = object-only
  images, ``A`` = object-with-group-a, ``B`` = object-with-group-b.

A bootstrap replicate resamples images with replacement **within each set** (sets keep their
sizes) and recomputes the measure; the interval is the percentile interval of the replicates.
Everything is vectorized over replicates: a resample of a set enters only through its centroid
(``counts @ unit_rows / n``) and, for the target sets, through a gather of precomputed ``s``.

:func:`paired_change` applies the **same** resampled image indices to the embeddings before and
after finetuning, so the interval of ``after - before`` reflects only how the embedding
changed, not which images happened to be drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from analyze.association.measures import MIN_SET_SIZE, ZERO_STD_TOLERANCE, unit_sets
from analyze.association.permutation import check_test_options
from extract.errors import UserError

#: Set names each measure needs, in the order their resamples are drawn.
MEASURE_SETS = {"effect_size": ("X", "Y", "A", "B"), "association": ("W", "A", "B")}

#: Work elements per chunk of replicates (~32 MiB float64).
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class BootstrapInterval:
    """A point estimate with its percentile bootstrap interval."""

    measure: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    n_bootstrap: int
    seed: int

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


@dataclass(frozen=True)
class PairedChange:
    """Change of a measure from before to after finetuning on the same images.

    ``change = after - before``; ``ci_low, ci_high`` is its paired percentile interval; the
    ``before_ci_*`` / ``after_ci_*`` intervals come from the same replicates.
    """

    measure: str
    change: float
    ci_low: float
    ci_high: float
    before: float
    after: float
    before_ci_low: float
    before_ci_high: float
    after_ci_low: float
    after_ci_high: float
    confidence: float
    n_bootstrap: int
    seed: int
    set_sizes: dict

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


def resolve_measure(sets: Mapping, measure: str | None) -> str:
    """The measure named by ``measure``, or inferred from the keys of ``sets`` when None."""
    if measure is None:
        matches = [name for name, keys in MEASURE_SETS.items() if set(keys) == set(sets)]
        if not matches:
            raise UserError(f"Embedding sets {sorted(sets)} match no measure; pass keys "
                            "X, Y, A, B (effect size) or W, A, B (association).")
        return matches[0]
    if measure not in MEASURE_SETS:
        raise UserError(f"measure={measure!r} is unknown; pass one of {tuple(MEASURE_SETS)}.")
    if set(sets) != set(MEASURE_SETS[measure]):
        raise UserError(f"Measure {measure!r} needs embedding sets {MEASURE_SETS[measure]} but "
                        f"got {tuple(sets)}; rename or add the sets.")
    return measure


def check_interval_options(*, n_bootstrap, confidence, seed) -> None:
    check_test_options(n_permutations=1, seed=seed, exact="auto", alternative="greater")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) \
            or n_bootstrap < 1:
        raise UserError(f"n_bootstrap={n_bootstrap!r} is invalid; pass a positive integer such "
                        "as 2000.")
    if not isinstance(confidence, (float, int, np.floating)) or not 0 < confidence < 1:
        raise UserError(f"confidence={confidence!r} is invalid; pass a level in (0, 1) such as "
                        "0.95.")


def _resample_indices(sizes: Mapping[str, int], names, n_bootstrap: int, seed: int) -> dict:
    """Seeded with-replacement row indices per set, shape (n_bootstrap, size), drawn in order."""
    rng = np.random.default_rng(seed)
    return {name: rng.integers(0, sizes[name], size=(n_bootstrap, sizes[name]))
            for name in names}


def _centroids(unit: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean unit vector of each resample: (n_rows, d) and (m, k) indices -> (m, d)."""
    n_rows = unit.shape[0]
    n_resamples, k = index.shape
    offsets = index + n_rows * np.arange(n_resamples)[:, None]
    counts = np.bincount(offsets.ravel(), minlength=n_resamples * n_rows)
    return counts.reshape(n_resamples, n_rows) @ unit / k


def _effect_size_replicates(unit: dict, index: dict) -> np.ndarray:
    direction = _centroids(unit["A"], index["A"]) - _centroids(unit["B"], index["B"])
    # s of every target image under each replicate's (A, B), then gathered per resample.
    s_x = np.take_along_axis((unit["X"] @ direction.T).T, index["X"], axis=1)
    s_y = np.take_along_axis((unit["Y"] @ direction.T).T, index["Y"], axis=1)
    spread = np.concatenate([s_x, s_y], axis=1).std(axis=1, ddof=1)
    difference = s_x.mean(axis=1) - s_y.mean(axis=1)
    degenerate = spread <= ZERO_STD_TOLERANCE
    return np.where(degenerate, np.nan, difference / np.where(degenerate, 1.0, spread))


def _association_replicates(unit: dict, index: dict) -> np.ndarray:
    direction = _centroids(unit["A"], index["A"]) - _centroids(unit["B"], index["B"])
    return np.einsum("md,md->m", _centroids(unit["W"], index["W"]), direction)


_REPLICATE_FUNCTIONS = {"effect_size": _effect_size_replicates,
                        "association": _association_replicates}


def _measure_over(unit: dict, measure: str, index: dict) -> np.ndarray:
    """The measure under each row of the resample indices, in chunks of replicates."""
    n_total = sum(array.shape[0] for array in unit.values())
    n_features = next(iter(unit.values())).shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // (n_total + n_features))
    n_replicates = next(iter(index.values())).shape[0]
    function = _REPLICATE_FUNCTIONS[measure]
    return np.concatenate([
        function(unit, {name: rows[start:start + chunk] for name, rows in index.items()})
        for start in range(0, n_replicates, chunk)])


def _point_estimate(unit: dict, measure: str) -> float:
    identity = {name: np.arange(array.shape[0])[None, :] for name, array in unit.items()}
    value = float(_measure_over(unit, measure, identity)[0])
    if np.isnan(value):
        warnings.warn("All per-image associations s(w, A, B) of X and Y are identical, so the "
                      "effect size is undefined and returned as NaN.", RuntimeWarning,
                      stacklevel=3)
    return value


def _replicates(unit: dict, measure: str, n_bootstrap: int, seed: int) -> np.ndarray:
    sizes = {name: array.shape[0] for name, array in unit.items()}
    index = _resample_indices(sizes, MEASURE_SETS[measure], n_bootstrap, seed)
    return _measure_over(unit, measure, index)


def _percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size < replicates.size:
        warnings.warn(f"{replicates.size - finite.size} of {replicates.size} bootstrap "
                      "replicates are undefined (all associations equal) and were left out.",
                      RuntimeWarning, stacklevel=3)
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_replicates(sets: Mapping[str, object], *, measure: str | None = None,
                         n_bootstrap: int = 2000, seed: int = 0) -> np.ndarray:
    """The measure on ``n_bootstrap`` seeded within-set resamples of ``sets``.

    Parameters
    ----------
    sets : mapping of set name -> array-like of shape (n_name, d)
        Keys ``X, Y, A, B`` or ``W, A, B`` (see the module docstring), at least 2 rows each.
    measure : {"effect_size", "association"} or None
        None infers it from the keys.
    n_bootstrap : int, default 2000
    seed : int, default 0

    Returns
    -------
    ndarray of shape (n_bootstrap,), float64; NaN where a replicate's effect size is undefined.
    """
    measure = resolve_measure(sets, measure)
    check_interval_options(n_bootstrap=n_bootstrap, confidence=0.5, seed=seed)
    unit = unit_sets(sets, min_rows=MIN_SET_SIZE)
    return _replicates(unit, measure, n_bootstrap, seed)


def set_bootstrap_ci(sets: Mapping[str, object], *, measure: str | None = None,
                 n_bootstrap: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> BootstrapInterval:
    """Point estimate and percentile bootstrap interval of an association measure.

    Resamples images with replacement within each set (``X, Y, A, B`` for the effect size,
    ``W, A, B`` for the association); see :func:`bootstrap_replicates` for the parameters.
    Undefined replicates (zero spread) are left out with a ``RuntimeWarning``.

    Returns
    -------
    BootstrapInterval
    """
    measure = resolve_measure(sets, measure)
    check_interval_options(n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    unit = unit_sets(sets, min_rows=MIN_SET_SIZE)
    replicates = _replicates(unit, measure, n_bootstrap, seed)
    low, high = _percentile_interval(replicates, confidence)
    return BootstrapInterval(measure=measure, estimate=_point_estimate(unit, measure),
                             ci_low=low, ci_high=high, confidence=float(confidence),
                             n_bootstrap=int(n_bootstrap), seed=int(seed))


def _check_paired(before: Mapping, after: Mapping) -> tuple[dict, dict]:
    """Validate both stages; return their unit-row sets under the original names."""
    if set(before) != set(after):
        raise UserError(f"The before sets {sorted(before)} and after sets {sorted(after)} "
                        "differ; embed the same concept sets at both stages.")
    stages = []
    for stage_name, stage in (("before", before), ("after", after)):
        unit = unit_sets({f"{name} ({stage_name})": value for name, value in stage.items()},
                         min_rows=MIN_SET_SIZE)
        stages.append({name: unit[f"{name} ({stage_name})"] for name in stage})
    for name in before:
        n_before, n_after = stages[0][name].shape[0], stages[1][name].shape[0]
        if n_before != n_after:
            raise UserError(f"Set {name} has {n_before} images before and {n_after} after "
                            "finetuning; embed the same images in the same order at both stages.")
    return stages[0], stages[1]


def paired_change(before: Mapping[str, object], after: Mapping[str, object], *,
                  measure: str | None = None, n_bootstrap: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> PairedChange:
    """Change of an association measure from before to after finetuning, paired over images.

    Row ``i`` of each set must be the same image in ``before`` and ``after`` (the feature
    dimension may differ between the two). Each bootstrap replicate draws one set of row
    indices per set and applies it to both stages, so the interval is that of the paired
    difference ``after - before``.

    Parameters
    ----------
    before, after : mapping of set name -> array-like of shape (n_name, d_stage)
        Keys ``X, Y, A, B`` (effect size) or ``W, A, B`` (association), identical in both.
    measure : {"effect_size", "association"} or None
        None infers it from the keys.
    n_bootstrap : int, default 2000
    confidence : float, default 0.95
    seed : int, default 0

    Returns
    -------
    PairedChange
        ``change > 0`` means the measure grew with finetuning (e.g. X moved towards A).
    """
    measure = resolve_measure(before, measure)
    resolve_measure(after, measure)
    check_interval_options(n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    before_unit, after_unit = _check_paired(before, after)
    sizes = {name: int(array.shape[0]) for name, array in before_unit.items()}
    # One draw of row indices applied to both stages: this is what pairs the bootstrap.
    index = _resample_indices(sizes, MEASURE_SETS[measure], n_bootstrap, seed)
    before_reps = _measure_over(before_unit, measure, index)
    after_reps = _measure_over(after_unit, measure, index)
    before_value = _point_estimate(before_unit, measure)
    after_value = _point_estimate(after_unit, measure)
    low, high = _percentile_interval(after_reps - before_reps, confidence)
    before_low, before_high = _percentile_interval(before_reps, confidence)
    after_low, after_high = _percentile_interval(after_reps, confidence)
    return PairedChange(measure=measure, change=after_value - before_value, ci_low=low,
                        ci_high=high, before=before_value, after=after_value,
                        before_ci_low=before_low, before_ci_high=before_high,
                        after_ci_low=after_low, after_ci_high=after_high,
                        confidence=float(confidence), n_bootstrap=int(n_bootstrap),
                        seed=int(seed), set_sizes=sizes)


def paired_amplification(before: Mapping[str, object], after: Mapping[str, object], *,
                         n_bootstrap: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> BootstrapInterval:
    """``|d after| - |d before|`` of a WEAT / iEAT test, paired over images (Ranjit's finding 3b).

    The same resampled rows enter both stages, as in :func:`paired_change`; positive means the
    effect size moved away from 0 with finetuning, whatever its sign.

    Parameters
    ----------
    before, after : mapping with keys ``X, Y, A, B`` -> array-like of shape (n_name, d_stage)
        The same images in the same order at both stages.
    n_bootstrap : int, default 2000
    confidence : float, default 0.95
    seed : int, default 0

    Returns
    -------
    BootstrapInterval
        ``measure = "amplification"``.
    """
    resolve_measure(before, "effect_size")
    resolve_measure(after, "effect_size")
    check_interval_options(n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    before_unit, after_unit = _check_paired(before, after)
    sizes = {name: int(array.shape[0]) for name, array in before_unit.items()}
    index = _resample_indices(sizes, MEASURE_SETS["effect_size"], n_bootstrap, seed)
    replicates = np.abs(_measure_over(after_unit, "effect_size", index)) \
        - np.abs(_measure_over(before_unit, "effect_size", index))
    estimate = abs(_point_estimate(after_unit, "effect_size")) \
        - abs(_point_estimate(before_unit, "effect_size"))
    low, high = _percentile_interval(replicates, confidence)
    return BootstrapInterval(measure="amplification", estimate=float(estimate), ci_low=low,
                             ci_high=high, confidence=float(confidence),
                             n_bootstrap=int(n_bootstrap), seed=int(seed))
