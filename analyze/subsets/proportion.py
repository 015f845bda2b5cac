"""Subset kinds that keep (or set) proportions without label balance.

- :class:`Natural`: the pool as it is, subsampled to ``n`` (the sample-size grid, and the
  paper's "natural" condition).
- :class:`Skew`: ``P(s=1 | y=1) = P(s=0 | y=0) = p`` by subsampling the majority cell of
  each label; the label balance is whatever the cells allow.
- :class:`Underrepresentation`: label = A or B (rows with both excluded), a set share of
  A-only positives and a set share of positives.

All three split into training and validation parts composed exactly like the whole set
(nearest rounding) and keep ``n`` training rows composed the same way; for ``n >= 2`` the
training rows contain both classes (:func:`analyze.subsets.core.both_classes`).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np
import pandas as pd

from analyze.subsets.core import (
    CellKey,
    SpecBase,
    SubsetSplit,
    TargetSpec,
    binding_cell,
    both_classes,
    cell_label,
    check_unit,
    counts_of,
    draw_cells,
    draw_split,
    exact,
    largest_total,
    pool_cells,
    share_of,
)
from extract.errors import UserError


@dataclass(frozen=True)
class Natural(TargetSpec):
    """All pool rows with known ``target`` and ``sensitive``, optionally ``n`` of them.

    The training part and the ``n`` rows keep the pool's share of positives and, within
    each label, its share of ``s = 1`` (stratified, nearest rounding); ``n >= 2`` always
    keeps at least one row of each class. Largest feasible ``n``: the training total.
    """

    _: KW_ONLY
    n: int | None = None
    seed: int = 0
    pool: str = "train"
    val_fraction: float = 0.2
    kind: ClassVar[str] = "natural"

    def split_indices(self, meta: pd.DataFrame) -> SubsetSplit:
        """Training and validation positions (disjoint, sorted)."""
        _, cells, caps = self._pool_counts(meta)
        pos, neg = caps[1, 0] + caps[1, 1], caps[0, 0] + caps[0, 1]
        positive_share = Fraction(pos, pos + neg)
        s1_among_pos, s1_among_neg = Fraction(caps[1, 1], pos), Fraction(caps[0, 1], neg)

        def demand(total: int) -> dict[CellKey, int]:
            n_pos, n_neg = both_classes(total, positive_share)
            pos_s0, pos_s1 = share_of(n_pos, s1_among_pos)
            neg_s0, neg_s1 = share_of(n_neg, s1_among_neg)
            return {(1, 0): pos_s0, (1, 1): pos_s1, (0, 0): neg_s0, (0, 1): neg_s1}

        limit = f"the {self.pool} pool has {pos + neg} rows with known {self.target} and {self.sensitive}"
        perms = draw_cells(cells, demand(pos + neg), seed=self.seed, stream=self.kind)
        return draw_split(demand, perms, pos + neg, n=self.n, val_fraction=self.val_fraction, step=1, limit=limit)


@dataclass(frozen=True)
class Skew(TargetSpec):
    """The largest set with ``P(s=1 | y=1) = p`` and ``P(s=0 | y=0) = p``.

    Same sign convention as :class:`~analyze.subsets.balanced.Correlation`'s level, but the
    labels are not balanced: each label keeps its minority cell whole (where it can) and
    subsamples its majority cell. The paper's "skewz" puts 80% of positives in the *female*
    group for every attribute: with ``sensitive = "Male"`` (s=1 male) that is ``p = 0.2``;
    with a column that codes female as 1 it is ``p = 0.8``. ``n`` training rows keep the
    set's share of positives and ``p`` within each label.
    """

    p: float
    _: KW_ONLY
    n: int | None = None
    seed: int = 0
    pool: str = "train"
    val_fraction: float = 0.2
    kind: ClassVar[str] = "skew"

    def __post_init__(self):
        object.__setattr__(self, "p", check_unit("p", self.p))
        self._check_common()

    def split_indices(self, meta: pd.DataFrame) -> SubsetSplit:
        """Training and validation positions (disjoint, sorted)."""
        columns, cells, caps = self._pool_counts(meta)
        p = exact(self.p)

        def label_demand(y: int):
            def demand(total: int) -> dict[CellKey, int]:
                rest, k = share_of(total, p)  # k rows in the cell the level names for this label
                return {(1, 0): rest, (1, 1): k} if y == 1 else {(0, 1): rest, (0, 0): k}

            return demand

        sizes, limits = {}, []
        for y in (1, 0):
            sizes[y] = largest_total(label_demand(y), caps)
            key = binding_cell(label_demand(y), sizes[y], caps)
            limits.append(f"cell {cell_label(columns, key)} has {caps[key]} rows in the {self.pool} pool")
            if sizes[y] == 0:
                raise UserError(
                    f"p={self.p} is infeasible: {limits[-1]}, so the skewed set gets no rows with {self.target}={y}; "
                    "choose p nearer 0.5 or another pool."
                )
        positive_share = Fraction(sizes[1], sizes[1] + sizes[0])

        def demand(total: int) -> dict[CellKey, int]:
            n_pos, n_neg = both_classes(total, positive_share)
            return {**label_demand(1)(n_pos), **label_demand(0)(n_neg)}

        limit = f"{' and '.join(limits)}, which cap the skewed set at {sizes[1]} positives and {sizes[0]} negatives"
        perms = draw_cells(cells, demand(sizes[1] + sizes[0]), seed=self.seed, stream=self.kind)
        return draw_split(
            demand, perms, sizes[1] + sizes[0], n=self.n, val_fraction=self.val_fraction, step=1, limit=limit
        )


@dataclass(frozen=True)
class Underrepresentation(SpecBase):
    """Label = ``attr_a`` or ``attr_b``; rows with both are excluded (docs/science.md section 3).

    Cells: A-only ``(a=1, b=0)``, B-only ``(a=0, b=1)``, neither ``(0, 0)`` (negatives).
    A set of ``t`` rows has ``round(pos_prop * t)`` positives (at least one of each class
    for ``t >= 2``), of which ``round(share_a * positives)`` are A-only. The paper's set
    ``k`` is ``share_a = (10 - k) / 10`` with ``pos_prop = 0.5``. The whole set is the
    largest the pool allows at that composition; ``n`` training rows keep it.
    """

    attr_a: str
    attr_b: str
    share_a: float
    _: KW_ONLY
    n: int | None = None
    pos_prop: float = 0.5
    seed: int = 0
    pool: str = "train"
    val_fraction: float = 0.2
    kind: ClassVar[str] = "underrepresentation"

    def __post_init__(self):
        object.__setattr__(self, "share_a", check_unit("share_a", self.share_a))
        object.__setattr__(self, "pos_prop", check_unit("pos_prop", self.pos_prop, open_left=True, open_right=True))
        self._check_common()

    def split_indices(self, meta: pd.DataFrame) -> SubsetSplit:
        """Training and validation positions (disjoint, sorted)."""
        columns = (self.attr_a, self.attr_b)
        cells = pool_cells(meta, columns, self.pool)
        del cells[1, 1]  # images with both attributes are excluded
        caps = counts_of(cells)
        pos_prop, share_a = exact(self.pos_prop), exact(self.share_a)

        def demand(total: int) -> dict[CellKey, int]:
            n_pos, n_neg = both_classes(total, pos_prop)
            b_only, a_only = share_of(n_pos, share_a)
            return {(1, 0): a_only, (0, 1): b_only, (0, 0): n_neg}

        total = largest_total(demand, caps)
        key = binding_cell(demand, total, caps)
        limit = (
            f"cell {cell_label(columns, key)} has {caps[key]} rows in the {self.pool} pool, "
            f"which caps the set at {total} rows"
        )
        if total < 2:
            raise UserError(
                f"no underrepresentation set with share_a={self.share_a} and pos_prop={self.pos_prop} "
                f"can be built: {limit}; "
                "choose another pair, composition or pool."
            )
        perms = draw_cells(cells, demand(total), seed=self.seed, stream=self.kind)
        return draw_split(demand, perms, total, n=self.n, val_fraction=self.val_fraction, step=1, limit=limit)

    def labels(self, meta: pd.DataFrame) -> np.ndarray:
        """``A or B`` per row (``np.int8``): 1 if either is 1, 0 if both are 0, else -1."""
        a = meta[self.attr_a].to_numpy()
        b = meta[self.attr_b].to_numpy()
        out = np.full(len(meta), -1, np.int8)
        out[(a == 0) & (b == 0)] = 0
        out[(a == 1) | (b == 1)] = 1
        return out
