"""Options shared by the extract-stage verbs: default store paths and the option groups of
``extract`` and ``extract-shard``."""

from __future__ import annotations

import argparse
from pathlib import Path

from extract.cli.parser import map_params
from extract.paths import store_file_name, store_output_path, work_dir


def default_store_path(dataset: str, backbone: str) -> Path:
    return work_dir() / "stores" / store_file_name(dataset, backbone)


def store_out(args) -> Path:
    """The store path of ``--out``: the default when absent; ``DIR/`` (a trailing slash) puts
    the store under its default file name in DIR."""
    if args.out is None:
        return default_store_path(args.dataset, args.backbone)
    return store_output_path(args.out, args.dataset, args.backbone)


def add_dataset_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--dataset``, ``--root`` and ``--option``: which images a verb reads."""
    p.add_argument("--dataset", required=required, default=None, help="adapter name (see `biastransfer datasets`)")
    p.add_argument("--root", type=Path, required=required, default=None,
                   help="local copy of the dataset (for avatars: the cache .h5 file)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter option, repeatable (e.g. val_fraction=0.1, categories=person,cup)")


def add_extract_arguments(p: argparse.ArgumentParser, *, out_help: str, batch_help: str, device_help: str,
                          workers_help: str) -> None:
    """The options ``extract`` and ``extract-shard`` share: dataset, backbone, output and loop settings."""
    add_dataset_arguments(p)
    p.add_argument("--backbone", required=True,
                   help="arch.tag name (see `biastransfer backbones`), timm/<model>[@pool], or a toolkit checkpoint path")
    p.add_argument("--weights", type=Path, default=None,
                   help="local weights file, or scratch for a timm model's random init (nothing is ever downloaded)")
    p.add_argument("--seed", type=int, default=0, help="seed of random-init backbones (default 0)")
    p.add_argument("--image-size", type=int, default=None,
                   help="override the backbone's resize/crop (e.g. 64 for small images)")
    p.add_argument("--out", default=None, help=out_help + "; DIR/ puts the default file name in DIR")
    p.add_argument("--batch-size", type=int, default=256, help=batch_help)
    p.add_argument("--device", default="auto", help=device_help)
    p.add_argument("--workers", type=int, default=None, help=workers_help)
    p.add_argument("--decode", choices=("host", "device"), default="host",
                   help="host (default): workers decode; device: workers read the files and JPEGs are decoded on "
                        "the device (nvjpeg on CUDA), other formats on the host")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming a partial store")
    map_params(p, {"num_workers": "--workers", "resume": "--no-resume"})  # ExtractOptions' field names
