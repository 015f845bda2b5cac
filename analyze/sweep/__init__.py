"""Sweeps: a grid (preset or TOML) expanded into cells, run locally or on Dask, one JSON per cell."""

from __future__ import annotations

from analyze.sweep.grid import Grid, load_grid, preset_names
from analyze.sweep.run import sweep

__all__ = ['Grid', 'load_grid', 'preset_names', 'sweep']
