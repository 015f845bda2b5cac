"""``biastransfer salience``: salience of many targets at once."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from analyze.cli.options import SCIENCE_DOC, add_auc_floor, floats
from analyze.salience.config import DEFAULT_BASE, METHODS
from extract.cli.options import add_dataset_arguments
from extract.cli.parser import map_params
from extract.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``salience`` verb."""
    p = sub.add_parser("salience", help="estimate how much easier the sensitive attribute is to learn than each target",
                       description="Salience of s relative to each target y (Wang & Russakovsky, ICCV 2023): models "
                                   "trained on the aligned (y == s) and inverted (y != s) sets, tested on four equal "
                                   "(y, s) quadrants; A_y and A_s are their direction-free AUCs and salience = "
                                   "mean(A_s) - mean(A_y) + 0.5. Definitions, both estimators and the diagnosis "
                                   f"flags: {SCIENCE_DOC} sections 4 and 8.")
    add_dataset_arguments(p, required=False)
    p.add_argument("--store", type=Path, default=None, help="feature store to probe (method probe) instead of embedding")
    p.add_argument("--targets", required=True, help="target attributes, comma-separated")
    p.add_argument("--sensitive", required=True, help="sensitive attribute s")
    p.add_argument("--method", default="probe", choices=METHODS,
                   help="scratch: networks trained from random init (the paper's); expect about a minute per target "
                        "per 2,000 images on one CPU core at the defaults (images at 32 px unless --image-size, "
                        "3 replicates x 2 arrangements, at most 6 epochs with early stopping); probe: linear probes "
                        "(seconds per target)")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"architecture (scratch) or base to probe (default {DEFAULT_BASE})")
    p.add_argument("--replicates", type=int, default=3, help="models per arrangement (default 3)")
    p.add_argument("--n", type=int, default=None, help="training rows per model (default: the whole set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None,
                   help="scratch: maximum epochs (default 6; a model stops after 2 epochs without a lower validation "
                        "loss)")
    p.add_argument("--lrs", default=None, help="scratch: learning-rate grid searched on validation loss (default 0.05)")
    p.add_argument("--weight-decays", default=None, help="scratch: weight-decay grid (default 5e-4)")
    p.add_argument("--Cs", type=floats, default=None,
                   help="probe: C grid searched on validation loss, on standardised features "
                        "(default 0.01,0.1,1,10,100)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize images to this side (default: an avatar cache's own size; scratch on image files: "
                        "32 px, whose cost is a quarter of 64 px)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", type=Path, default=None, help="CSV path (default work/salience.csv)")
    add_auc_floor(p)
    map_params(p, {"adapter": "--dataset/--root"})
    p.set_defaults(func=cmd_salience)



def _scratch_config(args):
    """The scratch method's protocol with the command line's overrides."""
    from dataclasses import replace

    from analyze.salience.fit import SCRATCH_CONFIG
    from extract.parsing import parse_list

    config = SCRATCH_CONFIG
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.lrs is not None:
        config = replace(config, lrs=parse_list(args.lrs, float, name="--lrs"))
    if args.weight_decays is not None:
        config = replace(config, weight_decays=parse_list(args.weight_decays, float, name="--weight-decays"))
    return config



def cmd_salience(args) -> int:
    from analyze.config import EvalConfig
    from analyze.metrics.diagnosis import flag_counts, format_counts
    from analyze.probe import ProbeConfig
    from analyze.salience.config import SalienceConfig
    from analyze.salience.table import salience_table
    from analyze.salience.estimate import validate_salience
    from extract.parsing import parse_options
    from extract.datasets import get_adapter
    from extract.parsing import parse_list
    from extract.paths import work_dir
    from extract.store.reader import FeatureStore

    targets = list(parse_list(args.targets, str, name="--targets"))
    if args.store is None and (args.dataset is None or args.root is None):
        raise UserError("pass --dataset and --root (the images), or --store with --method probe.")
    adapter = get_adapter(args.dataset, args.root, **parse_options(args.option)) if args.root is not None else None
    store = FeatureStore.open(args.store) if args.store is not None else None
    config = SalienceConfig(method=args.method, base=args.base, replicates=args.replicates, seed=args.seed, n=args.n,
                            image_size=args.image_size, device=args.device, training=_scratch_config(args))
    probe = ProbeConfig(Cs=args.Cs) if args.Cs is not None else None
    began = time.perf_counter()
    table = salience_table(targets, args.sensitive, adapter=adapter, store=store, config=config, probe=probe,
                           evaluation=EvalConfig(auc_floor=args.auc_floor), progress=True)
    truth = getattr(adapter, "signal_strength", None)
    if truth is not None and len(targets) >= 3:
        check = validate_salience(table, truth, sensitive=args.sensitive)
        table = check.table
    out = args.out or work_dir() / "salience.csv"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    except OSError as exc:
        raise UserError(f"cannot write {out} ({exc.strerror}); choose a writable --out path.") from None
    shown = [c for c in ("target", "salience", "ci_low", "ci_high", "A_y", "A_s", "n_models", "strength_target",
                         "true_log_ratio") if c in table.columns]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if truth is not None and len(targets) >= 3:
        print(f"Spearman(salience, true log strength ratio {args.sensitive}/target) = {check.spearman:.3f} "
              f"(p = {check.pvalue:.2g}, {len(targets)} targets)")
    print(format_counts(flag_counts(table), what="estimates"))
    print(f"wrote {out} ({time.perf_counter() - began:.1f} s)")
    return 0

