"""Shared machinery of the subset specs (see :mod:`analyze.subsets` for the public API).

Every subset kind is a *composition*: a monotone function ``demand(total)`` that says how
many rows each cell (a pair of binary attribute values) contributes to a set of ``total``
rows. A kind then

1. takes the largest set its pool supports (or a requested size),
2. splits it into a training part of ``total - round(val_fraction * total)`` rows, itself
   composed exactly by ``demand``, and a validation part (the rest of each cell),
3. optionally keeps ``n`` training rows, again composed by ``demand(n)``.

Because ``demand`` is non-decreasing in ``total`` for every cell, step 3 is feasible exactly
when ``n <= training total``: the largest feasible ``n`` is that number, in closed form.

Rows are drawn in a seeded random order per cell (``np.random.default_rng``, never the
global RNG); the set, its training part and the ``n`` training rows are *prefixes* of that
order, so they are nested (the n = 128 rows lie inside the n = 1024 rows of the same
seed) and the validation rows never overlap the training rows.

Rounding is "half up" on exact fractions (a float level is read as the decimal it prints
as, so 0.15 * 10 rounds to 2, not 1).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from fractions import Fraction
from typing import Callable, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from extract.errors import UserError

CellKey = tuple[int, int]  # (value of the first column, value of the second column)
CELL_KEYS: tuple[CellKey, ...] = ((0, 0), (0, 1), (1, 0), (1, 1))
POOLS = ("train", "val", "test", "all")


class SubsetSplit(NamedTuple):
    """Training and validation row positions of one subset (sorted ``np.int64`` arrays)."""

    train: np.ndarray
    val: np.ndarray


# -- exact rounding ------------------------------------------------------------------------


def exact(x: float | int | Fraction) -> Fraction:
    """``x`` as an exact fraction; a float is read as the shortest decimal that prints it."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    return Fraction(repr(float(x)))


def round_half_up(q: Fraction | int) -> int:
    """Nearest integer to ``q``, halves rounded up (deterministic, unlike banker's rounding)."""
    return math.floor(Fraction(q) + Fraction(1, 2))


def share_of(total: int, share: Fraction) -> tuple[int, int]:
    """Split ``total`` into ``(total - k, k)`` with ``k = round_half_up(share * total)``.

    Both parts are non-decreasing in ``total`` (``k`` grows by at most 1 per step).
    """
    k = round_half_up(share * total)
    return total - k, k


def both_classes(total: int, positive_share: Fraction) -> tuple[int, int]:
    """``(positives, negatives)`` of ``total`` rows at ``positive_share``, both >= 1 when total >= 2.

    Non-decreasing in ``total``; this clip is what guarantees both classes for small ``n``.
    """
    pos = round_half_up(positive_share * total)
    if total >= 2:
        pos = min(max(pos, 1), total - 1)
    return pos, total - pos


# -- metadata checks and pools -------------------------------------------------------------


def check_columns(meta: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Raise :class:`UserError` unless ``meta`` has a ``split`` column and binary ``columns``."""
    if not isinstance(meta, pd.DataFrame) or "split" not in meta.columns:
        raise UserError("the metadata must be a DataFrame with a 'split' column; pass the adapter's metadata().")
    attributes = [c for c in meta.columns if c not in ("image_id", "path", "split")]
    if len(set(columns)) < len(columns):
        raise UserError(f"the subset uses the column {columns[0]!r} twice; choose two different attributes.")
    for col in columns:
        if col not in meta.columns:
            raise UserError(f"the metadata has no column {col!r}; choose one of {attributes[:12]}.")
        values = meta[col].to_numpy()
        if values.dtype.kind not in "iub" or (len(values) and (values.min() < -1 or values.max() > 1)):
            raise UserError(
                f"column {col!r} is not binary (values must be 0, 1 or -1 for unknown); recode it or choose another."
            )


def pool_cells(meta: pd.DataFrame, columns: tuple[str, str], pool: str) -> dict[CellKey, np.ndarray]:
    """Sorted row positions of each cell of ``columns`` in ``pool`` (rows with -1 excluded)."""
    check_columns(meta, columns)
    first = meta[columns[0]].to_numpy()
    second = meta[columns[1]].to_numpy()
    known = (first >= 0) & (second >= 0)
    if pool != "all":
        known &= meta["split"].to_numpy() == pool
    positions = np.flatnonzero(known).astype(np.int64)
    code = (2 * first[positions] + second[positions]).astype(np.int8)  # cell (a, b) -> 2a + b
    # a stable sort keeps each cell's positions ascending (a radix sort for int8: fast)
    by_cell = np.split(positions[np.argsort(code, kind="stable")], np.cumsum(np.bincount(code, minlength=4))[:-1])
    return dict(zip(CELL_KEYS, by_cell))


def require_both_values(cells: dict[CellKey, np.ndarray], columns: tuple[str, str], pool: str, axis: int = 0) -> None:
    """Raise when ``columns[axis]`` is constant among the pool's known rows."""
    counts = {v: sum(len(p) for k, p in cells.items() if k[axis] == v) for v in (0, 1)}
    if min(counts.values()) == 0:
        only = 1 if counts[1] else 0
        raise UserError(
            f"column {columns[axis]!r} is constant (only {only}) among the {sum(counts.values())} {pool}-pool rows "
            f"with known {columns[0]!r} and {columns[1]!r}; choose another attribute or pool."
        )


def cell_label(columns: tuple[str, str], key: CellKey) -> str:
    """Human name of a cell, e.g. ``(Wearing_Hat=1, Male=0)``."""
    return f"({columns[0]}={key[0]}, {columns[1]}={key[1]})"


def natural_level(meta: pd.DataFrame, target: str, sensitive: str, *, pool: str = "train") -> float:
    """The pool's natural correlation level ``P(sensitive=1 | target=1)``.

    Computed over the ``pool`` rows whose target and sensitive values are both known.
    """
    check_pool(pool)
    cells = pool_cells(meta, (target, sensitive), pool)
    positives = len(cells[1, 0]) + len(cells[1, 1])
    if positives == 0:
        raise UserError(
            f"the {pool} pool has no rows with {target}=1 and a known {sensitive}; choose another target or pool."
        )
    return len(cells[1, 1]) / positives


def level_toward_stereotype(meta: pd.DataFrame, target: str, sensitive: str, stereotype_level: float, *,
                            pool: str = "train") -> float:
    """The correlation level ``P(s=1 | y=1)`` whose share of positives in the target's
    *stereotypical* group (the group over-represented among its natural positives in ``pool``)
    is ``stereotype_level``: the level itself when that group is ``s=1``, one minus it when it
    is ``s=0``. 1 = every positive stereotypical, 0.5 = balance (the collected table's
    ``stereotype_level`` column reads the same way).
    """
    level = check_unit("stereotype_level", stereotype_level)
    natural = natural_level(meta, target, sensitive, pool=pool)
    if natural == 0.5:
        raise UserError(f"{target!r} is exactly independent of {sensitive!r} in the {pool} pool, so it has no "
                        "stereotypical group; give the correlation level P(s=1 | y=1) directly.")
    return level if natural > 0.5 else 1.0 - level


# -- compositions --------------------------------------------------------------------------


Demand = Callable[[int], dict[CellKey, int]]


def fits(demand: Demand, total: int, caps: dict[CellKey, int]) -> bool:
    """Whether every cell holds what ``demand(total)`` asks of it."""
    return all(k <= caps[key] for key, k in demand(total).items())


def largest_total(demand: Demand, caps: dict[CellKey, int], *, step: int = 1) -> int:
    """Largest multiple of ``step`` whose demand fits ``caps`` (bisection over a monotone demand)."""
    lo, hi = 0, sum(caps.values()) // step + 1  # demand sums to the total, so hi never fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(demand, mid * step, caps) else (lo, mid)
    return lo * step


def binding_cell(demand: Demand, total: int, caps: dict[CellKey, int], *, step: int = 1) -> CellKey:
    """A cell that stops the set from growing past ``total`` (it overflows at ``total + step``)."""
    over = {key: k - caps[key] for key, k in demand(total + step).items() if k > caps[key]}
    return max(over, key=over.get) if over else min(caps, key=caps.get)


def training_total(total: int, val_fraction: float, *, step: int = 1) -> int:
    """Rows of a ``total``-row set that go to training: ``total - round(val_fraction * total)``.

    With ``step=2`` (label-balanced sets) the split is done per label half, so both parts
    keep equal positives and negatives.
    """
    units = total // step
    return (units - round_half_up(exact(val_fraction) * units)) * step


def counts_of(cells: dict[CellKey, np.ndarray]) -> dict[CellKey, int]:
    return {key: len(pos) for key, pos in cells.items()}


# -- seeded draws --------------------------------------------------------------------------


def draw_cells(
    cells: dict[CellKey, np.ndarray], sizes: dict[CellKey, int], *, seed: int, stream: str
) -> dict[CellKey, np.ndarray]:
    """``sizes[key]`` rows of each cell in a seeded random order (a uniform ordered sample).

    ``stream`` names the kind so kinds draw independently. Each cell has its own generator
    (seeded by seed, stream and cell), so the rows drawn from one cell do not depend on the
    sizes of the others. Only the rows the set needs are drawn (``Generator.choice``
    without replacement), which keeps large pools cheap.
    """
    salt = zlib.crc32(stream.encode())
    return {
        key: np.random.default_rng([seed, salt, 2 * key[0] + key[1]]).choice(pos, size=sizes.get(key, 0), replace=False)
        for key, pos in cells.items()
    }


def take(perms: dict[CellKey, np.ndarray], stop: dict[CellKey, int], start: dict[CellKey, int] | None = None) -> np.ndarray:
    """Sorted positions ``perm[start:stop]`` of every cell (cells missing from ``stop`` give none)."""
    parts = [perms[key][(start or {}).get(key, 0) : k] for key, k in stop.items()]
    return np.sort(np.concatenate(parts + [np.empty(0, np.int64)])).astype(np.int64)


def draw_split(
    demand: Demand,
    perms: dict[CellKey, np.ndarray],
    total: int,
    *,
    n: int | None,
    val_fraction: float,
    step: int,
    limit: str,
    n_name: str = "n",
) -> SubsetSplit:
    """Training (all of it, or ``n`` rows) and validation rows of a ``total``-row set.

    ``limit`` is the clause naming what caps ``total`` (e.g. the binding pool cell); it
    opens the error raised when ``n`` exceeds the training total.
    """
    train_total = training_total(total, val_fraction, step=step)
    if n is not None and n > train_total:
        pct = round(100 * (1 - val_fraction))
        raise UserError(
            f"{n_name}={n} is infeasible: {limit}, and the {pct}% training part of that set has {train_total} rows; "
            f"the largest feasible {n_name} is {train_total}."
        )
    train_counts = demand(train_total)
    kept = train_counts if n is None else demand(n)
    return SubsetSplit(train=take(perms, kept), val=take(perms, demand(total), start=train_counts))


# -- spec base -----------------------------------------------------------------------------


def check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise UserError(f"pool {pool!r} is not a split; use one of {list(POOLS)}.")


def check_unit(name: str, value: float, *, open_right: bool = False, open_left: bool = False) -> float:
    """``value`` as a float in [0, 1] (ends optionally open), else :class:`UserError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise UserError(f"{name} must be a number in [0, 1], got {value!r}.")
    value = float(value)
    if value < 0 or value > 1 or (open_right and value == 1) or (open_left and value == 0):
        interval = ("(" if open_left else "[") + "0, 1" + (")" if open_right else "]")
        raise UserError(f"{name}={value} is outside {interval}; pass a value in {interval}.")
    return value


def check_count(name: str, value: int | None, *, minimum: int) -> int | None:
    """``value`` as an int >= ``minimum`` (or None), else :class:`UserError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum} (or None), got {value!r}.")
    return int(value)


class SpecBase:
    """What all specs share: serialisation (``to_dict`` adds ``kind``; ``from_dict`` inverts
    it), the common checks after construction, and :meth:`indices` as the training part of
    ``split_indices`` (a kind without a split, such as a test set, defines its own)."""

    kind: ClassVar[str]

    def __post_init__(self):
        self._check_common()

    def indices(self, meta: pd.DataFrame) -> np.ndarray:
        """Sorted positions (``np.int64``) of the training rows."""
        return self.split_indices(meta).train

    def to_dict(self) -> dict:
        """JSON-serialisable fields plus ``kind``; ``spec_from_dict`` rebuilds the spec."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_dict(cls, d: dict):
        """Rebuild a spec from :meth:`to_dict` output (``kind`` must match this class)."""
        fields = dict(d)
        kind = fields.pop("kind", cls.kind)
        if kind != cls.kind:
            raise UserError(f"a {kind!r} spec cannot be read as {cls.kind!r}; use spec_from_dict.")
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"the {cls.kind!r} spec has unknown field(s) {unknown}; remove them.")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in fields]
        if missing:  # else a TypeError from deep inside the dataclass
            raise UserError(f"the {cls.kind!r} spec lacks the field(s) {missing}; add them or rebuild it with to_dict().")
        return cls(**fields)

    def _check_common(self) -> None:
        """Validate and normalise seed, pool, n and val_fraction where the spec has them."""
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 (frozen dataclass)
        set_("seed", check_count("seed", self.seed, minimum=0))
        if self.seed is None:
            raise UserError("seed must be an integer >= 0, got None.")
        check_pool(self.pool)
        if hasattr(self, "n"):
            set_("n", check_count("n", self.n, minimum=2))
        if hasattr(self, "val_fraction"):
            set_("val_fraction", check_unit("val_fraction", self.val_fraction, open_right=True))


def target_labels(meta: pd.DataFrame, target: str) -> np.ndarray:
    """The finetuning label of every row, ``np.int8`` with -1 where unknown."""
    return meta[target].to_numpy().astype(np.int8)


@dataclasses.dataclass(frozen=True)
class TargetSpec(SpecBase):
    """A spec on a binary ``target`` column (``y``, the finetuning label) and a binary
    ``sensitive`` column (``s``): the first two fields of every such kind.

    The other shared fields (``n``, ``seed``, ``pool``, ``val_fraction``) stay on each kind:
    a dataclass puts a base's fields first, while ``to_dict`` (the spec a record keeps),
    ``repr`` and the positional arguments follow the declaration order, which must not change.
    """

    target: str
    sensitive: str

    def labels(self, meta: pd.DataFrame) -> np.ndarray:
        return target_labels(meta, self.target)

    def _pool_counts(self, meta: pd.DataFrame):
        """The columns ``(target, sensitive)``, the pool's ``(y, s)`` cells (each with both
        values present) and their row counts."""
        columns = (self.target, self.sensitive)
        cells = pool_cells(meta, columns, self.pool)
        require_both_values(cells, columns, self.pool, axis=0)
        return columns, cells, counts_of(cells)
