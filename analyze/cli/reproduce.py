"""``biastransfer reproduce``: the papers' findings with a computed verdict, on the avatars or on a dataset of yours."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.cli.options import SCIENCE_DOC

RECIPES = Path(__file__).resolve().parents[2] / "data" / "recipes"
DEFAULT_RECIPES = {"celeba": "celeba-bases.toml"}  # datasets with a shipped recipe; others need --recipe


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` verb."""
    p = sub.add_parser("reproduce", help="run the grids the papers' findings need (on the avatars, or on your own "
                                         "labelled images) and write the findings table (reproduced / contradicted / "
                                         "inconclusive) and a report",
                       description="Renders the avatars (or checks the dataset given with --dataset/--manifest), "
                                   "builds the bases of a recipe (default data/recipes/avatars-bases.toml) pretrained "
                                   "on that dataset and runs W&R's design: full finetunes (natural and skewz sets on "
                                   "the biased base and every control, the natural n-sweep, the 20% -> 30% curation "
                                   "sets on the ImageNet Lite0, Scratch and the biased base, the pairs experiment) and "
                                   "the same design on linear probes as a fast proxy, then Ranjit et al.'s finetunes (rows "
                                   "R1-R3b: retention, new biases, transfer). Writes findings/findings.csv and "
                                   "findings.md (one row per finding and runner: number, 95% interval, rule, verdict, "
                                   "deviation from the paper) and a report that leads with them. Resumable: existing "
                                   "outputs under --out are reused; every stage prints its time. Definitions: "
                                   f"{SCIENCE_DOC}; your own data: docs/science.md, 'Reproduce on your data'.")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: work/reproduce)")
    p.add_argument("--preset", choices=("cpu", "paper", "quick", "tiny", "full"), default="cpu",
                   help="cpu (the default): every finding on the paper's targets with 3 seeds and n = 256, aimed "
                        "at 2 hours on 2 cores but estimated at about 5.7 (the run prints its time against 2 hours); "
                        "paper: the paper's "
                        "design (n = 1024, 5 seeds, n-sweep to 4096), for a GPU; quick: the probe proxy plus the "
                        "finetunes of findings 1-2 on one target, a look rather than a test (about 15 minutes on 2 "
                        "cores once the bases exist); tiny: 32 px, few cells, a smoke run of every stage; full: the "
                        "old name of cpu")
    p.add_argument("--seeds", type=int, default=None, help="replicate seeds of every grid (default: the preset's)")
    p.add_argument("--geography", type=Path, default=None,
                   help="folder of a geography experiment's results (findings.csv) for W&R's geographic finding")
    p.add_argument("--no-imagenet", action="store_true", help="leave out the ImageNet EfficientNet-Lite0 base")
    p.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")
    data = p.add_argument_group("your own data (default: the rendered avatars, sensitive attribute dark_skin)")
    data.add_argument("--dataset", default=None,
                      help="adapter of your labelled images: manifest (a CSV of image paths and 0/1/-1 attribute "
                           "columns), celeba, ... (see `biastransfer datasets`)")
    data.add_argument("--root", type=Path, default=None, help="the dataset's folder (image paths are relative to it)")
    data.add_argument("--manifest", type=Path, default=None,
                      help="the manifest CSV (implies --dataset manifest; --root defaults to the file's folder)")
    data.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="adapter option, repeatable (e.g. split_fractions or seed of a manifest without splits)")
    data.add_argument("--sensitive", default=None, help="the sensitive attribute column (e.g. Male)")
    data.add_argument("--targets", default=None,
                      help="target attribute columns, comma-separated; the first is also finetuned (e.g. "
                           "Wearing_Earrings,Blond_Hair,Smiling)")
    data.add_argument("--recipe", default=None,
                      help="the bases' recipe (a file in data/recipes or a path): its biased base pretrains on "
                           "--sensitive, its controls (at least two, names containing 'control') on other columns; "
                           "every base is pretrained on the dataset's train rows (default: avatars-bases.toml for the "
                           "avatars, celeba-bases.toml for celeba)")
    data.add_argument("--bases", default=None, metavar="NAME=PATH,...",
                      help="given toolkit checkpoints instead of --recipe (with --dataset): each NAME contains its "
                           "role (biased, control, scratch), e.g. my-biased=b.pt,my-control-hat=h.pt,"
                           "my-control-bangs=g.pt; a control's label is the attribute its checkpoint records")
    data.add_argument("--image-size", type=int, default=None,
                      help="side in pixels of the images the bases see (default: the preset's, 64 or 32)")
    p.set_defaults(func=cmd_reproduce)


def _dataset_config(config, args):
    """The preset ``config`` turned to the dataset the arguments name (unchanged for the avatars)."""
    from analyze.reproduce.sources import DatasetSource, for_dataset, parse_bases
    from extract.errors import UserError
    from extract.parsing import parse_options, split_list

    dataset = args.dataset or ("manifest" if args.manifest is not None else None)
    if dataset is None:
        given = [flag for flag, value in (("--root", args.root), ("--sensitive", args.sensitive),
                                          ("--targets", args.targets), ("--option", args.option),
                                          ("--bases", args.bases)) if value]
        if given:
            raise UserError(f"{given[0]} names your own data; add --dataset (e.g. --dataset manifest) or --manifest, "
                            "or leave it out to run on the avatars.")
        return config if args.recipe is None else _replace(config, recipe=args.recipe)
    options = parse_options(args.option)
    if args.manifest is not None:
        if dataset != "manifest":
            raise UserError(f"--manifest reads a manifest, but --dataset is {dataset!r}; drop one of them.")
        options["manifest"] = str(args.manifest.expanduser().resolve())
    root = args.root if args.root is not None else (args.manifest.expanduser().resolve().parent
                                                    if args.manifest is not None else None)
    if root is None or args.sensitive is None or args.targets is None:
        missing = "--root" if root is None else "--sensitive" if args.sensitive is None else "--targets"
        raise UserError(f"--dataset {dataset} needs {missing}: pass --root DIR (or --manifest FILE), --sensitive ATTR "
                        "and --targets A,B,C.")
    if args.recipe and args.bases:
        raise UserError("--recipe builds the bases and --bases gives them; pass one of the two.")
    recipe = None if args.bases else args.recipe or DEFAULT_RECIPES.get(dataset)
    if recipe is None and not args.bases:
        raise UserError(f"--dataset {dataset} needs its bases: pass --recipe FILE (start from "
                        f"{RECIPES / 'manifest-bases.toml'} with your attribute names) or --bases NAME=PATH,...")
    source = DatasetSource(dataset=dataset, root=Path(root), options=tuple(sorted(options.items())))
    return for_dataset(config, source, sensitive=args.sensitive, targets=tuple(split_list(args.targets)),
                       recipe=recipe, bases=parse_bases(args.bases) if args.bases else ())


def _replace(config, **changes):
    from dataclasses import replace

    return replace(config, **changes)


def cmd_reproduce(args) -> int:
    from analyze.reproduce.run import PRESETS, run_reproduce
    from extract.errors import UserError
    from extract.paths import work_dir

    config = PRESETS[args.preset]
    changes = {}
    if args.seeds is not None:
        if args.seeds < 2:
            raise UserError(f"--seeds must be at least 2 (an interval needs two replicates), got {args.seeds}.")
        changes.update(seeds=tuple(range(args.seeds)), finetune_seeds=tuple(range(args.seeds)))
    if args.no_imagenet:
        changes["imagenet"] = False
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.image_size is not None:
        if args.image_size < 8:
            raise UserError(f"--image-size must be at least 8 pixels, got {args.image_size}.")
        changes["size"] = args.image_size
    config = _dataset_config(_replace(config, **changes), args)
    run_reproduce(out=args.out or work_dir() / "reproduce", config=config, geography=args.geography)
    return 0
