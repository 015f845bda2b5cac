"""``biastransfer report``: Markdown and HTML report from a collected table."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.effects.models import DEFAULT_METRIC
from analyze.report.build import DEFAULT_TITLE, build_report


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb."""
    p = sub.add_parser("report", help="a Markdown and a self-contained HTML report from a collected results table")
    p.add_argument("table", type=Path, help="the tidy results table (CSV or Parquet) from `biastransfer collect`")
    p.add_argument("--salience", type=Path, default=None, help="salience table from `biastransfer salience`")
    p.add_argument("--plan", type=Path, default=None, help="curation plan table from `biastransfer plan`")
    p.add_argument("--out", type=Path, default=None, help="output folder (default work/report)")
    p.add_argument("--title", default=DEFAULT_TITLE, help="page title")
    p.add_argument("--runner", action="append", default=None, help="keep this runner (repeatable; default all)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="bias column, positive = stereotype-consistent")
    p.set_defaults(func=cmd_report)



def cmd_report(args) -> int:
    from extract.paths import work_dir

    out = args.out or work_dir() / "report"
    md_path, html_path = build_report(args.table, out_dir=out, salience=args.salience, plan=args.plan,
                                      title=args.title, runners=args.runner, metric=args.metric)
    print(f"wrote {md_path} and {html_path}")
    return 0

