"""``biastransfer probe``: linear probes on feature stores over a grid of finetuning subsets."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.cli.options import add_auc_floor, floats, ints


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear probes on feature stores over a grid of finetuning subsets -> one JSON per cell")
    p.add_argument("--store", type=Path, action="append", required=True, help="feature store (repeatable)")
    p.add_argument("--target", action="append", required=True, help="target attribute (repeatable)")
    p.add_argument("--sensitive", required=True, help="sensitive attribute column")
    p.add_argument("--kind", choices=("correlation", "natural", "skew"), default="correlation",
                   help="subset kind: correlation levels, the natural distribution, or skewed sets (default correlation)")
    p.add_argument("--levels", type=floats, default=[k / 10 for k in range(11)],
                   help="correlation levels P(s=1|y=1) (default 0,0.1,...,1) or, with --kind skew, values of p")
    p.add_argument("--n", type=ints, default=[128], help="training sizes (default 128)")
    p.add_argument("--seeds", type=ints, default=[0, 1, 2, 3, 4], help="replicate seeds (default 0,1,2,3,4)")
    p.add_argument("--Cs", type=floats, default=None, help="C grid searched on validation (default logspace(-4,2,7))")
    p.add_argument("--policy", choices=("top_p", "top_p_reference", "fixed"), default="top_p",
                   help="threshold policy (default top_p: exactly P positives, ties broken by a fixed order; "
                        "top_p_reference: the paper's rule, ties negative; docs/science.md section 5)")
    p.add_argument("--test-resample", action="store_true", help="resample the test split to 50%% positives and groups")
    p.add_argument("--out", type=Path, default=None, help="results folder (default work/results/probe)")
    p.add_argument("--overwrite", action="store_true", help="refit cells whose record already exists")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--n-jobs", type=int, default=1, help="probe batches fitted in parallel threads")
    add_auc_floor(p)
    p.set_defaults(func=cmd_probe)



def probe_specs(args) -> list:
    """The grid of subset specs the probe command runs."""
    from analyze.subsets import Correlation, Natural, Skew

    specs = []
    for target in args.target:
        for n in args.n:
            for seed in args.seeds:
                if args.kind == "natural":
                    specs.append(Natural(target, args.sensitive, n=n, seed=seed))
                    continue
                for level in args.levels:
                    cls = Correlation if args.kind == "correlation" else Skew
                    specs.append(cls(target, args.sensitive, level, n=n, seed=seed))
    return specs



def cmd_probe(args) -> int:
    from analyze.metrics.diagnosis import describe_flags
    from analyze.config import EvalConfig, RunContext
    from analyze.probe import DEFAULT_CS, ProbeConfig
    from analyze.probe.cells import run_probe_cells
    from analyze.results.records import check_results_folder
    from extract.paths import work_dir
    from extract.store.reader import FeatureStore

    out = check_results_folder(args.out or work_dir() / "results" / "probe")  # before loading or fitting
    config = ProbeConfig(Cs=args.Cs or DEFAULT_CS, device=args.device, n_jobs=args.n_jobs)
    evaluation = EvalConfig(policy=args.policy, auc_floor=args.auc_floor)
    specs = probe_specs(args)
    total, written = 0, []
    for path in args.store:
        store = FeatureStore.open(path)
        records = run_probe_cells(store, specs, config=config, evaluation=evaluation,
                                  context=RunContext(out=out, overwrite=args.overwrite),
                                  test_resample=args.test_resample)
        total += len(records)
        written += records
        print(f"{path}: {len(records)} cells fitted ({len(specs) - len(records)} already done)")
    print(f"wrote {total} records to {out}")
    if written:
        print(describe_flags(written))
    return 0

