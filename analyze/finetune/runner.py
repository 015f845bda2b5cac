"""Full finetuning of a base on many finetuning subsets, in one long-lived process.

The paper's claim that finetuning *overwrites* pretrained bias is about full finetuning,
which changes the features (docs/science.md section 10); a linear probe cannot show it. This runner
finetunes every layer of a base (a registered name or a toolkit checkpoint) with a new
head on each cell's subset, following the paper's protocol (docs/science.md section 10; see :mod:`analyze.finetune.train`
and :mod:`analyze.finetune.search`), and writes one result record per cell, the same
records as the probe runner with ``runner = "finetune"``.

Speed: the base is loaded once; the rows of every cell and of the test set are decoded
once into a uint8 tensor (:class:`~analyze.finetune.data.ImageBank`, on the GPU when one is
used); each cell only copies the base, gathers its rows and trains. The per-cell overhead
(seconds outside training compute) is recorded in each record's ``timings``.

Example
-------
>>> specs = [Correlation("hat", "dark_skin", c, n=256, seed=s) for c in (0.0, 0.5, 1.0) for s in (0, 1)]  # doctest: +SKIP
>>> table = finetune_cells(specs, adapter=AvatarAdapter("avatars.h5"), base="smallcnn.scratch",
...                        context=RunContext(out="work/results/finetune"))                         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from analyze.config import EvalConfig, RunContext
from analyze.metrics.diagnosis import check_floor, diagnose_record
from analyze.finetune.data import ImageBank, is_random_init, load_base
from analyze.finetune.evaluate import (
    evaluate_run,
    finding4_metrics,
    evaluation_rows,
    scores_of,
    stereotype_direction,
)
from analyze.finetune.search import (
    DEFAULT_LRS,
    DEFAULT_WEIGHT_DECAYS,
    LEGACY_TRAINING,
    FinetuneConfig,
    build_net,
    prepare_replicates,
    resolve_engine,
    run_conditions,
)
from analyze.metrics import natural_over_represented_group
from analyze.results.records import (
    cell_id,
    make_record,
    read_record,
    record_exists,
    rows_digest,
    training_composition,
    write_record,
)
from extract.backbones import Backbone, create_backbone, save_checkpoint
from extract.devices import resolve_device
from extract.errors import UserError

SEARCH_SCOPES = ("condition", "first")
# what one run's training depends on besides its learning rate and weight decay (a record is reused only when they match)
TRAINING_KEYS = ("epochs", "batch_size", "momentum", "flip", "freeze", "freeze_bn", "schedule", "patience")
WAVE_RUNS = 32  # runs trained per engine call when several conditions are searched at once


def group_conditions(specs: Sequence) -> list[list]:
    """Specs grouped into conditions (identical but for ``seed``), in first-seen order."""
    groups: dict[str, list] = {}
    for spec in specs:
        key = json.dumps({k: v for k, v in spec.to_dict().items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(spec)
    for members in groups.values():
        seeds = [s.seed for s in members]
        if len(set(seeds)) != len(seeds):
            raise UserError(f"the cells repeat seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} "
                            "within one condition; give each replicate its own seed.")
    return list(groups.values())


def base_factory(base: Backbone, base_name: str):
    """``make_base(seed)``: a random-init base is re-initialised from each replicate's seed
    (as the paper's Scratch runs differ in their init); a pretrained one is copied."""
    if is_random_init(base):
        size = base.preprocess.crop
        return lambda seed: create_backbone(base_name, seed=int(seed), image_size=size)
    return lambda seed: replace(base, model=copy.deepcopy(base.model))


@dataclass(frozen=True)
class FinetuneOptions:
    """Where a finetune grid's base, test rows and compute come from (options outside the protocol).

    Parameters
    ----------
    weights : path, optional
        Local weights file for a registered base entry that loads weights.
    test : None, spec with ``indices(meta)`` (e.g. ``TestResample``), or positions
        Test rows; None: the dataset's test split.
    image_size : int, optional
        Resize images to this side (default: the base's; a random-init base adopts the
        dataset's native size).
    device : {"auto", "cpu", "cuda", "cuda:N"}
    search : {"condition", "first"}
        Search the grid for every condition, or once on the first condition and reuse
        its setting (the paper's protocol: one search per base and attribute).
    save_backbones : path, optional
        Folder for the finetuned backbones (``<cell_id>.pt``, loadable by
        :func:`~extract.backbones.create_backbone`).
    num_workers : int, optional
        DataLoader processes that decode the images of a file dataset (default: all cores
        but one; 0 decodes in this process, as sweep workers do).
    """

    weights: str | Path | None = None
    test: object = None
    image_size: int | None = None
    device: str = "auto"
    search: str = "condition"
    save_backbones: str | Path | None = None
    num_workers: int | None = None

    def __post_init__(self):
        if self.search not in SEARCH_SCOPES:
            raise UserError(f"`search` must be one of {SEARCH_SCOPES}, got {self.search!r}.")


def finetune_cells(specs: Sequence, *, adapter, base: str | Path, config: FinetuneConfig = FinetuneConfig(),
                   evaluation: EvalConfig = EvalConfig(), context: RunContext = RunContext(),
                   options: FinetuneOptions = FinetuneOptions()) -> pd.DataFrame:
    """Finetune ``base`` on every cell of ``specs`` and write one record per cell.

    Parameters
    ----------
    specs : sequence of subset specs
        Cells (e.g. :class:`~analyze.subsets.Correlation`); those equal but for ``seed``
        form one condition whose seeds are its replicates (grid search over them).
    adapter : dataset adapter
    base : str or Path
        Registered ``arch.tag`` name or toolkit checkpoint.
    config : FinetuneConfig
        Grid, epochs, batch size, momentum, flips, frozen stages, schedule and engine.
    evaluation : EvalConfig
        Threshold policy (applied to logits, docs/science.md section 5), the AUC floor
        under which a cell is diagnosed ``weak_task`` and the group column (default: each
        spec's ``sensitive``).
    context : RunContext
        ``out``: folder of the JSON records (None: nothing written, the table is returned);
        ``overwrite``: redo cells whose record exists (by default a condition whose records
        all exist and were trained as ``config`` trains, :func:`same_training`, is skipped;
        one with any record missing or trained otherwise is run whole, since the grid search
        needs every replicate, and all its records are rewritten); ``progress``.
    options : FinetuneOptions
        Base weights, test rows, image size, device, search scope, saved backbones, decoders.

    Returns
    -------
    DataFrame, one row per cell: ``cell_id``, ``status`` ("written", "skipped", or "computed" when
    ``out`` is None), hyperparameters chosen, headline metrics and timings (seconds).
    """
    check_floor(evaluation.auc_floor)
    if not specs:
        raise UserError("no cells to finetune; pass at least one subset spec in `specs`.")
    began = time.perf_counter()
    meta = adapter.metadata()
    dev = resolve_device(options.device)
    native = getattr(adapter, "image_shape", (None,))[0]
    base_backbone = load_base(base, weights=options.weights, seed=0, image_size=options.image_size, native_size=native)
    base_name = str(base)
    todo, skipped = _split_done(group_conditions(specs), base_name, context.out, context.overwrite, config)
    summary = [{"cell_id": cid, "status": "skipped"} for cid in skipped]
    if not todo:
        return pd.DataFrame(summary)
    plans = [_plan_condition(members, meta, evaluation.sensitive, options.test) for members in todo]
    rows = np.concatenate([p["rows"] for p in plans])
    bank = ImageBank.from_adapter(adapter, base_backbone.preprocess, rows, num_workers=options.num_workers,
                                  progress=context.progress)
    if dev.type == "cuda":
        bank.to(dev)
        torch.backends.cudnn.benchmark = True
    n_cells = sum(len(p["replicates"]) for p in plans)
    ctx = {"adapter": adapter, "dataset": {"name": adapter.name, "manifest_hash": adapter.manifest_hash()},
           "meta": meta, "bank": bank, "base": base_backbone, "base_name": base_name, "device": dev,
           "policy": evaluation.policy, "out": context.out, "save_backbones": options.save_backbones,
           "shared_seconds": (time.perf_counter() - began) / n_cells, "search": options.search,
           "auc_floor": evaluation.auc_floor}
    summary += _run_plans(plans, config, base_factory(base_backbone, base_name), ctx, progress=context.progress)
    return pd.DataFrame(summary)


def _waves(plans: list, runs_per_plan) -> list[list]:
    """Consecutive plans in waves of about ``WAVE_RUNS`` runs (one engine call each, bounding
    how many runs' best weights are held at once)."""
    waves, current, runs = [], [], 0
    for plan in plans:
        current.append(plan)
        runs += runs_per_plan(plan)
        if runs >= WAVE_RUNS:
            waves.append(current)
            current, runs = [], 0
    return waves + ([current] if current else [])


def _run_plans(plans, config, make_base, context, *, progress) -> list[dict]:
    """Run every planned condition under one progress bar; the summary rows of their cells.

    Conditions are trained together in waves (their runs share the engine's stacks). With
    ``search="first"`` the first condition runs alone and the setting it selects is the only
    one tried on the others.
    """
    summary = []
    total_runs = sum(len(p["replicates"]) for p in plans) * len(config.settings())
    desc = f"finetune {Path(context['base_name']).name}"
    with tqdm(total=total_runs, unit="run", desc=desc, disable=not progress) as bar:
        waves = [plans[:1], plans[1:]] if context["search"] == "first" else [plans]
        for index, group in enumerate(waves):
            for wave in _waves(group, lambda p: len(p["replicates"]) * len(config.settings())):
                outcomes = run_conditions([p["replicates"] for p in wave], bank=context["bank"], make_base=make_base,
                                          config=config, device=context["device"], on_run=lambda: bar.update(1))
                for outcome, plan in zip(outcomes, wave):
                    summary += _finish_condition(outcome, plan, config, make_base, context)
            if context["search"] == "first" and index == 0:
                chosen = outcomes[0].selection
                config = replace(config, lrs=(chosen.lr,), weight_decays=(chosen.weight_decay,))
                bar.total = bar.n + sum(len(p["replicates"]) for p in plans[1:])
                bar.refresh()
    return summary


def same_training(record: dict, config: FinetuneConfig) -> bool:
    """True when ``record`` was trained under ``config``'s per-run training (:data:`TRAINING_KEYS`).

    A record from before ``schedule`` and ``patience`` existed lacks them and trained with
    :data:`~analyze.finetune.search.LEGACY_TRAINING`; so a changed default training is never
    matched by old records (the grid is not compared: ``search="first"`` narrows it per condition).
    """
    hyper = record.get("hyperparameters") or {}
    want = config.to_dict()
    return all(hyper.get(key, LEGACY_TRAINING.get(key)) == want[key] for key in TRAINING_KEYS)


def _reusable(out, cid: str, config: FinetuneConfig) -> bool:
    return record_exists(out, cid) and same_training(read_record(Path(out) / f"{cid}.json"), config)


def _split_done(conditions, base_name, out, overwrite, config):
    """Conditions with at least one missing record (or one trained otherwise than ``config``),
    and the ids of the complete ones' cells."""
    todo, skipped = [], []
    for members in conditions:
        ids = [cell_id(runner="finetune", backbone=base_name, spec=s.to_dict()) for s in members]
        if out is not None and not overwrite and all(_reusable(out, cid, config) for cid in ids):
            skipped += ids
        else:
            todo.append(members)
    return todo, skipped


def _plan_condition(members, meta, sensitive, test) -> dict:
    """Replicates (rows, labels), the group column and test rows of one condition."""
    column = sensitive or getattr(members[0], "sensitive", None)
    if column is None:
        raise UserError(f"a {members[0].kind!r} spec has no sensitive attribute; pass `sensitive`.")
    replicates = prepare_replicates(members, meta)
    rows_test = evaluation_rows(meta, replicates[0].labels, column, test)
    used = [rows_test] + [np.concatenate([r.rows.train, r.rows.val]) for r in replicates]
    return {"replicates": replicates, "sensitive": column, "test": rows_test, "rows": np.concatenate(used)}


def _finish_condition(outcome, plan, config, make_base, ctx) -> list[dict]:
    """Evaluate the chosen run of every replicate, write its record (and backbone)."""
    selection, n_reps = outcome.selection, len(outcome.replicates)
    groups = ctx["meta"][plan["sensitive"]].to_numpy()
    natural = natural_over_represented_group(outcome.replicates[0].labels, groups, ctx["meta"]["split"])
    test_images = ctx["bank"].take(plan["test"])
    rows = []
    for rep, run in zip(outcome.replicates, outcome.chosen):
        began = time.perf_counter()
        net = build_net(make_base, rep.spec.seed, freeze=config.freeze, freeze_bn=config.freeze_bn, device=ctx["device"])
        net.load_state_dict(run.state)
        scores = scores_of(net, test_images, device=ctx["device"])
        train, val = rep.rows.train, rep.rows.val
        direction, source = stereotype_direction(natural, rep.labels[train], groups[train])
        metrics = evaluate_run(test_scores=scores, val_scores=run.val_scores, labels=rep.labels, groups=groups,
                               split=rep.rows, test=plan["test"], direction=direction, policy=ctx["policy"])
        metrics |= finding4_metrics(test_scores=scores, val_scores=run.val_scores, labels=rep.labels, groups=groups,
                                    split=rep.rows, test=plan["test"], seed=rep.spec.seed)  # r4_* columns
        eval_seconds = time.perf_counter() - began
        hyper = {"lr": selection.lr, "weight_decay": selection.weight_decay, "best_epoch": run.best_epoch,
                 **{k: v for k, v in config.to_dict().items() if k not in ("lrs", "weight_decays")},
                 "engine": resolve_engine(config.engine, ctx["device"]),
                 "grid": {"lrs": list(config.lrs), "weight_decays": list(config.weight_decays)},
                 "search": ctx["search"], "selection_rule": "lowest mean best-epoch validation loss over replicates",
                 "grid_summary": selection.summary.to_dict(orient="records"), "policy": ctx["policy"]}
        timings = {"train_s": run.seconds, "search_train_s": outcome.train_seconds / n_reps,
                   "setup_s": outcome.setup_seconds / n_reps, "eval_s": eval_seconds,
                   "shared_startup_s": ctx["shared_seconds"], "decode_s_total": ctx["bank"].decode_seconds}
        facts = {"over_represented_group": direction, "direction_source": source,
                 "composition": training_composition(rep.labels[train], groups[train])}
        parts = {"metrics": metrics, "hyper": hyper, "timings": timings, "facts": facts}
        rows.append(_write_cell(rep, run, net, parts, plan, ctx))
    return rows


def _write_cell(rep, run, net, parts: dict, plan, ctx) -> dict:
    """Record (and checkpoint) of one cell; ``parts``: its metrics, hyperparameters, timings and facts."""
    metrics, hyper, timings, facts = parts["metrics"], parts["hyper"], parts["timings"], parts["facts"]
    spec = rep.spec.to_dict()
    cid = cell_id(runner="finetune", backbone=ctx["base_name"], spec=spec)
    began = time.perf_counter()
    checkpoint = None
    if ctx["save_backbones"] is not None:
        checkpoint = str(_save_backbone(net, cid, spec, hyper, ctx))
    backbone_config = {**ctx["base"].config(), "seed": rep.spec.seed if is_random_init(ctx["base"]) else ctx["base"].seed}
    extra = {"finetune": {"val_curve": run.val_curve, "train_curve": run.train_curve, "device": str(ctx["device"]),
                          "sensitive": plan["sensitive"], "over_represented_group": facts["over_represented_group"],
                          "direction_source": facts["direction_source"], "checkpoint": checkpoint},
             "composition": facts["composition"],
             "rows_digest": rows_digest(spec, rep.rows.train, rep.rows.val, plan["test"])}
    sizes = {"n_train": len(rep.rows.train), "n_val": len(rep.rows.val), "n_test": len(plan["test"])}
    timings["write_s"] = time.perf_counter() - began
    timings["overhead_s"] = (timings["setup_s"] + timings["eval_s"] + timings["write_s"]
                             + timings["shared_startup_s"])
    record = make_record(runner="finetune", backbone=ctx["base_name"], spec=spec, metrics=metrics,
                         hyperparameters=hyper, sections={"backbone_config": backbone_config, "dataset": ctx["dataset"],
                                                          "sizes": sizes, "timings": timings}, extra=extra)
    diagnosis = diagnose_record(record, auc_floor=ctx["auc_floor"])
    record["diagnosis"] = diagnosis.to_dict()
    if ctx["out"] is not None:
        write_record(ctx["out"], record)
    return {"cell_id": cid, "status": "written" if ctx["out"] is not None else "computed",
            "lr": hyper["lr"], "weight_decay": hyper["weight_decay"], "best_epoch": run.best_epoch,
            "auc": metrics["auc"], "fpr_gap_stereotype": metrics["fpr_gap_stereotype"], **diagnosis.columns(),
            **timings}


def _save_backbone(net, cid: str, spec: dict, hyper: dict, ctx) -> Path:
    folder = Path(ctx["save_backbones"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {folder} ({exc.strerror}); choose a writable `save_backbones` folder.") from None
    base = ctx["base"]
    if base.arch is None:
        raise UserError(f"cannot save a finetuned {base.name}: its architecture is not recorded; drop `save_backbones`.")
    meta = {"name": cid, "base": ctx["base_name"], "condition": spec, "seed": spec.get("seed"),
            "hyperparameters": {k: hyper[k] for k in ("lr", "weight_decay", "best_epoch", "epochs", "freeze", "freeze_bn")},
            "runner": "finetune", "dataset": ctx["adapter"].name}
    return save_checkpoint(folder / f"{cid}.pt", net.backbone, arch=base.arch, arch_kwargs=base.arch_kwargs,
                           preprocess=ctx["base"].preprocess, meta=meta)


__all__ = ["DEFAULT_LRS", "DEFAULT_WEIGHT_DECAYS", "FinetuneConfig", "FinetuneOptions", "TRAINING_KEYS", "base_factory",
           "finetune_cells", "group_conditions", "same_training"]
