"""Attribute presets, the seeded attribute sampler and the split assignment of the avatars.

A preset gives, for every target ``t``, the pair ``(P(t=1 | s=1), P(t=1 | s=0))`` where
``s`` is the sensitive attribute (``dark_skin``). Equal entries make ``t`` independent
of ``s``; a larger first entry makes them positively correlated. Targets are drawn
independently of each other given ``s``. :func:`expected_rates` turns a preset into base
rates and phi coefficients for validation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from extract.datasets.avatars.render import ADDED_TARGETS, ATTRIBUTES, FIRST_TARGETS, SENSITIVE, TARGETS
from extract.errors import UserError

# Streams of the seed: each random choice has its own, so adding one never shifts another.
STREAM_ATTRIBUTES = 0
STREAM_IMAGES = 1
STREAM_SPLIT = 2
STREAM_SIGNAL_ATTRIBUTES = 3
STREAM_SIGNAL_IMAGES = 4

SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}

# (P(t=1 | dark_skin=1), P(t=1 | dark_skin=0)). The correlations are design choices that
# give CelebA-like variety (some positive, some negative, some none, of several strengths);
# they are not claims about people.
_CELEBA_LIKE = {
    "hat": (0.20, 0.20),  # independent
    "eyewear": (0.30, 0.15),  # positive
    "facial_hair": (0.20, 0.40),  # negative
    "long_hair": (0.30, 0.55),  # negative
    "blond_hair": (0.05, 0.40),  # strongly negative
    "smiling": (0.50, 0.50),  # independent
    "raised_eyebrows": (0.45, 0.25),  # positive
    "closed_eyes": (0.25, 0.25),  # independent
    "blazer": (0.40, 0.20),  # positive
    "dark_clothes": (0.25, 0.45),  # negative
    "backdrop": (0.40, 0.25),  # positive
    "hoodie": (0.40, 0.20),  # positive
    "gray_hair": (0.15, 0.35),  # negative
    "eyepatch": (0.30, 0.15),  # positive
}


def _independent_of(preset: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Same base rates (at a sensitive rate of 0.5), with every correlation removed."""
    return {t: ((p1 + p0) / 2, (p1 + p0) / 2) for t, (p1, p0) in preset.items()}


PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "celeba-like": _CELEBA_LIKE,
    "independent": _independent_of(_CELEBA_LIKE),
    "balanced": {t: (0.5, 0.5) for t in TARGETS},
}
DEFAULT_PRESET = "celeba-like"


def resolve_preset(preset: str | Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """A preset name or a custom ``{target: (p_if_sensitive, p_if_not)}`` mapping, checked."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise UserError(f"unknown avatar preset {preset!r}; choose one of {sorted(PRESETS)}.")
        return dict(PRESETS[preset])
    spec = {str(t): tuple(map(float, pair)) for t, pair in dict(preset).items()}
    if set(spec) != set(TARGETS):
        raise UserError(f"a custom avatar preset must give exactly the targets {list(TARGETS)}; got {sorted(spec)}.")
    for target, pair in spec.items():
        if len(pair) != 2 or not all(0.0 <= p <= 1.0 for p in pair):
            raise UserError(
                f"the avatar preset entry for {target!r} must be two probabilities "
                "(P(t=1|s=1), P(t=1|s=0)) in [0, 1]."
            )
    return {t: spec[t] for t in TARGETS}


def check_sensitive_rate(sensitive_rate: float) -> float:
    """The base rate of the sensitive attribute, strictly between 0 and 1."""
    rate = float(sensitive_rate)
    if not 0.0 < rate < 1.0:
        raise UserError(f"sensitive_rate must lie strictly between 0 and 1 (got {sensitive_rate}).")
    return rate


def expected_rates(preset: str | Mapping, *, sensitive_rate: float = 0.5) -> pd.DataFrame:
    """Base rate and phi coefficient with the sensitive attribute implied by a preset.

    Returns
    -------
    DataFrame indexed by target, columns ``p_if_sensitive`` (P(t=1|s=1)), ``p_if_not``
    (P(t=1|s=0)), ``base_rate`` (P(t=1)) and ``phi`` (Pearson correlation of the two
    binary variables; positive when t=1 is more frequent among s=1).
    """
    spec = resolve_preset(preset)
    r = check_sensitive_rate(sensitive_rate)
    rows = []
    for target, (p1, p0) in spec.items():
        base = r * p1 + (1 - r) * p0
        denom = np.sqrt(r * (1 - r) * base * (1 - base))
        phi = r * (1 - r) * (p1 - p0) / denom if denom > 0 else 0.0
        rows.append({"target": target, "p_if_sensitive": p1, "p_if_not": p0, "base_rate": base, "phi": phi})
    return pd.DataFrame(rows).set_index("target")


def sample_attributes(
    n: int, *, seed: int, preset: str | Mapping = DEFAULT_PRESET, sensitive_rate: float = 0.5, stream: int = STREAM_ATTRIBUTES
) -> np.ndarray:
    """Draw the binary attributes of ``n`` avatars (no rendering).

    The sensitive attribute is Bernoulli(``sensitive_rate``); each target is then
    Bernoulli(``P(t=1|s)``) from the preset, independently of the other targets.

    Returns
    -------
    ndarray of shape (n, len(ATTRIBUTES)), int8
        Columns in :data:`ATTRIBUTES` order (sensitive first).
    """
    spec = resolve_preset(preset)
    rate = check_sensitive_rate(sensitive_rate)
    # One row of uniforms per avatar (row-major draws), so the first rows of a larger
    # dataset with the same seed are the rows of a smaller one. The targets added later
    # (ADDED_TARGETS) draw from their own sub-stream, so the first targets' labels of a seed
    # are those of the generator before they were added.
    first = np.random.default_rng([seed, stream]).random((n, 1 + len(FIRST_TARGETS)))
    added = np.random.default_rng([seed, stream, 1]).random((n, len(ADDED_TARGETS)))
    uniforms = np.concatenate([first, added], axis=1)
    sensitive = uniforms[:, 0] < rate
    out = np.empty((n, len(ATTRIBUTES)), dtype=np.int8)
    out[:, ATTRIBUTES.index(SENSITIVE)] = sensitive
    for target in TARGETS:
        p_if_sensitive, p_if_not = spec[target]
        col = ATTRIBUTES.index(target)
        out[:, col] = uniforms[:, col] < np.where(sensitive, p_if_sensitive, p_if_not)
    return out


def assign_splits(n: int, *, seed: int) -> np.ndarray:
    """A seeded 60/20/20 train/val/test split (exact counts, rounded), as a str array."""
    rng = np.random.default_rng([seed, STREAM_SPLIT])
    n_train = int(round(SPLIT_FRACTIONS["train"] * n))
    n_val = int(round(SPLIT_FRACTIONS["val"] * n))
    labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val))
    return labels[rng.permutation(n)]
