"""``biastransfer report``: Markdown and HTML report from a collected table."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.cli.options import SCIENCE_DOC, add_auc_floor
from analyze.effects.models import DEFAULT_METRIC
from analyze.report.build import DEFAULT_TITLE, build_report
from extract.cli.parser import map_params


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb."""
    p = sub.add_parser("report", help="a Markdown and a self-contained HTML report from a collected results table",
                       description="Findings with 95% intervals from a collected table. Definitions (finetuning sets, "
                                   "salience, FPR gap signs, threshold policies, intervals, diagnosis flags, how "
                                   f"findings are stated): {SCIENCE_DOC}.")
    p.add_argument("table", type=Path, help="the tidy results table (CSV or Parquet) from `biastransfer collect`")
    p.add_argument("--salience", type=Path, default=None, help="salience table from `biastransfer salience`")
    p.add_argument("--plan", type=Path, default=None, help="curation plan table from `biastransfer plan`")
    p.add_argument("--findings", type=Path, default=None,
                   help="findings table (findings.csv) from `biastransfer reproduce`; the report leads with it")
    p.add_argument("--out", type=Path, default=None, help="output folder (default work/report)")
    p.add_argument("--title", default=DEFAULT_TITLE, help="page title")
    p.add_argument("--runner", action="append", default=None, help="keep this runner (repeatable; default all)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="bias column, positive = stereotype-consistent")
    p.add_argument("--include-flagged", action="store_true",
                   help="keep cells the diagnosis flagged (degenerate, grid edge, unconverged) in the findings and "
                        "fits; `biastransfer effects` leaves out the same cells and takes the same switch")
    p.add_argument("--n", type=int, default=None, help="training size of the headline findings (default: the rule "
                   f"in {SCIENCE_DOC} section 9)")
    p.add_argument("--level", type=float, default=None,
                   help="stereotype level of the headline correlation findings (default: the strongest run)")
    p.add_argument("--ci", choices=("t", "normal"), default="t",
                   help="replicate intervals: Student's t with k-1 df (default) or the normal 1.96")
    add_auc_floor(p)
    map_params(p, {"runners": "--runner"})
    p.set_defaults(func=cmd_report)



def cmd_report(args) -> int:
    from analyze.report.findings import FindingOptions
    from extract.paths import work_dir

    out = args.out or work_dir() / "report"
    options = FindingOptions(method=args.ci, auc_floor=args.auc_floor, include_flagged=args.include_flagged, n=args.n,
                             level=args.level, runners=tuple(args.runner) if args.runner else None)
    md_path, html_path = build_report(args.table, out_dir=out, salience=args.salience, plan=args.plan,
                                      findings=args.findings, title=args.title, metric=args.metric, options=options)
    print(f"wrote {md_path} and {html_path}")
    return 0

