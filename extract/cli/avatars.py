"""``biastransfer avatars``: render the embedded avatar dataset, or a contact sheet of it."""

from __future__ import annotations

import argparse
from pathlib import Path

from extract.paths import work_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("avatars", help="render the embedded procedural avatar dataset, or a contact sheet of it")
    verbs = p.add_subparsers(dest="avatars_command", metavar="VERB", required=True)
    r = verbs.add_parser("render", help="render avatars into an HDF5 image cache")
    r.add_argument("--out", type=Path, default=None, help="cache file (default: work/avatars/avatars-<n>-<size>px-seed<seed>.h5)")
    r.add_argument("--n", type=int, default=4000, help="number of avatars (default 4000)")
    r.add_argument("--size", type=int, default=64, help="image side in pixels, 32-128 (default 64)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--preset", default="celeba-like", help="attribute preset (default celeba-like)")
    r.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")
    r.set_defaults(func=cmd_avatars_render)
    s = verbs.add_parser("sheet", help="write a contact sheet PNG of samples with their labels")
    s.add_argument("cache", type=Path, help="avatar cache written by `biastransfer avatars render`")
    s.add_argument("--out", type=Path, default=None, help="PNG path (default: next to the cache)")
    s.add_argument("--n", type=int, default=32)
    s.add_argument("--columns", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_avatars_sheet)



def cmd_avatars_render(args) -> int:
    from extract.datasets.avatars import RenderSpec, render_dataset

    out = args.out or work_dir() / "avatars" / f"avatars-{args.n}-{args.size}px-seed{args.seed}.h5"
    spec = RenderSpec(n=args.n, size=args.size, seed=args.seed, preset=args.preset)
    path = render_dataset(out, spec=spec, workers=args.workers)
    print(f"wrote {path}")
    return 0



def cmd_avatars_sheet(args) -> int:
    from extract.datasets.avatars import contact_sheet

    out = args.out or args.cache.with_suffix(".sheet.png")
    path = contact_sheet(args.cache, out, n=args.n, columns=args.columns, seed=args.seed)
    print(f"wrote {path}")
    return 0

