"""``biastransfer sweep``: run a grid of probe/finetune cells."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.cli.options import add_auc_floor
from analyze.sweep.grid import load_grid, preset_names
from analyze.sweep.run import refit_lines, sweep
from extract.cli.parser import map_params
from extract.errors import UserError
from extract.parsing import split_list
from extract.paths import work_dir


# the grid keys that the library's errors name -> the flags that set them (extract.errors.UserError)
GRID_FLAGS = {"grid.targets": "--targets", "grid.sensitive": "--sensitive", "grid.runners": "--runners",
              "data.dataset": "--dataset", "data.root": "--root", "backbones.*.store": "--store *=PATH",
              "backbones.*.base": "--base *=NAME_OR_PATH", "backbones.*.stores.*": "--store *.*=PATH",
              "subsets.*.*": "--set subsets.*.*="}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` verb."""
    p = sub.add_parser("sweep", help="run a grid (preset or TOML) of probe/finetune cells; one JSON record per cell",
                       description=f"Run a grid of cells. Presets: {', '.join(preset_names())} (data/grids/).")
    p.add_argument("grid", help="grid preset name or TOML file")
    p.add_argument("--out", type=Path, default=None, help="results folder (default work/results/<grid name>)")
    p.add_argument("--skip-existing", action=argparse.BooleanOptionalAction, default=True,
                   help="skip cells whose records exist and were made with the same settings (default on; a record "
                        "made with other settings is refitted, with the reason printed; --no-skip-existing reruns "
                        "everything)")
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
    add_auc_floor(p)
    map_params(p, GRID_FLAGS)
    p.set_defaults(func=cmd_sweep)



def cli_overrides(args) -> list:
    """The explicit flags as ``(key, value)`` overrides, after the ``--set`` ones."""
    from analyze.sweep.grid import parse_value

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
    """Run ``biastransfer sweep`` on a grid of cells or a geography grid (the sweep's loader reads both)."""
    from analyze.sweep.grid import grid_kind, read_document

    # bases with a store per source (wr-geography); read without importing the geography package
    geography = grid_kind(read_document(args.grid)[1]) == "geography"
    if geography:
        from analyze.cli.geography import sweep_overrides

        overrides = sweep_overrides(args)
    else:
        overrides = cli_overrides(args)
    only = split_list(args.backbones) if args.backbones else None
    grid = load_grid(args.grid, overrides=overrides, backbones=only)
    out = args.out or work_dir() / "results" / grid.name
    if geography:
        from analyze.cli.geography import run_geography

        return run_geography(grid, out, args)
    summary = sweep(grid, out=out, skip_existing=args.skip_existing, n_jobs=args.n_jobs, scheduler=args.scheduler,
                    local_cluster=args.local_cluster, progress=not args.no_progress, dry_run=args.dry_run)
    counts = summary["status"].value_counts()
    units = summary.groupby(["runner", "backbone"]).size()
    print(f"grid {grid.name}: {len(summary)} cells ({', '.join(f'{n} {k}' for k, n in counts.items())}) "
          f"over {len(units)} backbone x runner pairs -> {out}")
    for line in refit_lines(summary):  # records made with other settings (or before records had a digest)
        print(line)
    if grid.cross_dataset:
        print("grid.cross_dataset = true: the bases are compared across datasets (the report says so).")
    if not args.dry_run:
        for line in flag_lines(summary, out, auc_floor=args.auc_floor):
            print(line)
        print(f"next: biastransfer collect {out} --out {out}.csv")
    return 0


def flag_lines(summary, out: Path, *, auc_floor: float) -> list[str]:
    """Per runner, the counts per diagnosis flag over the grid's cells whose records are in ``out``."""
    from analyze.metrics.diagnosis import diagnose_record, flag_counts, format_counts
    from analyze.results.records import read_record

    diagnoses: dict[str, list] = {}
    for cell, runner in zip(summary["cell_id"], summary["runner"]):
        path = Path(out) / f"{cell}.json"
        if path.is_file():
            diagnoses.setdefault(runner, []).append(diagnose_record(read_record(path), auc_floor=auc_floor))
    return [f"{runner}: {format_counts(flag_counts(found))}" for runner, found in sorted(diagnoses.items())]

