"""``biastransfer collect``: fold result records into one tidy table."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from analyze.cli.options import add_auc_floor
from analyze.results.tables import write_table


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``collect`` verb."""
    p = sub.add_parser("collect", help="fold result records (one JSON per cell) into one table (CSV or Parquet)")
    p.add_argument("results", nargs="+", type=Path, help="results folder(s) of a sweep, probe or finetune run")
    p.add_argument("--out", type=Path, required=True, help="table path ending in .csv or .parquet")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable, truncated or foreign JSON files with a warning (default: they are an error)")
    p.add_argument("--keep", choices=("newest", "oldest"), default=None,
                   help="for a cell recorded more than once (e.g. with different settings), keep its newest or oldest "
                        "record; for a grid whose records were made with different runner settings, keep those of the "
                        "newest or oldest settings (default: either is an error)")
    add_auc_floor(p)
    p.set_defaults(func=cmd_collect)



def cmd_collect(args) -> int:
    from analyze.metrics.diagnosis import flag_counts, format_counts
    from analyze.results.collect import SkippedRecordsWarning, collect

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedRecordsWarning)
        table = collect(args.results, skip_bad=args.skip_bad, auc_floor=args.auc_floor, keep=args.keep)
    for warning in caught:
        print(f"biastransfer collect: warning: {warning.message}", file=sys.stderr)
    write_table(table, args.out)
    counts = table.groupby("runner").size()
    print(f"{len(table)} cells ({', '.join(f'{n} {k}' for k, n in counts.items())}), {table.shape[1]} columns "
          f"-> {args.out}")
    for runner, part in table.groupby("runner", sort=True):
        print(f"{runner}: {format_counts(flag_counts(part))}")
    return 0

