"""``biastransfer plan``: the curation planner."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.curation import RESIGNED_METRICS, IntervalConfig, plan_curation, plan_markdown
from extract.cli.parser import map_params
from extract.errors import UserError


def _record_runners() -> list[str]:
    """The ``runner`` values a cell grid's records carry (from the registry: probe, finetune)."""
    from analyze.runners import RUNNERS

    return sorted({RUNNERS[name].records_as for name in RUNNERS if RUNNERS[name].cell_grid})


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plan`` verb."""
    p = sub.add_parser("plan", help="curation planner: the correlation move that halves the stereotype FPR gap")
    p.add_argument("table", type=Path, help="collected table (CSV or Parquet) of a correlation sweep")
    p.add_argument("--out", type=Path, default=None, help="output prefix: writes PREFIX.md and PREFIX.csv "
                   "(default: beside the table, <table>-plan)")
    p.add_argument("--metric", default="fpr_gap", choices=RESIGNED_METRICS, help="gap to halve (default fpr_gap)")
    p.add_argument("--runner", default=None, choices=_record_runners(), help="only this runner's records")
    p.add_argument("--n", type=int, default=None, help="only this training size")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples over seeds (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--ci", choices=("t", "normal"), default="t",
                   help="the natural gap's replicate interval: Student's t (default) or the normal 1.96")
    p.add_argument("--include-flagged", action="store_true",
                   help="keep cells the diagnosis flagged (degenerate, grid edge, unconverged)")
    map_params(p, {"n_boot": "--bootstrap", "random_state": "--seed", "method": "--ci"})  # IntervalConfig's fields
    p.set_defaults(func=cmd_plan)



def cmd_plan(args) -> int:
    from analyze.results.tables import read_table

    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {args.bootstrap}.")
    plan = plan_curation(read_table(args.table), metric=args.metric, runner=args.runner, n=args.n,
                         intervals=IntervalConfig(n_boot=args.bootstrap, random_state=args.seed, method=args.ci),
                         include_flagged=args.include_flagged)
    prefix = args.out or args.table.with_name(f"{args.table.stem}-plan")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    text = plan_markdown(plan, metric=args.metric)
    Path(f"{prefix}.md").write_text(text)
    plan.to_csv(f"{prefix}.csv", index=False)
    print(text)
    print(f"wrote {prefix}.md and {prefix}.csv")
    return 0

