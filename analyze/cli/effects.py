"""``biastransfer effects``: effect-size regressions on a collected table."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from analyze.cli.options import SCIENCE_DOC
from analyze.effects.format import to_markdown, write_tables
from analyze.effects.models import (
    EffectsModel,
    DEFAULT_METRIC,
    DEFAULT_N,
    MODELS,
    attach_salience,
    filter_rows,
    run_effects,
    with_base_kind,
    without_flagged,
)
from analyze.results.tables import read_table
from extract.cli.parser import map_params
from extract.errors import UserError


def _base_kinds(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs or []:
        backbone, sep, kind = pair.partition("=")
        if not sep or not backbone or not kind:
            raise UserError(f"--base-kind {pair!r} is not BACKBONE=KIND; write e.g. "
                            "--base-kind resnet18.avatars=biased.")
        mapping[backbone] = kind
    return mapping



def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``effects`` verb."""
    p = sub.add_parser("effects", help="effect-size regressions on a collected results table",
                       description="Effect sizes of Wang & Russakovsky (ICCV 2023) and robust alternatives: the "
                                   "paper's Value ~ Saliency + Skew, difference, log-ratio, general, moderation and "
                                   "any formula. Definitions of Value, Skew, salience (A_y, A_s), stereotype_level "
                                   f"and correlation_strength: {SCIENCE_DOC} sections 3, 4 and 6.")
    p.add_argument("table", type=Path, help="the tidy results table (CSV or Parquet) from `biastransfer collect`")
    p.add_argument("--model", choices=MODELS, default="paper")
    p.add_argument("--formula", default=None,
                   help='statsmodels formula for --model formula, e.g. "fpr_gap_stereotype ~ level"')
    p.add_argument("--fit", choices=("both", "ols", "mixed"), default=None,
                   help="estimator(s); default both (formula: mixed with --groups, else ols)")
    p.add_argument("--groups", default=None, help="clusters / random-intercept groups (general: target)")
    p.add_argument("--n", type=int, default=None,
                   help=f"training size for the paper rows (default {DEFAULT_N} or the largest)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="bias column, positive = stereotype-consistent")
    p.add_argument("--runner", default=None, help="probe or finetune (required when the table has both)")
    p.add_argument("--salience", type=Path, default=None, help="salience table to join on target")
    p.add_argument("--base-kind", action="append", default=[], metavar="BACKBONE=KIND",
                   help="set a backbone's base kind (biased, control, ...); repeatable")
    p.add_argument("--query", default=None,
                   help="keep the rows matching a pandas query, e.g. \"spec_kind == 'correlation'\"")
    p.add_argument("--no-clip", action="store_true", help="plain ratio Value, without the paper's sign rule")
    p.add_argument("--include-flagged", action="store_true",
                   help="keep the cells the diagnosis flagged (degenerate, grid edge, unconverged); by default they "
                        "are left out, as `biastransfer report` leaves them out")
    p.add_argument("--out", type=Path, default=None, help="output prefix (default work/effects/MODEL)")
    map_params(p, {"estimator": "--fit", "base_kinds": "--base-kind BACKBONE=KIND"})
    p.set_defaults(func=cmd_effects)



def cmd_effects(args) -> int:
    from extract.paths import work_dir

    table, left_out = without_flagged(filter_rows(read_table(args.table), args.query),
                                      include_flagged=args.include_flagged)
    if left_out:
        print(f"left out {left_out} cells flagged by the diagnosis (--include-flagged keeps them)")
    if args.salience is not None:
        table = attach_salience(table, read_table(args.salience))
    if args.model != "formula" or args.base_kind or "base_kind" in table.columns:
        table = with_base_kind(table, _base_kinds(args.base_kind))
    estimators = None if args.fit in (None, "both") else (args.fit,)
    if args.fit == "both" and args.model == "formula":
        estimators = ("ols", "mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = EffectsModel(name=args.model, formula=args.formula, estimators=estimators, groups=args.groups)
        coefficients, rows = run_effects(table, model=model, n=args.n, metric=args.metric, clip=not args.no_clip,
                                         runner=args.runner)
    out = args.out or work_dir() / "effects" / args.model
    title = f"Effects: {args.model} model on {args.table.name}"
    written = write_tables(coefficients, out, title=title, rows=rows)
    print(to_markdown(coefficients, title=title))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0

