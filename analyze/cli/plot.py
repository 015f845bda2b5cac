"""``biastransfer plot``: figures from a collected table, an effects table or a salience table."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.effects.models import filter_rows, require_columns
from analyze.report.plots import (
    DEFAULT_METRIC,
    KINDS,
    plot_coefficients,
    plot_correlation,
    plot_salience,
    plot_size,
    plot_tradeoff,
)
from analyze.results.tables import read_table


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plot`` verb."""
    p = sub.add_parser("plot", help="figures from a collected results table, an effects table or a salience table")
    p.add_argument("table", type=Path, help="results table (correlation, size, tradeoff), effects CSV (coef) or "
                   "salience CSV (salience)")
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--out", type=Path, default=None, help="output prefix (default work/plots/KIND)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="bias column (default fpr_gap_stereotype)")
    p.add_argument("--runner", default=None, help="keep one runner (probe or finetune)")
    p.add_argument("--query", default=None, help="keep the rows matching a pandas query")
    p.add_argument("--spec-kind", default="natural", help="size plot: the cells' spec_kind (default natural)")
    p.add_argument("--truth", default=None, help="salience plot: ground-truth column")
    p.add_argument("--intercept", action="store_true", help="coef plot: include the intercepts")
    p.set_defaults(func=cmd_plot)



def cmd_plot(args) -> int:
    from extract.paths import work_dir

    table = filter_rows(read_table(args.table), args.query)
    if args.runner is not None:
        require_columns(table, ["runner"], purpose="--runner")
        table = table[table["runner"] == args.runner]
    out = args.out or work_dir() / "plots" / args.kind
    draw = {
        "correlation": lambda: plot_correlation(table, out, metric=args.metric),
        "size": lambda: plot_size(table, out, metric=args.metric, spec_kind=args.spec_kind),
        "tradeoff": lambda: plot_tradeoff(table, out, metric=args.metric),
        "coef": lambda: plot_coefficients(table, out, include_intercept=args.intercept),
        "salience": lambda: plot_salience(table, out, truth=args.truth),
    }[args.kind]
    print("wrote " + ", ".join(str(p) for p in draw()))
    return 0

