"""Cosine primitives and the WEAT / iEAT effect size over image embeddings [R].

Every function takes embedding arrays with one image per row, shape ``(n_images, n_features)``,
of any real dtype (float16 and float32 stores included), and computes in float64. Rows are
scaled to unit length first, so only directions matter, as in the cosine similarity of the
iEAT reference (``ryansteed/weat`` ``Test``) and of Ranjit et al.'s ``cosine_exp.py``.

Because ``mean_a cos(w, a) = w_hat . mean_a a_hat``, every block mean of cosines reduces to a
dot product with a set's mean unit vector (its "centroid"): the association of all ``n``
images costs ``O(n d)`` rather than the ``O(n m d)`` of a full cosine matrix.

Sign convention used throughout: the per-image association ``s(w, A, B)`` is positive when
``w`` lies closer to the attribute set ``A`` than to ``B``; the effect size is positive when
the target set ``X`` is more associated with ``A`` (and ``Y`` with ``B``) than the other way.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from extract.errors import UserError

#: Fewest images a set may have in a statistical test (effect size, p-value, interval): with
#: one image neither a spread nor a resample exists.
MIN_SET_SIZE = 2

#: Standard deviations at or below this count as zero: ``s`` values lie in [-2, 2] and their
#: float64 rounding noise is ~1e-16, so anything this small is a degenerate set, not a signal.
ZERO_STD_TOLERANCE = 1e-12


def check_embeddings(name: str, embeddings, *, min_rows: int = 1) -> np.ndarray:
    """Validate one embedding set and return it as a float64 copy of shape ``(n, d)``.

    Raises :class:`~extract.errors.UserError` (one sentence) for a non-numeric dtype, a shape
    other than 2-D, fewer than ``min_rows`` rows, no features, or a NaN / infinite entry.
    """
    array = np.asarray(embeddings)
    if array.dtype.kind not in "fiu":
        raise UserError(f"Embedding set {name} has dtype {array.dtype}; pass a real-valued "
                        "(n_images, n_features) array.")
    if array.ndim != 2:
        raise UserError(f"Embedding set {name} has shape {array.shape}; pass a 2-D "
                        "(n_images, n_features) array with one image per row.")
    if array.shape[0] < min_rows:
        raise UserError(f"Embedding set {name} has {array.shape[0]} image(s) but this measure "
                        f"needs at least {min_rows}; add images to that concept set.")
    if array.shape[1] == 0:
        raise UserError(f"Embedding set {name} has no features; pass embeddings with at least "
                        "one column.")
    array = array.astype(np.float64)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise UserError(f"Embedding set {name} contains NaN or infinite values (first in row "
                        f"{row}); re-extract those embeddings or drop the image.")
    return array


def unit_rows(name: str, array: np.ndarray) -> np.ndarray:
    """Scale each row of a validated float64 array to unit L2 norm; an all-zero row stays zero.

    A zero vector has no direction: as in ``sklearn.metrics.pairwise.cosine_similarity`` (which
    the iEAT reference and Ranjit et al.'s ``cosine_exp.py`` call) its cosine similarity with
    every vector, itself included, is 0. Such rows occur in practice (a ReLU network whose
    pooled features are all zero for an image), so they are kept, with a ``RuntimeWarning``
    naming the set, rather than stopping a long run. Functions that average over pairs of
    distinct images count a zero row's self-similarity as 0 (:func:`self_similarities`).
    """
    norms = np.linalg.norm(array, axis=1)
    zero = ~(norms > 0)
    if zero.any():
        warnings.warn(f"Embedding set {name} has {int(zero.sum())} all-zero row(s) (first: row "
                      f"{int(np.flatnonzero(zero)[0])}); their cosine similarity with every image "
                      "is taken as 0, as sklearn's cosine_similarity does.", RuntimeWarning,
                      stacklevel=3)
    return array / np.where(zero, 1.0, norms)[:, None]


def self_similarities(unit: np.ndarray) -> np.ndarray:
    """``cos(u_i, u_i)`` of each unit row: 1, or 0 for an all-zero row (:func:`unit_rows`)."""
    return np.einsum("nd,nd->n", unit, unit)


def unit_sets(sets: Mapping[str, object], *, min_rows: int = 1) -> dict[str, np.ndarray]:
    """Validate named embedding sets that must share one feature space; return unit rows.

    Parameters
    ----------
    sets : mapping of name -> array-like of shape (n_name, d)
        The names appear in error messages ("X", "object_with_a", ...).
    min_rows : int
        Fewest rows each set needs.

    Returns
    -------
    dict of name -> ndarray of shape (n_name, d), float64, rows of unit length.
    """
    checked = {name: check_embeddings(name, value, min_rows=min_rows)
               for name, value in sets.items()}
    widths = {name: array.shape[1] for name, array in checked.items()}
    if len(set(widths.values())) > 1:
        described = ", ".join(f"{name}: {width}" for name, width in widths.items())
        raise UserError(f"The embedding sets have different feature dimensions ({described}); "
                        "embed every set with the same backbone and layer.")
    return {name: unit_rows(name, array) for name, array in checked.items()}


def cosine_matrix(X, Y) -> np.ndarray:
    """Cosine similarity of every row of ``X`` with every row of ``Y``.

    Parameters
    ----------
    X : array-like of shape (n_x, d)
    Y : array-like of shape (n_y, d)

    Returns
    -------
    ndarray of shape (n_x, n_y), float64, entries in [-1, 1].
    """
    unit = unit_sets({"X": X, "Y": Y})
    return unit["X"] @ unit["Y"].T


def mean_cosine(U, V) -> float:
    """Block mean ``mean_{u in U, v in V} cos(u, v)`` ("inter-class similarity" in [R]).

    It is the expectation of the original code's resampled estimate
    (``cosine_exp.py:inter_class_similarity``) and needs no resampling.
    """
    unit = unit_sets({"U": U, "V": V})
    return float(unit["U"].mean(axis=0) @ unit["V"].mean(axis=0))


def mean_within_cosine(U) -> float:
    """Mean cosine over all pairs of distinct rows of ``U`` ("intra-class similarity" in [R]).

    Equals the off-diagonal mean of ``cosine_matrix(U, U)``, the expectation of the original
    split-half estimate (``cosine_exp.py:intra_class_similarity``); needs at least 2 rows.
    """
    unit = unit_sets({"U": U}, min_rows=2)["U"]
    n_rows = unit.shape[0]
    total = unit.sum(axis=0)
    # sum_{i,j} cos(u_i, u_j) = |sum_i u_i|^2; the diagonal contributes 1 per non-zero row.
    return float((total @ total - self_similarities(unit).sum()) / (n_rows * (n_rows - 1)))


def association_from_unit(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``s(w, A, B)`` for unit-row float64 arrays (no validation); shape ``(len(W),)``."""
    return W @ (A.mean(axis=0) - B.mean(axis=0))


def association(W, A, B) -> np.ndarray:
    """Per-image association ``s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b)``.

    Parameters
    ----------
    W : array-like of shape (n_w, d)
        Target images.
    A, B : array-like of shape (n_a, d) and (n_b, d)
        Attribute (group) images.

    Returns
    -------
    ndarray of shape (n_w,), float64, values in [-2, 2]; positive means closer to ``A``.
    """
    unit = unit_sets({"W": W, "A": A, "B": B})
    return association_from_unit(unit["W"], unit["A"], unit["B"])


def effect_size_from_associations(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """WEAT effect size from per-image associations of the two target sets.

    ``d = (mean(s_x) - mean(s_y)) / std(concat(s_x, s_y), ddof=1)``. Returns NaN with a
    ``RuntimeWarning`` when the pooled standard deviation is (numerically) zero.
    """
    spread = float(np.concatenate([s_x, s_y]).std(ddof=1))
    if not spread > ZERO_STD_TOLERANCE:
        warnings.warn("All per-image associations s(w, A, B) of X and Y are identical, so the "
                      "effect size is undefined and returned as NaN.", RuntimeWarning,
                      stacklevel=3)
        return float("nan")
    return float((s_x.mean() - s_y.mean()) / spread)


def effect_size(X, Y, A, B) -> float:
    """WEAT / iEAT effect size of targets ``X``, ``Y`` on attributes ``A``, ``B``.

    ``d = (mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)) / std_{w in X u Y} s(w, A, B)``
    with the **sample** standard deviation (``ddof=1``) over the pooled targets, exactly as
    ``Test.effect_size`` of the iEAT reference (``ryansteed/weat``: ``np.std(s_AB, ddof=1)``).
    ``|X|`` and ``|Y|`` may differ.

    Parameters
    ----------
    X, Y : array-like of shape (n_x, d) and (n_y, d)
        Target images, at least 2 each.
    A, B : array-like of shape (n_a, d) and (n_b, d)
        Attribute images, at least 2 each.

    Returns
    -------
    float
        Positive when ``X`` is closer to ``A`` (relative to ``B``) than ``Y`` is; bounded by
        about 2 in absolute value. NaN with a ``RuntimeWarning`` when every ``s`` is equal.
    """
    unit = unit_sets({"X": X, "Y": Y, "A": A, "B": B}, min_rows=MIN_SET_SIZE)
    direction = unit["A"].mean(axis=0) - unit["B"].mean(axis=0)
    return effect_size_from_associations(unit["X"] @ direction, unit["Y"] @ direction)
