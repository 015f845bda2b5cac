"""``biastransfer reproduce``: the papers' findings on the embedded avatars, each with a computed verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.cli.options import SCIENCE_DOC


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` verb."""
    p = sub.add_parser("reproduce", help="run the grids the papers' findings need on the avatars and write the "
                                         "findings table (reproduced / contradicted / inconclusive) and a report",
                       description="Renders the avatars, builds the bases of data/recipes/avatars-bases.toml and "
                                   "runs W&R's design: full finetunes (natural and skewz sets on the biased base and "
                                   "every control, the natural n-sweep, the 20% -> 30% curation sets on the ImageNet "
                                   "Lite0, Scratch and the biased base, the pairs experiment) and the same design on "
                                   "linear probes as a fast proxy. Writes findings/findings.csv and findings.md (one "
                                   "row per finding and runner: number, 95% interval, rule, verdict, deviation from "
                                   "the paper) and a report that leads with them. Resumable: existing outputs under "
                                   f"--out are reused; every stage prints its time. Definitions: {SCIENCE_DOC}.")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: work/reproduce)")
    p.add_argument("--preset", choices=("cpu", "paper", "quick", "tiny", "full"), default="cpu",
                   help="cpu (the default): every finding on the paper's targets with 3 seeds and n = 256, aimed "
                        "at 2 hours on 2 cores but estimated at about 5.7 (the run prints its time against 2 hours); "
                        "paper: the paper's "
                        "design (n = 1024, 5 seeds, n-sweep to 4096), for a GPU; quick: the probe proxy plus the "
                        "finetunes of findings 1-2 on one target, a look rather than a test (about 15 minutes on 2 "
                        "cores once the bases exist); tiny: 32 px, few cells, a smoke run of every stage; full: the "
                        "old name of cpu")
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
