"""A finetuning set drawn from two sources (datasets or stores) in a given share.

:class:`DomainMix` is Wang & Russakovsky's Dollar Street + COCO mix (``coco_dsset{s}``): a
set whose rows come from ``sources[0]`` with share ``share`` and from ``sources[1]`` with
share ``1 - share``. It follows the contract of the other subset specs (see
:mod:`analyze.subsets`) with one metadata table per source:

- ``split_indices(metas) -> {source: SubsetSplit(train, val)}`` and
  ``indices(metas) -> {source: train positions}``, where ``metas`` maps each source name to
  its metadata table (positions are rows of that table, sorted ``np.int64``);
- ``to_dict()`` / ``from_dict()`` (kind ``"domain_mix"``), so a result records the spec and
  :meth:`DomainMix.counts` the rows it drew from each source.

The composition is exact: a set of ``total`` rows takes ``round_half_up(share * total)``
rows of ``sources[0]`` and the rest of ``sources[1]``. Like the other kinds, the largest set
the two pools support is split into a training part (``total - round(val_fraction *
total)`` rows, composed the same way) and a validation part, and ``n`` training rows are
kept, again composed exactly. Each source's rows are drawn in its own seeded order
(``np.random.default_rng([seed, stream, source index])``), and every part is a prefix of that
order, so the rows for n = 64 lie inside those for n = 128 of the same seed and share. A
request larger than the pools allow raises :class:`extract.errors.UserError` naming the
source that limits it and the largest feasible ``n``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from analyze.subsets.core import (
    SpecBase,
    SubsetSplit,
    binding_cell,
    check_count,
    check_unit,
    exact,
    largest_total,
    round_half_up,
    training_total,
)
from extract.errors import UserError


@dataclass(frozen=True)
class DomainMix(SpecBase):
    """Rows of two sources in the share ``share : 1 - share`` (see the module docstring).

    Parameters
    ----------
    sources : (str, str)
        Names of the two sources, keys of the ``metas`` mapping (e.g. the store names).
    share : float in [0, 1]
        Share of ``sources[0]`` in every part of the set (0.1 = 10% Dollar Street).
    n : int >= 2, optional
        Training rows to keep; default the whole training part.
    seed : int, default 0
    pool : {"train", "val", "test", "all"}, default "train"
        Split of each source the rows come from.
    val_fraction : float in [0, 1), default 0.2
        Share of the set held out for validation.
    targets : tuple of str, default ()
        Label columns; rows with an unknown (-1) value in any of them are left out.
    size : int >= 2, optional
        Rows of the whole set (training and validation) before ``n`` is kept; default the
        largest set the pools support.
    """

    sources: tuple[str, str]
    share: float
    _: KW_ONLY
    n: int | None = None
    seed: int = 0
    pool: str = "train"
    val_fraction: float = 0.2
    targets: tuple[str, ...] = ()
    size: int | None = None
    kind: ClassVar[str] = "domain_mix"
    stream: ClassVar[str] = "domain_mix"

    def __post_init__(self):
        sources = tuple(self.sources) if isinstance(self.sources, (list, tuple)) else ()
        if len(sources) != 2 or not all(isinstance(s, str) and s for s in sources) or sources[0] == sources[1]:
            raise UserError(f"sources={self.sources!r} must name two different sources, e.g. "
                            "('dollarstreet', 'coco').")
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "share", check_unit("share", self.share))
        object.__setattr__(self, "size", check_count("size", self.size, minimum=2))
        self._check_common()

    # -- composition ------------------------------------------------------------------------
    def demand(self, total: int) -> dict[str, int]:
        """Rows of each source in a ``total``-row part: ``round_half_up(share * total)`` and the rest."""
        first = round_half_up(exact(self.share) * total)
        return {self.sources[0]: first, self.sources[1]: total - first}

    def pools(self, metas: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
        """Sorted positions of each source's pool rows (known targets only)."""
        out = {}
        for source in self.sources:
            meta = metas.get(source) if isinstance(metas, Mapping) else None
            if not isinstance(meta, pd.DataFrame) or "split" not in meta.columns:
                given = sorted(metas) if isinstance(metas, Mapping) else type(metas).__name__
                raise UserError(f"the domain mix needs the metadata of source {source!r} (a DataFrame with a "
                                f"'split' column); got {given}.")
            keep = np.ones(len(meta), dtype=bool) if self.pool == "all" else meta["split"].to_numpy() == self.pool
            for column in self.targets:
                if column not in meta.columns:
                    raise UserError(f"source {source!r} has no column {column!r}; give both sources the same "
                                    "label columns (e.g. the coco-objects target set).")
                keep &= meta[column].to_numpy() >= 0
            out[source] = np.flatnonzero(keep).astype(np.int64)
        return out

    def split_indices(self, metas: Mapping[str, pd.DataFrame]) -> dict[str, SubsetSplit]:
        """Training and validation positions per source (disjoint, sorted)."""
        pools = self.pools(metas)
        caps = {s: len(p) for s, p in pools.items()}
        total = largest_total(self.demand, caps)
        if self.size is not None:
            if self.size > total:
                limiting = binding_cell(self.demand, total, caps)
                raise UserError(f"size={self.size} is infeasible: source {limiting!r} has {caps[limiting]} "
                                f"{self.pool}-pool rows, which caps a set with share {self.share} of "
                                f"{self.sources[0]!r} at {total} rows; the largest feasible size is {total}.")
            total = self.size
        if total == 0:
            empty = [s for s in self.sources if self.demand(1)[s] > caps[s] or caps[s] == 0]
            raise UserError(f"the domain mix at share {self.share} is empty: source {empty[0]!r} has no "
                            f"{self.pool}-pool rows; choose another pool or share.")
        train_total = training_total(total, self.val_fraction)
        if self.n is not None and self.n > train_total:
            pct = round(100 * (1 - self.val_fraction))
            if self.size is not None:
                limit = f"size={self.size} makes the set {total} rows"
            else:
                limiting = binding_cell(self.demand, total, caps)
                limit = (f"source {limiting!r} has {caps[limiting]} {self.pool}-pool rows, which caps a set with share "
                         f"{self.share} of {self.sources[0]!r} at {total} rows")
            raise UserError(f"n={self.n} is infeasible: {limit}, and its {pct}% training part has {train_total} rows; "
                            f"the largest feasible n is {train_total}.")
        train_counts = self.demand(train_total)
        kept = train_counts if self.n is None else self.demand(self.n)
        set_counts = self.demand(total)
        salt = zlib.crc32(self.stream.encode())
        out = {}
        for j, source in enumerate(self.sources):
            order = np.random.default_rng([self.seed, salt, j]).choice(pools[source], size=set_counts[source],
                                                                        replace=False)
            out[source] = SubsetSplit(train=np.sort(order[:kept[source]]).astype(np.int64),
                                      val=np.sort(order[train_counts[source]:]).astype(np.int64))
        return out

    def indices(self, metas: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
        """Training positions per source."""
        return {source: split.train for source, split in self.split_indices(metas).items()}

    def counts(self, metas: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
        """``{source: {"train": rows, "val": rows}}``: what a result records next to the spec."""
        return {s: {"train": len(p.train), "val": len(p.val)} for s, p in self.split_indices(metas).items()}

    def to_dict(self) -> dict:
        """JSON-serialisable fields plus ``kind`` (tuples as lists)."""
        d = super().to_dict()
        return d | {"sources": list(self.sources), "targets": list(self.targets)}


__all__ = ["DomainMix"]
