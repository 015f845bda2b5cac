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
from analyze.sweep.grid import Grid, expand_specs
from analyze.sweep.settings import base_identity, finetune_settings, probe_settings, settings_digest, with_spec
from extract.errors import UserError

PROBE_POLICIES = ("top_p", "top_p_reference", "fixed")
PROBE_SELECT = ("val_loss", "auc")
FINETUNE_CONFIG_KEYS = ("lrs", "weight_decays", "epochs", "batch_size", "momentum", "flip", "freeze", "freeze_bn",
                        "schedule", "patience", "engine")
DEFAULT_CONDITIONS_PER_TASK = 4


@dataclass(frozen=True)
class Cell:
    """One cell: ``backbone`` is the grid's label, ``recorded_as`` the runner's backbone name."""

    runner: str
    backbone: str
    base_kind: str
    recorded_as: str
    spec: object
    cell_id: str


@dataclass(frozen=True)
class ProbeUnit:
    """Probe cells of one store, fitted in one batched call (plain values: cheap to ship)."""

    store: str
    specs: tuple[dict, ...]
    cell_ids: tuple[str, ...]
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FinetuneUnit:
    """Finetune conditions of one base (all replicates of each)."""

    dataset: str
    root: str
    adapter_options: dict
    base: str
    weights: str | None
    specs: tuple[dict, ...]
    cell_ids: tuple[str, ...]
    config: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


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
    """Expand ``grid`` and check every cell against its data (module docstring)."""
    probe_options, finetune_config, finetune_options = _runner_options(grid)
    cells, units, annotations, described, adapters = [], [], {}, {}, {}
    settings, sources = {}, []
    for backbone in grid.backbones:
        specs = expand_specs(grid, backbone.name)
        for runner in grid.runners:
            if runner == "probe":
                meta, key, where, recorded, unit_of, settings_of = _probe_source(grid, backbone, specs,
                                                                                 probe_options)
                what = f"the store of backbone {backbone.name!r}"
            else:
                meta, key, where, recorded, unit_of, settings_of = _finetune_source(
                    grid, backbone, finetune_config, finetune_options, adapters)
                what = f"the finetune data of backbone {backbone.name!r}"
            sources.append(DataSource(what=what, name=str(key[0]), manifest_hash=str(key[1]),
                                      ids=meta["image_id"],
                                      where=str(backbone.store if runner == "probe" else grid.data.get("root")),
                                      specs=frozenset(specs)))
            group = (finetune_options.get("sensitive") if runner == "finetune" else None) or grid.sensitive
            known = described.setdefault((key, group), {})  # once per dataset and spec, not per backbone
            mine = [Cell(runner, backbone.name, backbone.base_kind, recorded, spec,
                         cell_id(runner=runner, backbone=recorded, spec=spec.to_dict())) for spec in specs]
            for cell in mine:
                if cell.spec not in known:
                    known[cell.spec] = describe_cell(meta, cell.spec, group, where=where)
                annotations[cell.cell_id] = {"grid": grid.name, "backbone": backbone.name,
                                             "base_kind": backbone.base_kind, "cross_dataset": grid.cross_dataset,
                                             **known[cell.spec]}
                settings[cell.cell_id] = settings_of(cell.spec.to_dict())
            cells += mine
            units += unit_of(mine)
    _check_unique(cells)
    if not grid.cross_dataset:
        check_one_dataset(sources)
    return SweepPlan(grid=grid, cells=cells, units=units, annotations=annotations, settings=settings,
                     digests={c: settings_digest(s) for c, s in settings.items()}, datasets=sources)


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


def _runner_options(grid: Grid) -> tuple[dict, dict, dict]:
    probe = dict(grid.probe)
    if "Cs" in probe:
        cs = probe["Cs"] if isinstance(probe["Cs"], list) else [probe["Cs"]]
        if not cs or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in cs):
            raise UserError(f"probe.Cs must be a list of positive numbers, got {probe['Cs']!r}.")
        probe["Cs"] = [float(c) for c in cs]
    if probe.get("policy", "top_p") not in PROBE_POLICIES:
        raise UserError(f"probe.policy must be one of {PROBE_POLICIES}, got {probe['policy']!r}.")
    if probe.get("select", "val_loss") not in PROBE_SELECT:
        raise UserError(f"probe.select must be one of {PROBE_SELECT}, got {probe['select']!r}.")
    finetune = dict(grid.finetune)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in finetune.items() if k in FINETUNE_CONFIG_KEYS}
    if "finetune" in grid.runners:
        from analyze.finetune.search import (
            FinetuneConfig,  # torch: only when finetuning
        )

        FinetuneConfig(**config)  # raises the one-sentence error of a bad setting now
        if finetune.get("search", "condition") not in ("condition", "first"):
            raise UserError(f"finetune.search must be 'condition' or 'first', got {finetune['search']!r}.")
    options = {k: v for k, v in finetune.items() if k not in FINETUNE_CONFIG_KEYS}
    return probe, {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}, options


def _probe_source(grid, backbone, specs, options):
    from extract.store.reader import FeatureStore

    if not backbone.store:
        raise UserError(f"backbone {backbone.name!r} has no store for the probe runner; "
                        f"give `backbones.{backbone.name}.store` (or drop 'probe' from `grid.runners`).")
    if any(spec.kind == "underrepresentation" for spec in specs):
        raise UserError("the probe runner cannot evaluate underrepresentation cells (they have no sensitive column); "
                        "run them with grid.runners = ['finetune'].")
    if not Path(backbone.store).expanduser().exists():
        raise UserError(f"the feature store {backbone.store} of backbone {backbone.name!r} does not exist; extract it "
                        f"with `biastransfer extract` or give another `backbones.{backbone.name}.store`.")
    store = FeatureStore.open(backbone.store)
    recorded = store.provenance["backbone_name"]
    key = (store.provenance["dataset_name"], store.provenance["manifest_hash"])
    where = f"{key[0]} (store {backbone.store})"
    provenance = dict(store.provenance)

    def units(cells):
        return [ProbeUnit(store=str(store.path), specs=tuple(c.spec.to_dict() for c in chunk),
                          cell_ids=tuple(c.cell_id for c in chunk), options=options)
                for chunk in _chunks(cells, grid.chunk_size)]

    common = probe_settings(provenance, None, options)

    def settings_of(spec: dict) -> dict:
        return with_spec(common, spec)

    return store.metadata, key, where, recorded, units, settings_of


def _finetune_source(grid, backbone, config, options, adapters: dict):
    from extract.datasets import get_adapter

    if not backbone.base:
        raise UserError(f"backbone {backbone.name!r} has no base for the finetune runner; "
                        f"give `backbones.{backbone.name}.base` (or drop 'finetune' from `grid.runners`).")
    _check_base(backbone)
    if not grid.data.get("dataset") or not grid.data.get("root"):
        raise UserError("the finetune runner needs a dataset of images; give `data.dataset` and `data.root`.")
    adapter_options = dict(grid.data.get("options", {}))
    if not adapters:  # one adapter (and one metadata read) for every base
        adapter = get_adapter(grid.data["dataset"], grid.data["root"], **adapter_options)
        adapters.update(meta=adapter.metadata(), key=(adapter.name, adapter.manifest_hash()))
    key, where = adapters["key"], f"{adapters['key'][0]} (root {grid.data['root']})"
    per_task = options.get("conditions_per_task", DEFAULT_CONDITIONS_PER_TASK)
    runner_options = {k: v for k, v in options.items() if k != "conditions_per_task"}

    def units(cells):
        from analyze.finetune.runner import group_conditions

        by_spec = {c.spec: c for c in cells}
        conditions = group_conditions([c.spec for c in cells])
        if options.get("search") == "first":
            batches = [conditions]
        else:
            by_target = {}
            for members in conditions:
                by_target.setdefault(_target_name(members[0]), []).append(members)
            batches = [chunk for group in by_target.values() for chunk in _chunks(group, per_task)]
        return [FinetuneUnit(dataset=grid.data["dataset"], root=str(grid.data["root"]), adapter_options=adapter_options,
                             base=backbone.base, weights=backbone.weights,
                             specs=tuple(s.to_dict() for members in batch for s in members),
                             cell_ids=tuple(by_spec[s].cell_id for members in batch for s in members),
                             config=config, options=runner_options)
                for batch in batches]

    base_id = base_identity(backbone.base, backbone.weights)
    dataset = {"name": key[0], "manifest_hash": key[1], "options": adapter_options}

    common = finetune_settings(dataset=dataset, base=base_id, spec=None, config=config, options=runner_options)

    def settings_of(spec: dict) -> dict:
        return with_spec(common, spec)

    return adapters["meta"], key, where, backbone.base, units, settings_of


def pending_part(unit, done: list[bool]):
    """``unit`` without its complete work, or None when all of it is done.

    A probe chunk with any record missing is refitted whole (the same batch as before, so
    the same numbers). A finetune unit keeps only its conditions with a record missing:
    conditions are independent, except under ``search = "first"``, whose one search must
    see the same first condition, so that unit runs whole.
    """
    if all(done):
        return None
    if isinstance(unit, ProbeUnit) or unit.options.get("search") == "first":
        return unit
    condition = lambda d: json.dumps({k: v for k, v in d.items() if k != "seed"}, sort_keys=True)  # noqa: E731
    open_conditions = {condition(d) for d, ok in zip(unit.specs, done) if not ok}
    keep = [i for i, d in enumerate(unit.specs) if condition(d) in open_conditions]
    return replace(unit, specs=tuple(unit.specs[i] for i in keep), cell_ids=tuple(unit.cell_ids[i] for i in keep))


def _check_base(backbone) -> None:
    """A base is a registered name or an existing checkpoint (checked before any work starts)."""
    from extract.backbones import list_backbones

    base = str(backbone.base)
    if base in list_backbones() or Path(base).expanduser().is_file():
        return
    raise UserError(f"the base {base} of backbone {backbone.name!r} is neither a registered backbone nor a checkpoint "
                    f"file; train it with `biastransfer pretrain` or give another `backbones.{backbone.name}.base`.")


def _chunks(items, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _target_name(spec) -> str:
    return getattr(spec, "target", None) or f"{spec.attr_a}_or_{spec.attr_b}"


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
