"""``biastransfer associate-experiment``: association change after correlated vs balanced finetuning."""

from __future__ import annotations

from pathlib import Path

from analyze.association.experiment import (
    DEFAULT_FINETUNE,
    NULL_SEED_OFFSET,
    ExperimentConfig,
    run_experiment,
    write_outputs,
)
from analyze.finetune.search import FinetuneConfig
from extract.datasets.base import SPLITS
from extract.errors import UserError


def register(subparsers) -> None:
    """Add the ``associate-experiment`` verb to the ``biastransfer`` parser."""
    p = subparsers.add_parser(
        "associate-experiment", help="association change of a target concept after finetuning on a set "
        "correlated with dark_skin vs a balanced one, over seeds, with a random-init null")
    p.add_argument("--cache", type=Path, required=True, help="avatar cache (.h5) of `biastransfer avatars render`")
    p.add_argument("--base", default="smallcnn.scratch", help="neutral base: registered name or checkpoint")
    p.add_argument("--weights", type=Path, default=None, help="local weights file of a registered base")
    p.add_argument("--target", default="blazer", help="target accessory (default blazer)")
    p.add_argument("--strong-level", type=float, default=0.9, help="level of the correlated set (default 0.9)")
    p.add_argument("--balanced-level", type=float, default=0.5, help="level of the balanced set (default 0.5)")
    p.add_argument("--n", type=int, default=256, help="training rows per finetune (default 256)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="finetuning seeds, comma-separated (default 0..4)")
    p.add_argument("--null-seeds", type=int, default=10, metavar="N",
                   help=f"random-init networks in the null (seeds {NULL_SEED_OFFSET}..{NULL_SEED_OFFSET}+N-1)")
    p.add_argument("--per-set", type=int, default=40, help="images per concept set (even, default 40)")
    p.add_argument("--concept-split", default="test", choices=list(SPLITS), help="split of the concept images")
    p.add_argument("--concept-seed", type=int, default=0, help="seed of the concept set selection")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="paired bootstrap replicates per seed (0: none)")
    p.add_argument("--epochs", type=int, default=DEFAULT_FINETUNE.epochs, help="maximum finetuning epochs")
    p.add_argument("--lrs", default=",".join(map(str, DEFAULT_FINETUNE.lrs)), help="learning-rate grid")
    p.add_argument("--weight-decays", default=",".join(map(str, DEFAULT_FINETUNE.weight_decays)),
                   help="weight-decay grid")
    p.add_argument("--batch-size", type=int, default=DEFAULT_FINETUNE.batch_size)
    p.add_argument("--work", type=Path, default=None,
                   help="folder of the finetune records and checkpoints (default: beside --out)")
    p.add_argument("--out", type=Path, default=None,
                   help="per-seed CSV (default work/association/experiment-<target>.csv); the summary CSV, "
                   "the null CSV and the Markdown go next to it")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_associate_experiment)



def _config_from_args(args) -> ExperimentConfig:
    from extract.parsing import parse_list

    if args.null_seeds < 2:
        raise UserError(f"--null-seeds {args.null_seeds} is too few; pass at least 2.")
    finetune = FinetuneConfig(lrs=parse_list(args.lrs, float, name="--lrs"),
                              weight_decays=parse_list(args.weight_decays, float, name="--weight-decays"),
                              epochs=args.epochs, batch_size=args.batch_size)
    return ExperimentConfig(target=args.target, strong_level=args.strong_level, balanced_level=args.balanced_level,
                            n=args.n, seeds=parse_list(args.seeds, int, name="--seeds"),
                            null_seeds=tuple(range(NULL_SEED_OFFSET, NULL_SEED_OFFSET + args.null_seeds)),
                            per_set=args.per_set, concept_split=args.concept_split,
                            concept_seed=args.concept_seed, n_bootstrap=args.n_bootstrap, finetune=finetune)



def cmd_associate_experiment(args) -> int:
    """Run ``biastransfer associate-experiment``: finetune, measure, summarise, write."""
    from extract.paths import work_dir

    config = _config_from_args(args)
    out = args.out or work_dir() / "association" / f"experiment-{config.target}.csv"
    if out.suffix.lower() != ".csv" or out.is_dir():
        raise UserError(f"--out {out} is not a .csv file path; pass e.g. work/association/experiment.csv.")
    folder = args.work or out.with_name(out.stem + "_finetunes")
    result = run_experiment(args.cache, folder, base=args.base, config=config, weights=args.weights,
                            device=args.device, progress=not args.no_progress)
    for path in write_outputs(result, out):
        print(f"wrote {path}")
    print(out.with_suffix(".md").read_text(encoding="utf-8"))
    return 0

