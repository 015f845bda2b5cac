"""The ``biastransfer finetune`` verb: a correlation-level grid of full finetunes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from analyze.cli.options import add_auc_floor, parse_list
from extract.cli.options import add_dataset_arguments


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` verb."""
    p = sub.add_parser("finetune", help="fully finetune a base on correlation-level subsets; one JSON record per cell")
    add_dataset_arguments(p)
    p.add_argument("--base", required=True, help="registered arch.tag, timm/<model>, or a toolkit checkpoint path")
    p.add_argument("--weights", type=Path, default=None, help="local weights file of a registered or timm base (scratch: random init)")
    p.add_argument("--target", required=True, help="target attribute y")
    p.add_argument("--sensitive", required=True, help="sensitive attribute s (the metrics' groups)")
    p.add_argument("--levels", default="0.0,0.5,1.0", help="correlation levels P(s=1|y=1), comma-separated")
    p.add_argument("--n", type=int, default=256, help="training rows per cell (default 256)")
    p.add_argument("--seeds", default="0,1", help="replicate seeds, comma-separated (default 0,1)")
    p.add_argument("--out", type=Path, default=None, help="records folder (default work/results/finetune)")
    p.add_argument("--epochs", type=int, default=_defaults()[2],
                   help=f"epoch budget (maximum epochs; default {_defaults()[2]}); the best validation epoch is kept")
    p.add_argument("--lrs", default=",".join(map(str, _defaults()[0])), help="learning-rate grid")
    p.add_argument("--weight-decays", default=",".join(map(str, _defaults()[1])), help="weight-decay grid")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--freeze", type=int, default=0, help="freeze the stem and the first k stages (default 0)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep the base's BatchNorm statistics (layers in eval mode while training; for pretrained "
                        "bases finetuned on a few hundred images)")
    p.add_argument("--schedule", default=_defaults()[3], choices=("constant", "cosine"),
                   help="learning rate over each run: a linear warm-up then a cosine decay to zero at the end of "
                        f"the budget, or constant (default {_defaults()[3]})")
    p.add_argument("--patience", type=int, default=_defaults()[4],
                   help="stop a run after this many epochs without a lower validation loss "
                        f"(default {_defaults()[4]}; 0: never)")
    p.add_argument("--engine", default="auto", choices=("auto", "batched", "loop"),
                   help="train runs of one shape together as one batched model, or one at a time (the reference); "
                        "results agree to rounding; auto (default): batched on a GPU, one at a time on the CPU")
    p.add_argument("--search", default="condition", choices=("condition", "first"),
                   help="grid search per condition, or once on the first and reused")
    p.add_argument("--test", default="split",
                   help="test rows: 'split' (the test split), 'natural' or a level (resampled test split)")
    p.add_argument("--policy", default="top_p", choices=("top_p", "top_p_reference", "val_top_p", "fixed"),
                   help="threshold policy on logits (default top_p: exactly P positives, ties broken by a fixed order; "
                        "docs/science.md section 5)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this side")
    p.add_argument("--save-backbones", type=Path, default=None, help="folder for the finetuned backbones")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--overwrite", action="store_true", help="redo cells whose record exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_auc_floor(p)
    p.set_defaults(func=cmd_finetune)


def _defaults():
    from analyze.finetune.search import DEFAULT_EPOCHS, DEFAULT_LRS, DEFAULT_PATIENCE, DEFAULT_SCHEDULE, DEFAULT_WEIGHT_DECAYS

    return DEFAULT_LRS, DEFAULT_WEIGHT_DECAYS, DEFAULT_EPOCHS, DEFAULT_SCHEDULE, DEFAULT_PATIENCE


def cmd_finetune(args) -> int:
    from analyze.metrics.diagnosis import flag_counts, format_counts
    from analyze.config import EvalConfig, RunContext
    from analyze.finetune.runner import FinetuneOptions, finetune_cells
    from analyze.finetune.search import FinetuneConfig
    from analyze.subsets import Correlation, test_rows_option
    from extract.parsing import parse_options
    from extract.datasets import get_adapter
    from extract.paths import work_dir

    levels = parse_list(args.levels, float, name="--levels")
    seeds = parse_list(args.seeds, int, name="--seeds")
    config = FinetuneConfig(lrs=parse_list(args.lrs, float, name="--lrs"),
                            weight_decays=parse_list(args.weight_decays, float, name="--weight-decays"),
                            epochs=args.epochs, batch_size=args.batch_size, freeze=args.freeze,
                            freeze_bn=args.freeze_bn, schedule=args.schedule, patience=args.patience,
                            engine=args.engine)
    adapter = get_adapter(args.dataset, args.root, **parse_options(args.option))
    specs = [Correlation(args.target, args.sensitive, level, n=args.n, seed=seed) for level in levels for seed in seeds]
    out = args.out or work_dir() / "results" / "finetune"
    began = time.perf_counter()
    options = FinetuneOptions(weights=args.weights, test=test_rows_option(args.test, args.target, args.sensitive),
                              image_size=args.image_size, device=args.device, search=args.search,
                              save_backbones=args.save_backbones)
    table = finetune_cells(specs, adapter=adapter, base=args.base, config=config,
                           evaluation=EvalConfig(policy=args.policy, auc_floor=args.auc_floor),
                           context=RunContext(out=out, overwrite=args.overwrite, progress=not args.no_progress),
                           options=options)
    minutes = (time.perf_counter() - began) / 60
    written = table[table["status"] != "skipped"]
    print(f"{len(written)} cell(s) written to {out}, {len(table) - len(written)} skipped (records exist).")
    if len(written):
        shown = written[["cell_id", "lr", "weight_decay", "best_epoch", "auc", "fpr_gap_stereotype"]]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"{len(written) / minutes:.2f} cells/min; per-cell overhead outside training compute "
              f"{written['overhead_s'].mean():.3f} s (training compute incl. grid search "
              f"{written['search_train_s'].mean():.2f} s per cell).")
        print(format_counts(flag_counts(written)))
    return 0
