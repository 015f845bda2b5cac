"""The finetune runner: full finetunes of one base on the grid's image dataset.

A unit holds finetune cells of one base and one target, ``conditions_per_task`` conditions
(a condition = the replicates of one spec) per unit, or all of a base's conditions when
``search = "first"``, whose one search must see every condition. Conditions are
independent otherwise, so a resumed unit keeps only its conditions with a record missing.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from analyze.runners.base import Source, chunks
from analyze.runners.registry import register_runner
from extract.errors import UserError

CONFIG_KEYS = ("lrs", "weight_decays", "epochs", "batch_size", "momentum", "flip", "freeze", "freeze_bn",
               "schedule", "patience", "engine")
DEFAULT_CONDITIONS_PER_TASK = 4


@dataclass(frozen=True)
class FinetuneUnit:
    """Finetune conditions of one base (all replicates of each)."""

    runner = "finetune"
    dataset: str
    root: str
    adapter_options: dict
    base: str
    weights: str | None
    specs: tuple[dict, ...]
    cell_ids: tuple[str, ...]
    config: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


def finetune_options(table: dict) -> tuple[dict, dict]:
    """The grid's ``[finetune]`` table split into FinetuneConfig keys (checked) and the runner's other options."""
    from analyze.finetune.search import FinetuneConfig  # torch: only when finetuning

    config = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items() if k in CONFIG_KEYS}
    FinetuneConfig(**config)  # raises the one-sentence error of a bad setting now
    if table.get("search", "condition") not in ("condition", "first"):
        raise UserError(f"finetune.search must be 'condition' or 'first', got {table['search']!r}.")
    options = {k: v for k, v in table.items() if k not in CONFIG_KEYS}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}, options


def check_base(backbone) -> None:
    """A base is a registered name or an existing checkpoint (checked before any work starts)."""
    from extract.backbones import list_backbones

    base = str(backbone.base)
    if base in list_backbones() or Path(base).expanduser().is_file():
        return
    raise UserError(f"the base {base} of backbone {backbone.name!r} is neither a registered backbone nor a checkpoint "
                    f"file; train it with `biastransfer pretrain` or give another `backbones.{backbone.name}.base`.")


def target_name(spec) -> str:
    """The spec's label column: its target, or ``A_or_B`` for an underrepresentation pair."""
    return getattr(spec, "target", None) or f"{spec.attr_a}_or_{spec.attr_b}"


def _dataset(grid, shared: dict) -> tuple:
    """(metadata, (name, manifest hash), adapter options): one adapter and one metadata read per sweep."""
    from extract.datasets import get_adapter

    if not grid.data.get("dataset") or not grid.data.get("root"):
        raise UserError("the finetune runner needs a dataset of images; give `data.dataset` and `data.root`.")
    options = dict(grid.data.get("options", {}))
    if not shared:
        adapter = get_adapter(grid.data["dataset"], grid.data["root"], **options)
        shared.update(meta=adapter.metadata(), key=(adapter.name, adapter.manifest_hash()))
    return shared["meta"], shared["key"], options


@register_runner
class FinetuneRunner:
    """Full finetunes of a backbone's base (``backbones.NAME.base``) on ``data.dataset``."""

    name = "finetune"
    records_as = "finetune"
    proxy = False  # the papers' own runner
    records_base_path = True  # its records name the base: a registered name or a checkpoint path
    cell_grid = True  # a grid of cells (grid.runners) takes it

    def source(self, grid, backbone, specs: list, shared: dict) -> Source:
        from analyze.sweep.settings import base_identity, finetune_settings, with_spec

        if not backbone.base:
            raise UserError(f"backbone {backbone.name!r} has no base for the finetune runner; "
                            f"give `backbones.{backbone.name}.base` (or drop 'finetune' from `grid.runners`).")
        check_base(backbone)
        config, options = finetune_options(grid.finetune)
        meta, key, adapter_options = _dataset(grid, shared)
        per_task = options.get("conditions_per_task", DEFAULT_CONDITIONS_PER_TASK)
        runner_options = {k: v for k, v in options.items() if k != "conditions_per_task"}
        unit = unit_maker(grid, backbone, adapter_options, config, runner_options)

        def units(cells):
            from analyze.finetune.runner import group_conditions

            by_spec = {c.spec: c for c in cells}
            conditions = group_conditions([c.spec for c in cells])
            if options.get("search") == "first":
                batches = [conditions]
            else:
                by_target = {}
                for members in conditions:
                    by_target.setdefault(target_name(members[0]), []).append(members)
                batches = [chunk for group in by_target.values() for chunk in chunks(group, per_task)]
            return [unit(specs=tuple(s.to_dict() for members in batch for s in members),
                         cell_ids=tuple(by_spec[s].cell_id for members in batch for s in members))
                    for batch in batches]

        dataset = {"name": key[0], "manifest_hash": key[1], "options": adapter_options}
        common = finetune_settings(dataset=dataset, base=base_identity(backbone.base, backbone.weights), spec=None,
                                   config=config, options=runner_options)
        return Source(meta=meta, key=key, where=f"{key[0]} (root {grid.data['root']})",
                      location=str(grid.data.get("root")), what=f"the finetune data of backbone {backbone.name!r}",
                      recorded=backbone.base, units=units, settings_of=lambda spec: with_spec(common, spec),
                      group=options.get("sensitive") or grid.sensitive)

    def run(self, unit: FinetuneUnit, *, in_pool: bool = False) -> list[dict]:
        from analyze.config import EvalConfig, RunContext
        from analyze.finetune.runner import FinetuneOptions, finetune_cells
        from analyze.finetune.search import FinetuneConfig
        from analyze.results.records import read_record
        from analyze.subsets import spec_from_dict, test_rows_option
        from extract.datasets import get_adapter

        specs = [spec_from_dict(d) for d in unit.specs]
        options = dict(unit.options)
        # a unit holds one target, so one resampled test set serves it
        test = test_rows_option(options.pop("test", "split"), specs[0].target,
                                options.get("sensitive") or specs[0].sensitive)
        config = FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in unit.config.items()})
        adapter = get_adapter(unit.dataset, unit.root, **unit.adapter_options)
        with tempfile.TemporaryDirectory(prefix="biastransfer-finetune-") as tmp:
            # inside a pool worker images are decoded here: a worker cannot start DataLoader processes
            evaluation = EvalConfig(**{k: options.pop(k) for k in ("policy", "auc_floor", "sensitive") if k in options})
            finetune_cells(specs, adapter=adapter, base=unit.base, config=config, evaluation=evaluation,
                           context=RunContext(out=tmp, overwrite=True, progress=False),
                           options=FinetuneOptions(weights=unit.weights, test=test, num_workers=0 if in_pool else None,
                                                   **options))
            return [read_record(path) for path in sorted(Path(tmp).glob("*.json"))]

    def pending(self, unit: FinetuneUnit, done: list[bool]):
        if all(done):
            return None
        if unit.options.get("search") == "first":  # its one search must see the same first condition
            return unit
        condition = lambda d: json.dumps({k: v for k, v in d.items() if k != "seed"}, sort_keys=True)  # noqa: E731
        open_conditions = {condition(d) for d, ok in zip(unit.specs, done) if not ok}
        keep = [i for i, d in enumerate(unit.specs) if condition(d) in open_conditions]
        return replace(unit, specs=tuple(unit.specs[i] for i in keep), cell_ids=tuple(unit.cell_ids[i] for i in keep))

    def stores(self, unit: FinetuneUnit) -> tuple[str, ...]:
        return ()  # its memory is the model's and the images', not a store's

    def check_fit(self, record: dict, flag) -> None:
        """Diagnosis flags of how a finetune was fitted (:func:`analyze.metrics.diagnosis.diagnose_record`):
        the chosen learning rate or best epoch at an edge of its grid, curves that did not settle.

        ``epochs_at_edge``: the best validation epoch is the first, or the last of the epoch
        budget (``epochs``). Under early stopping (``patience`` > 0) a run that stopped early
        ends ``patience`` epochs after its best, so a best epoch at the budget's end means
        the run was still improving when the budget ran out: undertrained, flagged as before.
        """
        from analyze.metrics.diagnosis import _curve_problem, _finite, at_edge, edge_reason

        hyper = record.get("hyperparameters") or {}
        grid = (hyper.get("grid") or {}).get("lrs")
        edge = at_edge(hyper.get("lr"), grid)
        flag("lr_at_edge", edge_reason("lr", hyper.get("lr"), edge, grid))
        best, epochs = hyper.get("best_epoch"), hyper.get("epochs")
        if _finite(best) and _finite(epochs) and epochs >= 2 and best in (1, epochs):
            where = "first" if best == 1 else "last"
            still = " (still improving when the budget ran out)" if best == epochs and hyper.get("patience") else ""
            flag("epochs_at_edge", f"the best epoch is the {where} of {int(epochs)}{still}")
        run = record.get("finetune") or {}
        flag("not_converged", _curve_problem(run.get("train_curve"), run.get("val_curve")))


def unit_maker(grid, backbone, adapter_options: dict, config: dict, options: dict):
    """A :class:`FinetuneUnit` maker for one base, given its specs and cell ids."""
    def unit(*, specs, cell_ids) -> FinetuneUnit:
        return FinetuneUnit(dataset=grid.data["dataset"], root=str(grid.data["root"]), adapter_options=adapter_options,
                            base=backbone.base, weights=backbone.weights, specs=specs, cell_ids=cell_ids,
                            config=config, options=options)
    return unit


__all__ = ["CONFIG_KEYS", "DEFAULT_CONDITIONS_PER_TASK", "FinetuneRunner", "FinetuneUnit", "check_base",
           "finetune_options", "target_name"]
