"""``biastransfer demo``: the quick-start on the embedded avatar dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` verb."""
    p = sub.add_parser("demo", help="the quick-start on the embedded avatar dataset: render, extract, probe, report")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: work/demo)")
    p.add_argument("--n", type=int, default=3000, help="avatars to render (default 3000)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from analyze.demo import run_demo

    run_demo(out=args.out, n=args.n, size=args.size, seed=args.seed, workers=args.workers)
    return 0
