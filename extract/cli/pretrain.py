"""The ``biastransfer pretrain`` verb: one base from flags, or a set of bases from a recipe.

::

    biastransfer pretrain --dataset avatars --root CACHE.h5 --attribute dark_skin --out base.pt
    biastransfer pretrain --scratch --out scratch.pt --image-size 64 --seed 0
    biastransfer pretrain --recipe data/recipes/avatars-bases.toml --out-dir work/bases

Wire it with ``extract.cli.pretrain.register(subparsers)`` (also importable from
:mod:`extract.pretrain.train`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from extract.cli.parser import map_params
from extract.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` verb to the top-level parser."""
    p = sub.add_parser("pretrain", help="train a base from scratch on dataset attributes, or build the bases of a recipe")
    mode = p.add_argument_group("recipe mode")
    mode.add_argument("--recipe", type=Path, default=None, help="TOML recipe, e.g. data/recipes/avatars-bases.toml (supervised bases) or "
                      "data/recipes/avatars-objectives.toml (supervised and contrastive bases)")
    mode.add_argument("--out-dir", type=Path, default=None, help="folder of the recipe's checkpoints (default work/bases)")
    mode.add_argument("--cache-dir", type=Path, default=None, help="folder of the pretraining cache (default work/avatars)")
    mode.add_argument("--workers", type=int, default=None, help="rendering processes when the cache is missing")
    one = p.add_argument_group("single-base mode")
    one.add_argument("--dataset", default=None, help="adapter name (see `biastransfer datasets`)")
    one.add_argument("--root", type=Path, default=None, help="local copy of the dataset (for avatars: the cache .h5)")
    one.add_argument("--attribute", action="append", default=[], help="pretraining label; repeat for multi-label")
    one.add_argument("--scratch", action="store_true", help="write a seeded random-init base instead (no data)")
    one.add_argument("--out", type=_checkpoint_path, default=None, help="checkpoint path (.pt)")
    one.add_argument("--name", default=None, help="base name recorded in the checkpoint (default: the file stem)")
    one.add_argument("--split", choices=["all", "train", "val", "test"], default="all",
                     help="rows used for pretraining, by the dataset's split column (default all)")
    one.add_argument("--arch", default="smallcnn", help="architecture (smallcnn, resnet18, resnet50, ...)")
    one.add_argument("--arch-kwargs", default=None, help='architecture options as JSON, e.g. \'{"width": 16}\'')
    one.add_argument("--epochs", type=int, default=4)
    one.add_argument("--batch-size", type=int, default=64)
    one.add_argument("--lr", type=float, default=0.05)
    one.add_argument("--weight-decay", type=float, default=5e-4)
    one.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    one.add_argument("--val-fraction", type=float, default=0.2)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--image-size", type=int, default=None, help="square input side (default: the data's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda ...")
    p.add_argument("--overwrite", action="store_true", help="rebuild checkpoints that exist")
    map_params(p, {"attributes": "--attribute"})
    p.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args) -> int:
    if args.recipe is not None:
        return _cmd_recipe(args)
    if args.out is None:
        raise UserError("pass --out PATH.pt for the checkpoint, or --recipe FILE to build a set of bases.")
    if args.out.exists() and not args.overwrite:
        raise UserError(f"the checkpoint {args.out} exists; pass --overwrite to replace it.")
    arch_kwargs = _parse_arch_kwargs(args.arch_kwargs)
    if args.scratch:
        return _cmd_scratch(args, arch_kwargs)
    if args.dataset is None or args.root is None or not args.attribute:
        raise UserError("pass --dataset, --root and at least one --attribute (or --scratch, or --recipe).")
    from extract.datasets import get_adapter
    from extract.pretrain.config import PretrainConfig, PretrainModel
    from extract.pretrain.train import pretrain_base, write_base

    adapter = get_adapter(args.dataset, args.root)
    rows = None
    if args.split != "all":
        import numpy as np

        rows = np.flatnonzero(adapter.metadata()["split"].to_numpy() == args.split)
    from extract.store.reader import check_output_writable

    check_output_writable(args.out)  # fail before training, not after
    model, history = pretrain_base(
        adapter, attributes=args.attribute, rows=rows, device=args.device,
        model=PretrainModel(arch=args.arch, arch_kwargs=arch_kwargs, image_size=args.image_size),
        config=PretrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                              val_fraction=args.val_fraction))
    path = write_base(args.out, model, history=history, name=args.name or args.out.stem, meta={"split": args.split})
    print(f"wrote {path}")
    for split, result in history["final"].items():
        accs = ", ".join(f"{a} {r['accuracy']:.3f}" for a, r in result["per_attribute"].items())
        print(f"  {split}: loss {result['loss']:.4f}; accuracy {accs}")
    return 0


def _cmd_scratch(args, arch_kwargs) -> int:
    from extract.pretrain.train import write_scratch_base

    if args.image_size is None:
        raise UserError("a scratch base needs --image-size (the side of the images it will see).")
    path = write_scratch_base(args.out, arch=args.arch, arch_kwargs=arch_kwargs, image_size=args.image_size,
                              seed=args.seed, name=args.name or args.out.stem)
    print(f"wrote {path}")
    return 0


def _cmd_recipe(args) -> int:
    from extract.paths import work_dir
    from extract.pretrain.recipe import run_recipe

    out_dir = args.out_dir or work_dir() / "bases"
    paths = run_recipe(args.recipe, out_dir=out_dir, cache_dir=args.cache_dir, workers=args.workers,
                       overwrite=args.overwrite, device=args.device)
    summary = json.loads((Path(out_dir) / "bases.json").read_text())
    for base in summary["bases"]:
        final = base.get("final") or {}
        val = final.get("val") or final.get("train")
        if val and "per_attribute" in val:
            accs = ", ".join(f"{a} {r['accuracy']:.3f}" for a, r in val["per_attribute"].items())
        else:  # a contrastive base: its partner found among the other views
            accs = f"pair accuracy {val['pair_accuracy']:.3f}" if val else "untrained"
        state = "kept" if base["skipped"] else f"{base['seconds']:.1f} s"
        print(f"{base['role']:<8} {paths[base['name']]}  ({state}; {accs})")
    print(f"total {summary['seconds']:.1f} s")
    return 0


def _checkpoint_path(text: str) -> Path:
    """``--out`` as a checkpoint file path; a folder (trailing slash or an existing directory) is refused."""
    path = Path(text)
    if text.endswith(("/", "\\")) or path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is a folder; give the checkpoint's file path, e.g. {str(path / 'base.pt')!r} "
            "(a recipe's bases go to --out-dir).")
    return path


def _parse_arch_kwargs(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"--arch-kwargs {text!r} is not JSON; write e.g. '{{\"width\": 16}}'.") from None
    if not isinstance(value, dict):
        raise UserError(f"--arch-kwargs must be a JSON object such as '{{\"width\": 16}}', not {text!r}.")
    return value


__all__ = ["cmd_pretrain", "register"]
