"""Sweeps: a grid (preset or TOML) expanded into cells, run locally or on Dask, one JSON per cell.

The public names load on first use (PEP 562), so a loky worker that imports
:mod:`analyze.sweep.workers` at start-up does not import the grid, the planner, pandas or
torch first: it must be able to follow its parent's death a fraction of a second after it
is spawned.
"""

from __future__ import annotations

import importlib

_PUBLIC = {"Grid": "analyze.sweep.grid", "load_grid": "analyze.sweep.grid", "preset_names": "analyze.sweep.grid",
           "sweep": "analyze.sweep.run"}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'analyze.sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = ["Grid", "load_grid", "preset_names", "sweep"]
