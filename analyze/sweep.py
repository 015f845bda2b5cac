"""``biastransfer sweep``: expand a grid into cells and run them, one JSON record per cell.

A grid (a preset of ``data/grids/`` or a TOML file, see :mod:`analyze.sweep_grid`) names
backbones x subset specs x runners x seeds. The sweep

1. expands and checks every cell before fitting anything (an infeasible cell stops the
   sweep with its one-sentence error, :mod:`analyze.sweep_plan`);
2. skips work whose records all exist and read back whole (``skip_existing``, the
   default), so a killed sweep resumes where it stopped; a probe chunk with any record
   missing is refitted whole, so resumed and uninterrupted runs fit the same batches
   (:func:`~analyze.sweep_plan.pending_part`);
3. runs the units in this process, in ``n_jobs`` local processes (joblib/loky) or on a
   Dask cluster, ONE torch/BLAS thread per worker (:mod:`analyze.sweep_exec`);
4. adds the ``sweep`` annotation (grid, backbone label, ``base_kind``, training-set
   composition and ``skew``) to each record and writes it atomically as its unit finishes.

The resolved grid is written to ``<out>/_grids/<name>-<hash>.json`` (provenance).
``biastransfer collect <out>`` then folds the records into one table.

Example
-------
>>> summary = sweep("demo", out="work/results/demo", n_jobs=2)          # doctest: +SKIP
>>> summary["status"].value_counts()                                     # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analyze.results import record_exists, write_record
from analyze.sweep_exec import dask_client, execute
from analyze.sweep_grid import Grid, load_grid, preset_names
from analyze.sweep_plan import SweepPlan, pending_part, plan_sweep
from extract.errors import UserError
from extract.paths import work_dir

__all__ = ["load_grid", "plan_sweep", "register", "sweep"]


def sweep(grid: Grid | str | Path, *, out: str | Path | None = None, overrides=(), backbones=None,
          skip_existing: bool = True, n_jobs: int = 1, scheduler: str | None = None,
          local_cluster: int | None = None, client=None, progress: bool = True,
          dry_run: bool = False) -> pd.DataFrame:
    """Run every cell of ``grid`` and write one record per cell into ``out``.

    Parameters
    ----------
    grid : Grid, preset name or TOML path
    out : path, optional
        Results folder (default ``work/results/<grid name>``).
    overrides, backbones
        Passed to :func:`~analyze.sweep_grid.load_grid` when ``grid`` is not a Grid.
    skip_existing : bool
        Skip work units whose records all exist and read back whole.
    n_jobs : int
        Local worker processes (joblib loky), one thread each.
    scheduler : str, optional
        ``tcp://HOST:PORT`` of a Dask scheduler; ``local_cluster``: start a Dask
        ``LocalCluster`` with this many single-thread workers; ``client``: an existing
        ``dask.distributed.Client``. At most one of the three.
    progress : bool
        Show a progress bar over cells.
    dry_run : bool
        Plan and check only; nothing is fitted or written.

    Returns
    -------
    DataFrame, one row per cell in grid order: ``cell_id``, ``runner``, ``backbone``,
    ``base_kind``, ``status`` ("written", "skipped", or with ``dry_run`` "to run").
    """
    if sum(x is not None for x in (scheduler, local_cluster, client)) > 1:
        raise UserError("give at most one of --scheduler, --local-cluster and a client.")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise UserError(f"--n-jobs must be a positive integer, got {n_jobs!r}.")
    if not isinstance(grid, Grid):
        grid = load_grid(grid, overrides=overrides, backbones=backbones)
    out = Path(out) if out is not None else work_dir() / "results" / grid.name
    plan = plan_sweep(grid)
    todo = [pending_part(u, [skip_existing and record_exists(out, c) for c in u.cell_ids]) for u in plan.units]
    todo = [u for u in todo if u is not None]
    pending = {c for u in todo for c in u.cell_ids}
    if dry_run:
        return _summary(plan, pending, "to run")
    _write_manifest(out, grid)
    if not todo:
        return _summary(plan, pending, "written")
    total = sum(len(u.cell_ids) for u in todo)
    with tqdm(total=total, unit="cell", desc=f"sweep {grid.name}", disable=not progress) as bar:
        with dask_client(scheduler=scheduler, local_cluster=local_cluster) as own_client:
            for _unit, records in execute(todo, n_jobs=n_jobs, client=client or own_client):
                for record in records:
                    record["sweep"] = plan.annotations[record["cell_id"]]
                    write_record(out, record)
                bar.update(len(records))
    return _summary(plan, pending, "written")


def _summary(plan: SweepPlan, pending: set, status: str) -> pd.DataFrame:
    return pd.DataFrame([{"cell_id": c.cell_id, "runner": c.runner, "backbone": c.backbone, "base_kind": c.base_kind,
                          "status": status if c.cell_id in pending else "skipped"} for c in plan.cells],
                        columns=["cell_id", "runner", "backbone", "base_kind", "status"])


def _write_manifest(out: Path, grid: Grid) -> Path:
    """The resolved grid as JSON under ``<out>/_grids/`` (not a record: collect ignores it)."""
    text = json.dumps(grid.to_dict(), indent=1, sort_keys=True)
    folder = out / "_grids"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    except OSError as exc:
        raise UserError(f"cannot write into {out} ({exc.strerror}); choose a writable --out folder.") from None
    path = folder / f"{grid.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.json"
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


# -- command line --------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` verb."""
    p = sub.add_parser("sweep", help="run a grid (preset or TOML) of probe/finetune cells; one JSON record per cell",
                       description=f"Run a grid of cells. Presets: {', '.join(preset_names())} (data/grids/).")
    p.add_argument("grid", help="grid preset name or TOML file")
    p.add_argument("--out", type=Path, default=None, help="results folder (default work/results/<grid name>)")
    p.add_argument("--skip-existing", action=argparse.BooleanOptionalAction, default=True,
                   help="skip cells whose records exist (default on; --no-skip-existing reruns everything)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--n-jobs", type=int, default=1, help="local worker processes, one thread each (default 1)")
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on this Dask scheduler")
    where.add_argument("--local-cluster", type=int, default=None, metavar="N",
                       help="run on a Dask LocalCluster with N single-thread workers")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a grid key, e.g. grid.targets=hat,eyewear or probe.Cs=0.1,1 (repeatable)")
    p.add_argument("--targets", default=None, help="target attributes, comma-separated (grid.targets)")
    p.add_argument("--sensitive", default=None, help="sensitive attribute (grid.sensitive)")
    p.add_argument("--runners", default=None, help="probe, finetune or probe,finetune (grid.runners)")
    p.add_argument("--store", action="append", default=[], metavar="NAME=PATH", help="feature store of backbone NAME")
    p.add_argument("--base", action="append", default=[], metavar="NAME=BASE", help="finetune base of backbone NAME")
    p.add_argument("--dataset", default=None, help="dataset adapter for finetunes (data.dataset)")
    p.add_argument("--root", default=None, help="dataset root for finetunes (data.root)")
    p.add_argument("--n", default=None, help="training sizes of every subset block, comma-separated ('all' allowed)")
    p.add_argument("--seeds", default=None, help="seeds of every subset block: a list, or a count")
    p.add_argument("--backbones", default=None, help="run only these backbones (comma-separated names)")
    p.add_argument("--dry-run", action="store_true", help="check and count the cells; fit nothing")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_sweep)


def cli_overrides(args) -> list:
    """The explicit flags as ``(key, value)`` overrides, after the ``--set`` ones."""
    from analyze.sweep_grid import parse_value

    pairs = [("grid.targets", args.targets), ("grid.sensitive", args.sensitive), ("grid.runners", args.runners),
             ("data.dataset", args.dataset), ("data.root", args.root), ("subsets.*.n", args.n),
             ("subsets.*.seeds", args.seeds)]
    overrides = list(args.overrides)
    overrides += [(k, parse_value(v) if k not in ("data.root", "grid.sensitive") else v)
                  for k, v in pairs if v is not None]
    for flag, key in (("store", "store"), ("base", "base")):
        for item in getattr(args, flag):
            if "=" not in item:
                raise UserError(f"--{flag} takes NAME=PATH (the backbone's name in the grid), got {item!r}.")
            name, value = item.split("=", 1)
            overrides.append((f"backbones.{name.strip()}.{key}", value.strip()))
    return overrides


def cmd_sweep(args) -> int:
    only = [b.strip() for b in args.backbones.split(",") if b.strip()] if args.backbones else None
    grid = load_grid(args.grid, overrides=cli_overrides(args), backbones=only)
    out = args.out or work_dir() / "results" / grid.name
    summary = sweep(grid, out=out, skip_existing=args.skip_existing, n_jobs=args.n_jobs, scheduler=args.scheduler,
                    local_cluster=args.local_cluster, progress=not args.no_progress, dry_run=args.dry_run)
    counts = summary["status"].value_counts()
    units = summary.groupby(["runner", "backbone"]).size()
    print(f"grid {grid.name}: {len(summary)} cells ({', '.join(f'{n} {k}' for k, n in counts.items())}) "
          f"over {len(units)} backbone x runner pairs -> {out}")
    if not args.dry_run:
        print(f"next: biastransfer collect {out} --out {out}.csv")
    return 0
