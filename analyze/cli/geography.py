"""``biastransfer geography`` and ``geography-avatars``: the geographic-representation experiment.

``geography`` runs domain-mix multi-label probe cells on feature stores you extracted
(Dollar Street and COCO, one store per base and source) and writes the records, the
summary over seeds and the finding; ``geography-avatars`` runs the same experiment end to
end on two rendered avatar domains, offline.
"""

from __future__ import annotations

from pathlib import Path

from analyze.cli.options import floats, ints
from analyze.sweep.run import refit_lines
from extract.errors import UserError
from extract.parsing import parse_list, split_list


def register(subparsers) -> None:
    """Add the ``geography`` and ``geography-avatars`` verbs."""
    p = subparsers.add_parser(
        "geography", help="bases x domain-mix shares (e.g. Dollar Street + COCO): multi-label probes, top-k "
        "accuracy by income bucket and macro AP, over seeds",
        description="Bases x domain-mix shares on feature stores given as options; the paper's grid as a preset: "
                    "`biastransfer sweep wr-geography` (data/grids/README.md).")
    p.add_argument("--base", nargs="+", action="append", required=True, metavar="ITEM",
                   help="one base: its name, then SOURCE=STORE for each source, e.g. --base geode "
                        "dollarstreet=work/stores/ds__geode.h5 coco=work/stores/coco__geode.h5 (repeat per base)")
    p.add_argument("--sources", default="dollarstreet,coco",
                   help="the two sources; --shares count the first (default dollarstreet,coco)")
    p.add_argument("--classes", default="coco-objects",
                   help="a target set name (coco-objects) or comma-separated class columns")
    p.add_argument("--shares", type=floats, default=[round(0.1 * i, 1) for i in range(11)],
                   help="shares of the first source (default 0,0.1,...,1)")
    p.add_argument("--n", type=int, default=128, help="training rows per cell (default 128)")
    p.add_argument("--size", type=int, default=None,
                   help="rows of each whole set before n are kept (the paper's 165); default the largest set")
    p.add_argument("--seeds", type=ints, default=list(range(5)), help="replicate seeds (default 0,1,2,3,4)")
    p.add_argument("--k", type=int, default=5, help="top-k accuracy's k (default 5)")
    p.add_argument("--groups", default="income_bucket_,region_",
                   help="one-hot prefixes of the grouping columns (default income_bucket_,region_)")
    p.add_argument("--test", default="split", metavar="MODE|SOURCE=MODE,...",
                   help="rows each source is scored on: split (its test split, default) or unused (every row the "
                        "cell did not draw: the paper's Dollar Street test set); one mode, or e.g. dollarstreet=unused")
    p.add_argument("--reference", default=None,
                   help="the base expected to need less of the first source (default: the first --base)")
    p.add_argument("--at-share", type=float, default=0.1, help="share at which the finding compares (default 0.1)")
    p.add_argument("--Cs", type=floats, default=None, help="probe C grid (default the engine's)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default work/results/geography)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    p.set_defaults(func=cmd_geography)

    a = subparsers.add_parser(
        "geography-avatars", help="the geographic-representation experiment on two rendered avatar domains, "
        "offline: pretrain a base per domain, probe on domain mixes, top-k accuracy")
    a.add_argument("--work", type=Path, default=None, help="folder of caches, bases, stores, results "
                   "(default work/geography-avatars)")
    a.add_argument("--n-pretrain", type=int, default=1500, help="pretraining images per domain (default 1500)")
    a.add_argument("--n-eval", type=int, default=1000, help="finetuning/test images per domain (default 1000)")
    a.add_argument("--epochs", type=int, default=12, help="pretraining epochs (default 12)")
    a.add_argument("--shares", type=floats, default=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0],
                   help="shares of domain a (default 0,0.1,0.2,0.3,0.5,0.7,0.9,1)")
    a.add_argument("--n", type=int, default=128, help="training rows per cell (default 128)")
    a.add_argument("--seeds", type=ints, default=list(range(5)), help="replicate seeds (default 0..4)")
    a.add_argument("--k", type=int, default=2, help="top-k accuracy's k (default 2 of the 8 tops)")
    a.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    a.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    a.set_defaults(func=cmd_geography_avatars)


def _bases(items: list[list[str]], sources: tuple[str, ...]) -> dict[str, dict[str, Path]]:
    bases = {}
    for item in items:
        name, pairs = item[0], item[1:]
        if "=" in name or name in bases:
            raise UserError(f"--base {' '.join(item)} must start with a new base name, then SOURCE=STORE pairs.")
        paths = {}
        for pair in pairs:
            source, sep, path = pair.partition("=")
            if not sep or source not in sources or source in paths:
                raise UserError(f"--base {name}: {pair!r} is not SOURCE=STORE for one of the sources {list(sources)}.")
            paths[source] = Path(path)
        if set(paths) != set(sources):
            raise UserError(f"--base {name} needs one store per source {list(sources)}; got {sorted(paths)}.")
        bases[name] = paths
    return bases


def _test_modes(text: str, sources: tuple[str, ...]):
    """``--test``: one mode for every source, or SOURCE=MODE pairs (checked by the runner)."""
    if "=" not in text:
        return text.strip()
    modes = {}
    for pair in split_list(text):
        source, sep, mode = pair.partition("=")
        if not sep or not source.strip() or source.strip() in modes:
            raise UserError(f"--test {text!r} must be one mode or SOURCE=MODE pairs, e.g. dollarstreet=unused.")
        modes[source.strip()] = mode.strip()
    return modes


def geography_document(args) -> dict:
    """The geography grid of ``biastransfer geography``'s options (a document the sweep's loader reads)."""
    from extract.datasets.targets import TARGET_SET_FILES

    sources = parse_list(args.sources, str, name="--sources")
    if len(sources) != 2 or sources[0] == sources[1]:
        raise UserError(f"--sources {args.sources!r} must name two different sources.")
    bases = _bases(args.base, sources)
    classes = args.classes if args.classes in TARGET_SET_FILES else list(parse_list(args.classes, str,
                                                                                    name="--classes"))
    reference = args.reference or next(iter(bases))
    if reference not in bases:
        raise UserError(f"--reference {reference!r} is not one of the bases {list(bases)}.")
    head = {"kind": "geography", "name": "geography", "sources": list(sources), "classes": classes,
            "groups": list(split_list(args.groups)), "k": args.k, "test": _test_modes(args.test, sources),
            "reference": reference, "at_share": args.at_share}
    block = {"kind": "domain_mix", "shares": list(args.shares), "n": args.n, "seeds": list(args.seeds)}
    if args.size is not None:
        block["size"] = args.size
    return {"grid": head, "subsets": [block], "probe": {"device": args.device, **({"Cs": list(args.Cs)} if args.Cs
                                                                                 else {})},
            "backbones": [{"name": name, "base_kind": name, "stores": {s: str(p) for s, p in paths.items()}}
                          for name, paths in bases.items()]}


def cmd_geography(args) -> int:
    """Run ``biastransfer geography``: its options as a geography grid, run by the sweep."""
    from analyze.geography.experiment import finding_sentence
    from analyze.geography.grid import run_geography_grid
    from analyze.sweep.grid import build_grid
    from extract.paths import work_dir

    grid = build_grid(geography_document(args), source="biastransfer geography")
    result = run_geography_grid(grid, out=args.out or work_dir() / "results" / "geography")
    for finding in result["findings"]:
        print(finding_sentence(finding))
    for path in result["paths"].values():
        print(f"wrote {path}")
    return 0


SWEEP_ONLY = ("--targets", "--sensitive", "--runners", "--dataset", "--root", "--base", "--scheduler",
              "--local-cluster")


def sweep_overrides(args) -> list:
    """``biastransfer sweep``'s options on a geography grid as overrides (``--store NAME.SOURCE=PATH``)."""
    from analyze.geography.grid import parse_store_flag
    from analyze.sweep.grid import parse_value

    for flag in SWEEP_ONLY:
        if getattr(args, flag[2:].replace("-", "_")):
            raise UserError(f"{flag} does not apply to the geography grid {args.grid!r} (bases with a store per "
                            "source, probes only); leave it out or use --set and --store NAME.SOURCE=PATH.")
    overrides = list(args.overrides) + [parse_store_flag(item) for item in args.store]
    return overrides + [(f"subsets.0.{key}", parse_value(value)) for key, value in (("n", args.n),
                                                                                    ("seeds", args.seeds))
                        if value is not None]


def run_geography(grid, out, args) -> int:
    """Run a geography grid for ``biastransfer sweep`` and print its cells, finding and files."""
    from analyze.geography.experiment import finding_sentence
    from analyze.geography.grid import run_geography_grid

    geo = grid.experiment
    result = run_geography_grid(grid, out=out, skip_existing=args.skip_existing, n_jobs=args.n_jobs,
                                dry_run=args.dry_run, progress=not args.no_progress)
    cells = result["cells"]
    print(f"grid {grid.name}: {len(cells)} cells ({len(geo.backbones)} bases x {len(geo.shares)} shares x "
          f"{len(geo.seeds)} seeds at n = {geo.n}){' checked, nothing fitted' if args.dry_run else ''} -> {out}")
    for line in refit_lines(cells):
        print(line)
    if args.dry_run:
        return 0
    for finding in result["findings"]:
        print(finding_sentence(finding))
    for path in result["paths"].values():
        print(f"wrote {path}")
    print(f"next: biastransfer reproduce --geography {out}")
    return 0


def cmd_geography_avatars(args) -> int:
    """Run ``biastransfer geography-avatars``."""
    from analyze.geography.avatars import AvatarGeographyConfig, run_avatar_experiment
    from analyze.geography.experiment import finding_sentence
    from extract.paths import work_dir

    config = AvatarGeographyConfig(n_pretrain=args.n_pretrain, n_eval=args.n_eval, epochs=args.epochs,
                                   shares=tuple(args.shares), n=args.n, seeds=tuple(args.seeds), k=args.k)
    result = run_avatar_experiment(args.work or work_dir() / "geography-avatars", config, device=args.device,
                                   progress=not args.no_progress)
    for finding in result["findings"]:
        print(finding_sentence(finding))
    for path in result["paths"].values():
        print(f"wrote {path}")
    return 0
