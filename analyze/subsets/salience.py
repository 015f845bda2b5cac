"""The three sets of the salience measure (docs/science.md section 4).

- **aligned**: rows with ``y == s`` (cells ``(y=1, s=1)`` and ``(y=0, s=0)``), label ``y``,
  50% positives (the larger cell subsampled to the smaller);
- **inverted**: rows with ``y != s`` (cells ``(y=1, s=0)`` and ``(y=0, s=1)``), balanced
  the same way. The released code built the aligned set under both names; this one is
  built from the opposite cells;
- **test**: four equal quadrants ``y x s`` from ``test_pool``, each subsampled to the
  smallest.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from analyze.subsets.core import (
    CELL_KEYS,
    CellKey,
    TargetSpec,
    SubsetSplit,
    cell_label,
    check_pool,
    counts_of,
    draw_cells,
    draw_split,
    pool_cells,
    take,
)
from extract.errors import UserError

ARRANGEMENTS = {"aligned": ((1, 1), (0, 0)), "inverted": ((1, 0), (0, 1))}  # (positive cell, negative cell)


@dataclass(frozen=True)
class SalienceSets(TargetSpec):
    """Aligned, inverted and four-quadrant test sets for ``target`` (y) and ``sensitive`` (s).

    ``indices`` and ``split_indices`` return the set named by ``arrangement`` so that one
    spec value identifies one training set in a result record; :meth:`aligned`,
    :meth:`inverted` and :meth:`test` give each set regardless of it. Training sets are
    split like :class:`~analyze.subsets.balanced.Correlation` (per label half), ``n``
    keeps ``ceil(n/2)`` positives and ``floor(n/2)`` negatives.
    """

    _: KW_ONLY
    arrangement: str = "aligned"
    n: int | None = None
    seed: int = 0
    pool: str = "train"
    test_pool: str = "test"
    val_fraction: float = 0.2
    kind: ClassVar[str] = "salience"

    def __post_init__(self):
        if self.arrangement not in ARRANGEMENTS:
            raise UserError(f"arrangement {self.arrangement!r} is unknown; use one of {sorted(ARRANGEMENTS)}.")
        check_pool(self.test_pool)
        self._check_common()

    def split_indices(self, meta: pd.DataFrame) -> SubsetSplit:
        """Training and validation positions of the ``arrangement`` set (disjoint, sorted)."""
        pos_key, neg_key = ARRANGEMENTS[self.arrangement]
        columns = (self.target, self.sensitive)
        cells = pool_cells(meta, columns, self.pool)
        cells = {pos_key: cells[pos_key], neg_key: cells[neg_key]}
        caps = counts_of(cells)
        smaller = min(caps, key=caps.get)
        if caps[smaller] == 0:
            raise UserError(
                f"cell {cell_label(columns, smaller)} has 0 rows in the {self.pool} pool, so the {self.arrangement} "
                "salience set is empty; choose another attribute or pool."
            )

        def demand(total: int) -> dict[CellKey, int]:
            return {pos_key: (total + 1) // 2, neg_key: total // 2}

        limit = (
            f"cell {cell_label(columns, smaller)} has {caps[smaller]} rows in the {self.pool} pool, which makes the "
            f"{self.arrangement} set {2 * caps[smaller]} rows"
        )
        perms = draw_cells(cells, demand(2 * caps[smaller]), seed=self.seed, stream=f"{self.kind}-{self.arrangement}")
        return draw_split(demand, perms, 2 * caps[smaller], n=self.n, val_fraction=self.val_fraction, step=2, limit=limit)

    def aligned_split(self, meta: pd.DataFrame) -> SubsetSplit:
        return replace(self, arrangement="aligned").split_indices(meta)

    def inverted_split(self, meta: pd.DataFrame) -> SubsetSplit:
        return replace(self, arrangement="inverted").split_indices(meta)

    def aligned(self, meta: pd.DataFrame) -> np.ndarray:
        """Training positions of the aligned set (every row has ``y == s``)."""
        return self.aligned_split(meta).train

    def inverted(self, meta: pd.DataFrame) -> np.ndarray:
        """Training positions of the inverted set (every row has ``y != s``)."""
        return self.inverted_split(meta).train

    def test(self, meta: pd.DataFrame) -> np.ndarray:
        """Positions of the four-quadrant test set: ``q`` rows from each ``(y, s)`` cell."""
        columns = (self.target, self.sensitive)
        cells = pool_cells(meta, columns, self.test_pool)
        caps = counts_of(cells)
        smallest = min(caps, key=caps.get)
        if caps[smallest] == 0:
            raise UserError(
                f"cell {cell_label(columns, smallest)} has 0 rows in the {self.test_pool} pool, so the four-quadrant "
                "salience test set is empty; choose another attribute or test_pool."
            )
        quadrants = {key: caps[smallest] for key in CELL_KEYS}
        return take(draw_cells(cells, quadrants, seed=self.seed, stream=f"{self.kind}-test"), quadrants)
