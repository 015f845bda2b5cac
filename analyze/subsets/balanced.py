"""Label- and group-balanced subset kinds: correlation levels, sub-selection, test resampling.

Sign convention (docs/science.md section 3, with ``y`` = target, ``s`` = sensitive, both 0/1):
the **level** ``c`` is ``P(s=1 | y=1) = P(s=0 | y=0)``. The "stereotypical" cells are
``(y=1, s=0)`` and ``(y=0, s=1)`` (``F+`` and ``M-`` when ``s`` = Male), the "counter" cells
are ``(y=0, s=0)`` and ``(y=1, s=1)``. So ``c = 0``: ``y <=> s = 0``; ``c = 0.5``: ``y`` and
``s`` independent; ``c = 1``: ``y <=> s = 1``. A set of ``2h`` rows has ``h`` positives and
``h`` negatives, ``h - r`` rows in each stereotypical cell and ``r = round_half_up(c * h)``
in each counter cell, hence also ``h`` rows per group and ``P(s=1 | y=1) = r / h``, the
level nearest to ``c`` that ``h`` allows (exact whenever ``c * h`` is an integer, e.g.
``c = k/10`` and ``h`` a multiple of 10). An odd total ``2h + 1`` adds one positive.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np
import pandas as pd

from analyze.subsets.core import (
    CellKey,
    SubsetSplit,
    TargetSpec,
    binding_cell,
    cell_label,
    check_count,
    check_pool,
    check_unit,
    draw_cells,
    draw_split,
    exact,
    fits,
    largest_total,
    natural_level,
    share_of,
    take,
    training_total,
)
from extract.errors import UserError


def balanced_demand(level: Fraction):
    """Cell counts of a balanced set of ``total`` rows at level ``P(s=1|y=1) = P(s=0|y=0)``."""

    def demand(total: int) -> dict[CellKey, int]:
        pos, neg = (total + 1) // 2, total // 2
        pos_s0, pos_s1 = share_of(pos, level)  # counter cell (1, 1) gets round(c * pos)
        neg_s1, neg_s0 = share_of(neg, level)  # counter cell (0, 0) gets round(c * neg)
        return {(1, 0): pos_s0, (1, 1): pos_s1, (0, 0): neg_s0, (0, 1): neg_s1}

    return demand


@dataclass(frozen=True)
class Correlation(TargetSpec):
    """A balanced finetuning set at correlation level ``level`` (module docstring: convention).

    The set takes ``L`` positives and ``L`` negatives, ``L`` = the smallest of the four
    cells in ``pool`` (the paper's rule: every level of an attribute has the same size), or
    ``size`` when given (then only the cells the level needs must hold it). It is split into
    a training part of ``2 * (L - round(val_fraction * L))`` rows composed at the level
    exactly (nearest rounding), and a validation part (the rest of each cell); ``n`` keeps
    that many training rows, composed the same way (``ceil(n/2)`` positives).

    Parameters
    ----------
    target, sensitive : str
        Binary metadata columns ``y`` and ``s``.
    level : float in [0, 1]
        ``P(s=1 | y=1) = P(s=0 | y=0)``.
    n : int >= 2, optional
        Training rows to keep; the largest feasible value is the training total.
    size : int >= 1, optional
        Positives (= negatives) of the whole set before the split; default ``L``.
    seed : int
        Seeds ``np.random.default_rng``; same seed, same rows.
    pool : {"train", "val", "test", "all"}
        The metadata split the rows come from.
    val_fraction : float in [0, 1)
        Share of each label half held out for validation.
    """

    level: float
    _: KW_ONLY
    n: int | None = None
    size: int | None = None
    seed: int = 0
    pool: str = "train"
    val_fraction: float = 0.2
    kind: ClassVar[str] = "correlation"

    def __post_init__(self):
        object.__setattr__(self, "level", check_unit("level", self.level))
        object.__setattr__(self, "size", check_count("size", self.size, minimum=1))
        self._check_common()

    def split_indices(self, meta: pd.DataFrame) -> SubsetSplit:
        """Training and validation positions (disjoint, sorted)."""
        demand, perms, half, limit = self._plan(meta)
        return draw_split(demand, perms, 2 * half, n=self.n, val_fraction=self.val_fraction, step=2, limit=limit)

    def _plan(self, meta: pd.DataFrame):
        """Demand, per-cell permutations, label half ``h`` of the set, and what limits ``h``."""
        columns, cells, caps = self._pool_counts(meta)
        demand = balanced_demand(exact(self.level))
        if self.size is None:
            smallest = min(caps, key=caps.get)
            half = caps[smallest]
            if half == 0:
                raise UserError(
                    f"cell {cell_label(columns, smallest)} has 0 rows in the {self.pool} pool, so no correlation set can be "
                    "built (every level takes L = the smallest cell from each cell); choose another attribute or pool, "
                    "or pass size= to use only the cells this level needs."
                )
            limit = (
                f"cell {cell_label(columns, smallest)} has {half} rows in the {self.pool} pool, "
                f"which makes L = {half} and the correlation set {2 * half} rows"
            )
        else:
            half = self.size
            self._check_size(demand, caps, columns)
            limit = f"size={half} makes the correlation set {2 * half} rows"
        return demand, draw_cells(cells, demand(2 * half), seed=self.seed, stream=self.kind), half, limit

    def _check_size(self, demand, caps: dict[CellKey, int], columns: tuple[str, str]) -> None:
        h = self.size
        if fits(demand, 2 * h, caps):
            return
        key = binding_cell(demand, 2 * h - 2, caps, step=2)
        largest = largest_total(demand, caps, step=2) // 2
        lowest = max(0, h - min(caps[1, 0], caps[0, 1]))  # fewest counter rows the big cells allow
        highest = min(h, caps[1, 1], caps[0, 0])
        reach = (
            f"the reachable levels at size={h} run from {lowest / h:.4g} to {highest / h:.4g}"
            if lowest <= highest
            else f"no level is reachable at size={h}"
        )
        raise UserError(
            f"size={h} is infeasible at level {self.level}: cell {cell_label(columns, key)} has {caps[key]} rows in the "
            f"{self.pool} pool but needs {demand(2 * h)[key]}; "
            f"the largest feasible size at this level is {largest} ({reach})."
        )


@dataclass(frozen=True)
class SubSelection(TargetSpec):
    """Other correlation levels reached only by *removing* rows from one base set (n shrinks).

    The base is ``Correlation(target, sensitive, base_level, n=base_n, ...)`` with the same
    seed; this spec keeps the largest balanced subset of its training rows (and, separately,
    of its validation rows) at ``level``. The cell that would otherwise have to grow is held
    fixed: moving toward balance, the minority (counter) cells keep their count; moving
    toward stronger correlation, the majority (stereotypical) cells do. With the paper's
    ``base_level = 0.2``, ``base_n = 1024`` (102 rows per counter cell): level 0.3 keeps
    682 training rows, 0.5 keeps 408, 0.8 keeps 256, 0.0 keeps 820 (the paper's
    ``constrain_nums``, up to its truncation).

    Parameters
    ----------
    level : float in [0, 1]
        Target ``P(s=1 | y=1) = P(s=0 | y=0)`` (convention in the module docstring).
    base_n : int >= 2
        Training rows of the base set.
    base_level : float in [0, 1], optional
        Level of the base set; default: the pool's natural ``P(s=1 | y=1)``.
    seed, pool, val_fraction
        As in :class:`Correlation`.
    """

    level: float
    _: KW_ONLY
    base_n: int = 1024
    base_level: float | None = None
    seed: int = 0
    pool: str = "train"
    val_fraction: float = 0.2
    kind: ClassVar[str] = "subselection"

    def __post_init__(self):
        object.__setattr__(self, "level", check_unit("level", self.level))
        if self.base_level is not None:
            object.__setattr__(self, "base_level", check_unit("base_level", self.base_level))
        object.__setattr__(self, "base_n", check_count("base_n", self.base_n, minimum=2))
        self._check_common()

    def base(self, meta: pd.DataFrame) -> Correlation:
        """The base correlation spec (its level resolved against ``meta`` when not given)."""
        base_level = self.base_level
        if base_level is None:
            base_level = natural_level(meta, self.target, self.sensitive, pool=self.pool)
        return Correlation(
            self.target,
            self.sensitive,
            base_level,
            n=self.base_n,
            seed=self.seed,
            pool=self.pool,
            val_fraction=self.val_fraction,
        )

    def split_indices(self, meta: pd.DataFrame) -> SubsetSplit:
        """Training and validation positions, subsets of the base set's (disjoint, sorted)."""
        base = self.base(meta)
        base_demand, perms, half, limit = base._plan(meta)
        # raises the base's own message (naming base_n) when base_n is infeasible
        draw_split(
            base_demand, perms, 2 * half, n=self.base_n, val_fraction=self.val_fraction, step=2, limit=limit, n_name="base_n"
        )
        train_total = training_total(2 * half, self.val_fraction, step=2)
        base_train = base_demand(self.base_n)
        base_val_start = base_demand(train_total)
        base_val = {k: base_demand(2 * half)[k] - base_val_start[k] for k in base_val_start}
        demand = balanced_demand(exact(self.level))
        kept_train = demand(largest_total(demand, base_train, step=2))
        kept_val = demand(largest_total(demand, base_val, step=2))
        if sum(kept_train.values()) < 2:
            key = binding_cell(demand, 0, base_train, step=2)
            raise UserError(
                f"level={self.level} cannot be reached by removing rows from the base set at level {base.level:.4g}: cell "
                f"{cell_label((self.target, self.sensitive), key)} keeps only {base_train[key]} of its training rows; "
                "choose a level nearer the base level or a larger base_n."
            )
        val_stop = {k: base_val_start[k] + kept_val[k] for k in kept_val}
        return SubsetSplit(train=take(perms, kept_train), val=take(perms, val_stop, start=base_val_start))


@dataclass(frozen=True)
class TestResample(TargetSpec):
    """The largest balanced test set at a given correlation level (docs/science.md section 3).

    50% positives and 50% per group, ``P(s=1 | y=1) = P(s=0 | y=0) = level`` within
    rounding (module docstring), drawn from ``pool`` (default the test split). With
    ``level=None`` the level is the attribute's natural ``P(s=1 | y=1)`` measured on
    ``natural_pool`` (default the training split, as the paper does).
    """

    __test__ = False  # not a pytest test class despite the name

    _: KW_ONLY
    level: float | None = None
    seed: int = 0
    pool: str = "test"
    natural_pool: str = "train"
    kind: ClassVar[str] = "test_resample"

    def __post_init__(self):
        if self.level is not None:
            object.__setattr__(self, "level", check_unit("level", self.level))
        check_pool(self.natural_pool)
        self._check_common()

    def resolved_level(self, meta: pd.DataFrame) -> float:
        """``level``, or the natural level on ``natural_pool`` when it is None."""
        if self.level is not None:
            return self.level
        return natural_level(meta, self.target, self.sensitive, pool=self.natural_pool)

    def indices(self, meta: pd.DataFrame) -> np.ndarray:
        """Sorted positions (``np.int64``) of the resampled test rows."""
        columns, cells, caps = self._pool_counts(meta)
        demand = balanced_demand(exact(self.resolved_level(meta)))
        total = largest_total(demand, caps, step=2)
        if total == 0:
            key = binding_cell(demand, 0, caps, step=2)
            raise UserError(
                f"cell {cell_label(columns, key)} has 0 rows in the {self.pool} pool, so no test set at level "
                f"{self.resolved_level(meta):.4g} can be built; choose another level or pool."
            )
        return take(draw_cells(cells, demand(total), seed=self.seed, stream=self.kind), demand(total))


def test_rows_option(text, target: str, sensitive: str) -> TestResample | None:
    """The ``--test`` / grid ``test`` option: ``"split"`` (None: the test split as it is),
    ``"natural"`` (balanced at the natural level) or a level in [0, 1] (:class:`TestResample`)."""
    text = str(text)
    if text == "split":
        return None
    if text == "natural":
        return TestResample(target, sensitive, level=None)
    try:
        level = float(text)
    except ValueError:
        raise UserError(f"`test` must be 'split', 'natural' or a level in [0, 1], got {text!r}.") from None
    return TestResample(target, sensitive, level=level)
