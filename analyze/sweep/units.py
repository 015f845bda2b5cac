"""From a grid to cells and work units, with every cell checked before anything is fitted.

A *cell* is (backbone, subset spec, runner); its id is the runner's own
:func:`analyze.results.records.cell_id`, so the sweep knows which records exist before it starts.
A *work unit* is what one worker runs in one call:

- probe cells of one store, in fixed chunks of ``grid.chunk_size`` cells (one batched
  :func:`analyze.probe.cells.run_probe_cells` call each). The chunks are fixed by the grid,
  not by the worker count or by what is already done, so a run with 1 or 8 workers, or a
  resumed run, fits exactly the same batches and writes the same numbers;
- finetune cells of one base and one target, ``conditions_per_task`` conditions (a
  condition = the replicates of one spec) per unit (all of a base's when ``search =
  "first"``, whose one search must see every condition).

Planning opens each store's metadata (not its features) and each dataset adapter once,
draws every spec's rows (which raises the spec's one-sentence error for an infeasible
cell), refuses stores (or finetune data) of different datasets for the same cells unless the
grid sets ``cross_dataset = true`` (:func:`check_one_dataset`), builds each cell's settings
and their digest (:mod:`analyze.sweep.settings`) and measures each training set's composition, written into the records as the
``sweep`` annotation (``natural_level``, ``train_share_s_given_y``, ``train_share_s``,
``skew`` = ``|P(s=1 | y=1) - P(s=1)|`` of the training rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from analyze.results.records import cell_id
from analyze.runners import RUNNERS
from analyze.runners.finetune import CONFIG_KEYS as FINETUNE_CONFIG_KEYS  # noqa: F401  (re-exported)
from analyze.runners.finetune import DEFAULT_CONDITIONS_PER_TASK, FinetuneUnit  # noqa: F401  (re-exported)
from analyze.runners.probe import POLICIES as PROBE_POLICIES  # noqa: F401  (re-exported)
from analyze.runners.probe import SELECT as PROBE_SELECT  # noqa: F401  (re-exported)
from analyze.runners.probe import ProbeUnit  # noqa: F401  (re-exported)
from analyze.sweep.grid import Grid, expand_specs
from analyze.sweep.settings import settings_digest
from extract.errors import UserError



@dataclass(frozen=True)
class Cell:
    """One cell: ``backbone`` is the grid's label, ``recorded_as`` the runner's backbone name."""

    runner: str
    backbone: str
    base_kind: str
    recorded_as: str
    spec: object
    cell_id: str


@dataclass
class SweepPlan:
    """Cells in grid order, work units, each cell's annotation and settings (by cell id).

    ``settings``: what decides each cell's numbers (:mod:`analyze.sweep.settings`);
    ``digests``: their :func:`~analyze.sweep.settings.settings_digest`; ``datasets``: one
    :class:`DataSource` per backbone and runner.
    """

    grid: Grid
    cells: list[Cell]
    units: list
    annotations: dict[str, dict]
    settings: dict[str, dict] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    datasets: list = field(default_factory=list)


@dataclass(frozen=True)
class DataSource:
    """The dataset one backbone's runner reads: ``what`` (e.g. ``the store of backbone 'biased'``),
    the dataset name, its manifest hash, the image ids in row order, where it lives."""

    what: str
    name: str
    manifest_hash: str
    ids: object = field(compare=False)  # the metadata's image_id column (not copied)
    where: str = ""
    specs: frozenset = frozenset()

    def label(self) -> str:
        """``avatars 1a2b3c4d5e6f`` (name and the first 12 characters of the manifest hash)."""
        return f"{self.name} {self.manifest_hash[:12]}"


def plan_sweep(grid: Grid) -> SweepPlan:
    """Expand ``grid`` and check every cell against its data (module docstring); each runner of
    ``grid.runners`` is looked up in :data:`analyze.runners.RUNNERS` and plans its own cells."""
    cells, units, annotations, described, shared = [], [], {}, {}, {}
    settings, sources = {}, []
    for backbone in grid.backbones:
        specs = expand_specs(grid, backbone.name)
        for name in grid.runners:
            runner = RUNNERS[name]
            source = runner.source(grid, backbone, specs, shared.setdefault(name, {}))
            sources.append(DataSource(what=source.what, name=str(source.key[0]), manifest_hash=str(source.key[1]),
                                      ids=_image_ids(source.meta), where=source.location, specs=frozenset(specs)))
            known = described.setdefault((source.key, source.group), {})  # once per dataset and spec
            mine = [Cell(name, backbone.name, backbone.base_kind, source.recorded, spec,
                         cell_id(runner=runner.records_as, backbone=source.recorded, spec=spec.to_dict()))
                    for spec in specs]
            for cell in mine:
                if cell.spec not in known:
                    known[cell.spec] = (describe_cell(source.meta, cell.spec, source.group, where=source.where)
                                        if source.describe else {})
                annotations[cell.cell_id] = {"grid": grid.name, "backbone": backbone.name,
                                             "base_kind": backbone.base_kind, "cross_dataset": grid.cross_dataset, **known[cell.spec]}
                settings[cell.cell_id] = source.settings_of(cell.spec.to_dict())
            cells += mine
            units += source.units(mine)
    _check_unique(cells)
    if not grid.cross_dataset:
        check_one_dataset(sources)
    return SweepPlan(grid=grid, cells=cells, units=units, annotations=annotations, settings=settings,
                     digests={c: settings_digest(s) for c, s in settings.items()}, datasets=sources)


def _image_ids(meta):
    """The image ids in row order (of every source, one after another, for several)."""
    if isinstance(meta, dict):
        return np.concatenate([np.asarray(m["image_id"]).astype(str) for m in meta.values()])
    return meta["image_id"]


def dataset_difference(a: DataSource, b: DataSource) -> str:
    """How two data sources differ, in a few words (names, row order, labels or images)."""
    if a.name != b.name:
        return "two different datasets"
    ids_a, ids_b = np.asarray(a.ids).astype(str), np.asarray(b.ids).astype(str)
    if len(ids_a) == len(ids_b) and (ids_a == ids_b).all():
        return "the same image ids with different labels, splits or paths"
    if len(ids_a) == len(ids_b) and set(ids_a) == set(ids_b):
        return "the same image ids in another row order"
    return f"different images ({len(a.ids)} vs {len(b.ids)} rows)"


def check_one_dataset(sources: list) -> None:
    """Refuse sources that share cells but hold different datasets (manifest hash, ids or row order)."""
    for i, a in enumerate(sources):
        for b in sources[i + 1:]:
            if a.manifest_hash != b.manifest_hash and a.specs & b.specs:
                raise UserError(
                    f"{a.what} ({a.where}) holds {a.label()} but {b.what} ({b.where}) holds {b.label()}, "
                    f"{dataset_difference(a, b)}, so the bases would be compared on different data; use stores "
                    "and data of one dataset copy, or set grid.cross_dataset = true if the bases are meant to be "
                    "compared across datasets.")


def pending_part(unit, done: list[bool]):
    """``unit`` without its complete work, or None when all of it is done (its runner decides how:
    a probe chunk is refitted whole, a finetune unit keeps its conditions with a record missing)."""
    return RUNNERS[unit.runner].pending(unit, done)


def _check_unique(cells: list[Cell]) -> None:
    owner = {}
    for cell in cells:
        other = owner.setdefault(cell.cell_id, cell.backbone)
        if other != cell.backbone:
            raise UserError(f"backbones {other!r} and {cell.backbone!r} are both recorded as {cell.recorded_as!r}, so "
                            "their records would overwrite each other; give them stores or bases with distinct names.")


def spec_label(spec) -> str:
    """A short human name of a spec, e.g. ``correlation(hat, level=0.5, n=128, seed=0)``."""
    fields = {k: v for k, v in spec.to_dict().items() if k not in ("kind", "pool", "val_fraction") and v is not None}
    head = [str(fields.pop(k)) for k in ("target", "attr_a", "attr_b") if k in fields]
    fields.pop("sensitive", None)
    return f"{spec.kind}({', '.join(head + [f'{k}={v}' for k, v in fields.items()])})"


def describe_cell(meta, spec, group: str | None, *, where: str) -> dict:
    """Draw ``spec``'s rows (raising its error, prefixed by the cell) and describe them.

    Returns ``natural_level`` (P(s=1 | y=1) over the train split), ``train_share_s_given_y``
    (P(s=1 | y=1) over the training rows), ``train_share_s`` (P(s=1) over them) and
    ``skew`` = ``|train_share_s_given_y - train_share_s|``; NaN where ``group`` is None.
    """
    try:
        train = spec.split_indices(meta).train
        labels = np.asarray(spec.labels(meta))
    except UserError as exc:
        raise UserError(f"grid cell {spec_label(spec)} on {where}: {exc}") from None
    group = getattr(spec, "sensitive", None) or group
    if group is None or group not in meta.columns:
        return {"group_column": group, "natural_level": None, "train_share_s_given_y": None,
                "train_share_s": None, "skew": None}
    s = meta[group].to_numpy()
    pool = np.flatnonzero((meta["split"].to_numpy() == "train") & (labels >= 0) & (s >= 0))
    natural = _share(s[pool][labels[pool] == 1])
    given_y, overall = _share(s[train][labels[train] == 1]), _share(s[train][s[train] >= 0])
    skew = None if given_y is None or overall is None else abs(given_y - overall)
    return {"group_column": group, "natural_level": natural, "train_share_s_given_y": given_y,
            "train_share_s": overall, "skew": skew}


def _share(values: np.ndarray) -> float | None:
    values = values[values >= 0]
    return float(np.mean(values == 1)) if len(values) else None
