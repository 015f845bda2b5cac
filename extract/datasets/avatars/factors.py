"""Generalist pretraining labels of an avatar cache: the renderer's nuisance factors, binned.

Besides its binary attributes, every avatar is drawn from a vector of uniform nuisance
draws (:data:`extract.datasets.avatars.render.NUISANCE_FIELDS`): which hat, hair style,
glasses, beard, mouth, eyebrows and eyes *within* the class its attributes pick, the
clothing type, the clothing, hat and graphic colours, the background colour and the
position jitter. Those draws come from the image's own RNG (``[seed, STREAM_IMAGES,
index]``), never from the attributes, so they can be recomputed from the cache's seed and,
binned, serve as many-class labels that teach a base general visual features (shapes of
eyes, mouths, hair, clothes; colours; position) while being **independent of every binary
attribute by construction**: no such label, nor any combination of them, determines a
target or the sensitive attribute.

A factor's label is ``floor(u * bins)`` for its uniform draw ``u``. The bins are chosen so
that the label picks the part within each class (e.g. ``eyes``: 6 bins, so the 3 open-eye
and the 2 closed-eye types each cover whole bins) and carry no class information. Parts
that are not drawn (the hat of a hatless avatar, the graphic of a plain shirt) leave their
label as unobservable noise, which a model can only predict at chance.

``skin`` (the shade within the skin-tone group) is not offered: predicting it would teach
every base, controls included, the sensitive attribute's pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from extract.datasets.avatars.render import NUISANCE_FIELDS, draw_nuisance, nuisance_rng
from extract.datasets.avatars.spec import STREAM_IMAGES
from extract.errors import UserError

# factor (a nuisance field) -> number of bins of its uniform draw
FACTOR_BINS: dict[str, int] = {
    "hat": 7,  # the 7 hats
    "hair": 10,  # 10 long styles; 21 short ones, about 2 per bin
    "hair_color": 12,  # 3 blond and 4 other colours, each on whole bins
    "eyewear": 8,  # the 8 glasses
    "facial_hair": 7,  # the 7 beards and moustaches
    "mouth": 2,  # 2 smiles, 2 closed mouths
    "eyebrows": 6,  # 2 raised, 3 other
    "eyes": 6,  # 2 closed, 3 open
    "clothing": 6,  # 2 blazers, 6 other clothes (the hoodie is an attribute)
    "clothing_color": 4,  # 4 dark and 4 light colours of the clothes
    "hat_color": 14,
    "graphic": 11,  # the 11 shirt graphics
    "bg_hue": 6,
    "bg_saturation": 3,
    "bg_value": 3,
    "shift_x": 3,
    "shift_y": 3,
    "backdrop_hue": 4,  # the backdrop circle's hue, relative to the background's
}
GENERALIST_FACTORS: tuple[str, ...] = tuple(FACTOR_BINS)


def resolve_factors(factors: Sequence[str] | Mapping[str, int] | None) -> dict[str, int]:
    """``{factor: bins}`` for a list of factor names (bins from :data:`FACTOR_BINS`) or an
    explicit mapping; ``None`` or empty gives ``{}``."""
    if not factors:
        return {}
    if isinstance(factors, Mapping):
        spec = {str(k): v for k, v in factors.items()}
    else:
        names = [str(f) for f in factors]
        if len(set(names)) != len(names):
            raise UserError(f"the generalist factors {names} repeat a name; give each factor once.")
        spec = {f: FACTOR_BINS.get(f) for f in names}
    for name, bins in spec.items():
        if name == "skin":
            raise UserError("the factor 'skin' (shade within the skin-tone group) would teach every base the sensitive "
                            "attribute; leave it out.")
        if name not in FACTOR_BINS:
            raise UserError(f"unknown generalist factor {name!r}; choose from {list(FACTOR_BINS)}.")
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 2 <= bins <= 64:
            raise UserError(f"the generalist factor {name!r} needs an integer number of bins from 2 to 64 (got {bins!r}).")
    return {k: int(v) for k, v in spec.items()}


def factor_labels(adapter, factors: Sequence[str] | Mapping[str, int], rows=None) -> np.ndarray:
    """The binned nuisance factors of the avatars in ``adapter`` (a standard avatar cache).

    Parameters
    ----------
    adapter : AvatarAdapter
        A cache written by :func:`extract.datasets.avatars.render_dataset` (row ``i`` is
        image ``i`` of the generator's seed).
    factors : list of str or mapping
        Factor names (bins from :data:`FACTOR_BINS`) or ``{name: bins}``.
    rows : array of int, optional
        Row positions; default every row.

    Returns
    -------
    ndarray of shape (len(rows), len(factors)), int64
        Column ``j`` holds factor ``j``'s label in ``[0, bins_j)``.
    """
    spec = resolve_factors(factors)
    if not spec:
        raise UserError("no generalist factor given; pass at least one, e.g. clothing_color.")
    generator = getattr(adapter, "generator", None) or {}
    if getattr(adapter, "name", None) != "avatars" or "preset" not in generator or "seed" not in generator:
        raise UserError("generalist factors are defined for avatar caches written by `biastransfer avatars render` "
                        "only; use attributes alone for other data.")
    n = len(adapter.metadata())
    positions = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    seed = int(generator["seed"])
    columns = [NUISANCE_FIELDS.index(f) for f in spec]
    bins = np.array(list(spec.values()))
    draws = np.stack([draw_nuisance(nuisance_rng(seed, STREAM_IMAGES, int(i)))[columns] for i in positions]) \
        if len(positions) else np.empty((0, len(columns)))
    return np.minimum((draws * bins).astype(np.int64), bins - 1)


def _chi_square(labels: np.ndarray, values: np.ndarray, bins: int) -> tuple[float, int, int, int]:
    """Pearson's chi-square of the (label x value) table: (statistic, rows, columns, n), empty
    rows and columns dropped."""
    labels = np.asarray(labels, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    n = len(labels)
    table = np.zeros((bins, int(values.max()) + 1 if n else 1))
    np.add.at(table, (labels, values), 1)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    r, k = table.shape
    if n < 2 or r < 2 or k < 2:
        return 0.0, r, k, n
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    return float(((table - expected) ** 2 / expected).sum()), r, k, n


def dependence(labels: np.ndarray, values: np.ndarray, *, bins: int) -> float:
    """Bias-corrected Cramér's V (Bergsma 2013) between a factor label and a 0/1 column.

    0 for independence, 1 when one determines the other; the correction keeps the value of
    independent columns near 0 at large n, though sampling noise remains (about
    ``(2 (bins - 1))**0.25 / sqrt(n)``: 0.04 for 14 bins at n = 3,000, 0.13 at n = 300).
    """
    chi2, r, k, n = _chi_square(labels, values, bins)
    if r < 2 or k < 2:
        return 0.0
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    r_c, k_c = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denominator = min(k_c - 1, r_c - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else 0.0


def independence_p(labels: np.ndarray, values: np.ndarray, *, bins: int) -> float:
    """p-value of Pearson's chi-square test of independence of a factor label and a 0/1 column."""
    from scipy.stats import chi2 as chi2_distribution

    statistic, r, k, _ = _chi_square(labels, values, bins)
    if r < 2 or k < 2:
        return 1.0
    return float(chi2_distribution.sf(statistic, (r - 1) * (k - 1)))


__all__ = ["FACTOR_BINS", "GENERALIST_FACTORS", "dependence", "factor_labels", "independence_p", "resolve_factors"]
