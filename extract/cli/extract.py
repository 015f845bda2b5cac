"""``extract`` verbs of the ``biastransfer`` CLI: avatars, datasets, backbones, extract, store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from extract.cli.options import add_extract_arguments, store_out
from extract.parsing import parse_options
from extract.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the extract-stage verbs to the top-level parser."""
    p = sub.add_parser("datasets", help="list the dataset adapters and the layout each expects")
    p.set_defaults(func=cmd_datasets)
    p = sub.add_parser("backbones", help="list the registered backbones")
    p.set_defaults(func=cmd_backbones)
    _register_extract(sub)
    p = sub.add_parser("store", help="print a feature store's shape, attributes and provenance")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_store)


def _register_extract(sub) -> None:
    p = sub.add_parser("extract", help="embed every image of a dataset into an HDF5 feature store")
    add_extract_arguments(p, out_help="store path (default: work/stores/<dataset>__<backbone>.h5)",
                          batch_help="images per forward (default 256)",
                          device_help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...",
                          workers_help="image decode workers")
    p.add_argument("--overwrite", action="store_true", help="redo an existing store instead of keeping it")
    p.set_defaults(func=cmd_extract)


def cmd_datasets(args) -> int:
    from extract.datasets import ADAPTERS, adapter_class

    width = max(map(len, ADAPTERS)) + 1
    for name in ADAPTERS:
        print(f"{name:<{width}} {adapter_class(name).EXPECTED_LAYOUT}")
    return 0


def cmd_backbones(args) -> int:
    from extract.backbones import describe_backbones

    print(f"{'name':<28} {'dim':>5}  {'weights':<8} {'ready':<5}  {'input':<9} description")
    for d in describe_backbones():
        ready = "yes" if d["available"] else "no"
        print(f"{d['name']:<28} {d['feature_dim']:>5}  {d['weights']:<8} {ready:<5}  "
              f"{d['resize']}/{d['crop']:<5} {d['description']}")
    print("\nready=no: pass --weights PATH to a local copy of the default file (nothing is downloaded).")
    return 0


def cmd_extract(args) -> int:
    from extract.backbones import create_backbone
    from extract.datasets import get_adapter
    from extract.extraction import ExtractOptions, extract_features

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")
    from extract.device_decode import check_decode
    from extract.store.writer import check_store_output

    adapter = get_adapter(args.dataset, args.root, **parse_options(args.option))
    check_decode(args.decode, adapter)
    out = check_store_output(store_out(args))  # fail before any heavy work
    backbone = create_backbone(args.backbone, weights=args.weights, seed=args.seed, image_size=args.image_size)
    before = _stamp(out)
    path = extract_features(adapter, backbone, out, options=ExtractOptions(
        batch_size=args.batch_size, device=args.device, num_workers=args.workers, resume=not args.no_resume,
        overwrite=args.overwrite, decode=args.decode))
    if before is not None and _stamp(path) == before:
        print(f"kept {path}: already a complete store of {adapter.name} with {backbone.name} (--overwrite redoes it)")
    else:
        print(f"wrote {path}")
    return 0


def _stamp(path) -> tuple | None:
    """(size, mtime_ns) of ``path``, or None when it does not exist."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def cmd_store(args) -> int:
    from extract.store.reader import FeatureStore

    store = FeatureStore.open(args.path)
    print(f"{args.path}: {store.n_rows} rows x {store.feature_dim} features")
    print("attributes:", ", ".join(store.attributes))
    print(json.dumps(store.provenance, indent=2, sort_keys=True, default=str))
    return 0
