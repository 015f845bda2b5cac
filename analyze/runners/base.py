"""What a runner gives the sweep: the protocol and the planned source of one backbone's cells.

A runner (registered in :mod:`analyze.runners.registry`) has

- ``name`` (the grid's ``grid.runners`` entry) and ``records_as`` (the ``runner`` its records
  carry and their cell ids are made with: a domain-mix cell is a probe cell of a new kind);
- ``proxy``: True when the runner stands in for the papers' full finetunes (linear probes on
  frozen features), so a finding from it is labelled a proxy and never reproduces a finetune claim;
- ``source(grid, backbone, specs, shared)``: the :class:`Source` of one backbone's cells
  (its data, how cells become work units, each cell's settings), checked before anything runs;
  ``shared`` is a dict the runner may fill once per sweep (one dataset adapter for every base);
- ``run(unit, *, in_pool)``: the records of one work unit, computed in this process with one
  thread (``in_pool``: inside a loky or Dask worker);
- ``pending(unit, done)``: the part of ``unit`` still to run (None when all of it is done);
- ``stores(unit)``: the feature stores the unit memory-maps (for the sweep's memory check).

Work units are frozen dataclasses of plain values with a ``runner`` class attribute naming
the runner that runs them, so a worker looks the runner up instead of testing the unit's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Source:
    """One backbone's data for one runner, as planned.

    ``meta``: the metadata every spec draws its rows from (a DataFrame, or a dict of them for
    several sources); ``key``: (dataset name, manifest hash); ``where``: the data in words for
    error messages; ``location``: a path for the dataset check; ``what``: e.g. ``the store of
    backbone 'biased'``; ``recorded``: the backbone name the records carry; ``units``: cells
    -> work units; ``settings_of``: spec dict -> the cell's settings; ``group``: the sensitive
    column the training-set composition is measured on; ``describe``: whether the cells'
    training sets are described (composition and skew) in the sweep annotation.
    """

    meta: object
    key: tuple
    where: str
    location: str
    what: str
    recorded: str
    units: Callable
    settings_of: Callable
    group: str | None = None
    describe: bool = True


class Runner(Protocol):
    """The runner protocol (module docstring)."""

    name: str
    records_as: str
    proxy: bool

    def source(self, grid, backbone, specs: list, shared: dict) -> Source: ...

    def run(self, unit, *, in_pool: bool = False) -> list[dict]: ...

    def pending(self, unit, done: list[bool]): ...

    def stores(self, unit) -> tuple[str, ...]: ...


def chunks(items, size: int) -> list[list]:
    """``items`` in consecutive lists of at most ``size``."""
    return [items[i:i + size] for i in range(0, len(items), size)]


__all__ = ["Runner", "Source", "chunks"]
