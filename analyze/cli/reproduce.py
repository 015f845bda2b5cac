"""``biastransfer reproduce``: the papers' findings on the embedded avatars, each with a computed verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.cli.options import SCIENCE_DOC


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` verb."""
    p = sub.add_parser("reproduce", help="run the grids the papers' findings need on the avatars and write the "
                                         "findings table (reproduced / contradicted / inconclusive) and a report",
                       description="Renders the avatars, builds the bases of data/recipes/avatars-bases.toml, runs "
                                   "probe and finetune grids, the pairs experiment and Ranjit et al.'s finetunes (rows R1-R3b: "
                                   "retention, new biases, transfer), and writes "
                                   "findings/findings.csv and findings.md (one row per finding: number, 95% "
                                   "interval, rule, verdict) and a report that leads with them. Resumable: existing "
                                   f"outputs under --out are reused. Definitions: {SCIENCE_DOC}.")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: work/reproduce)")
    p.add_argument("--preset", choices=("full", "tiny"), default="full",
                   help="grid sizes: full (the default; about 40 minutes on 2 cores) or tiny (32 px, few cells: a smoke "
                        "run of every stage)")
    p.add_argument("--seeds", type=int, default=None, help="replicate seeds of every grid (default: the preset's)")
    p.add_argument("--geography", type=Path, default=None,
                   help="folder of a geography experiment's results (findings.csv) for W&R's geographic finding")
    p.add_argument("--no-imagenet", action="store_true", help="leave out the ImageNet EfficientNet-Lite0 base")
    p.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from dataclasses import replace

    from analyze.reproduce.run import PRESETS, run_reproduce
    from extract.errors import UserError
    from extract.paths import work_dir

    config = PRESETS[args.preset]
    changes = {}
    if args.seeds is not None:
        if args.seeds < 2:
            raise UserError(f"--seeds must be at least 2 (an interval needs two replicates), got {args.seeds}.")
        changes.update(seeds=tuple(range(args.seeds)), finetune_seeds=tuple(range(args.seeds)))
    if args.no_imagenet:
        changes["imagenet"] = False
    if args.workers is not None:
        changes["workers"] = args.workers
    run_reproduce(out=args.out or work_dir() / "reproduce", config=replace(config, **changes),
                  geography=args.geography)
    return 0
