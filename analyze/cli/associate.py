"""``biastransfer associate``: embedding association tests over backbones, with a null."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyze.association.groups import NAME_PRESETS, comparison_groups, item_sets
from analyze.association.models import DEFAULT_BATCH_SIZE
from analyze.association.options import EmbedOptions
from analyze.association.retention import RetentionOptions
from analyze.association.run import load_concepts, run_association, run_comparison_groups
from analyze.association.spec import load_tests, set_names
from analyze.results.tables import write_table
from extract.cli.parser import map_params
from extract.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``associate`` verb to the ``biastransfer`` parser."""
    p = subparsers.add_parser(
        "associate", help="embedding association tests (WEAT / iEAT, concept, pair) before and "
        "after finetuning, with a random-init null")
    p.add_argument("--backbone", action="append", required=True, metavar="NAME_OR_CKPT",
                   help="registered name, timm/<model>, or checkpoint (a name may end =WEIGHTS_FILE or =scratch); "
                        "repeat for a base and its finetuned models")
    p.add_argument("--concepts", required=True, metavar="avatars:CACHE|folder:ROOT",
                   help="concept sets: an avatar cache (.h5) or a folder per concept")
    p.add_argument("--tests", type=Path, metavar="SPEC",
                   help="test specification, e.g. data/association/avatars-accessories.toml "
                        "(needed unless --comparison-groups is given)")
    p.add_argument("--comparison-groups", choices=sorted(NAME_PRESETS), default=None,
                   help="also measure Ranjit et al.'s comparison groups with these set names "
                        "(paper: man, woman, random, stop_sign; avatars: dark, light, random, "
                        "neutral) and each finetune's retention (Spearman rho per group)")
    p.add_argument("--objects", default=None, metavar="O1,O2",
                   help="object concepts of the comparison groups, comma-separated "
                        "(e.g. car,fashion or hat,eyewear)")
    p.add_argument("--retention-bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap replicates of the comparison-group intervals and retention")
    p.add_argument("--out", type=Path, default=Path("work/association/table.csv"),
                   help="CSV to write; the plot and the change summary go next to it")
    p.add_argument("--null-seeds", type=int, default=5, metavar="N",
                   help="random-init networks in the null (seeds 0..N-1; 0 = no null)")
    p.add_argument("--null-arch", default=None, metavar="NAME",
                   help="registered name whose architecture the null uses (default: each model's)")
    p.add_argument("--image-size", type=int, default=None, help="override the backbones' resize and crop")
    p.add_argument("--per-set", type=int, default=24, help="avatar images per concept set (even)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="avatar split the sets are drawn from (default test)")
    p.add_argument("--concept-seed", type=int, default=0, help="seed of the avatar set selection")
    p.add_argument("--folder-size", type=int, default=224,
                   help="side to which folder images are resized and centre-cropped")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-plot", action="store_true", help="write the CSV only")
    map_params(p, {"backbones": "--backbone", "source": "--concepts",
                   "names": "--comparison-groups"})
    p.set_defaults(func=cmd_associate)



def _comparison_items(args) -> list:
    if args.comparison_groups is None:
        if args.objects is not None:
            raise UserError("--objects needs --comparison-groups; pass paper or avatars.")
        return []
    objects = [o.strip() for o in (args.objects or "").split(",") if o.strip()]
    if not objects:
        raise UserError("--comparison-groups needs --objects; pass e.g. --objects car,fashion.")
    return comparison_groups(objects, names=args.comparison_groups)


def cmd_associate(args) -> int:
    """Run ``biastransfer associate``: the table, the change summary, the plot, the groups."""
    from analyze.association.report import plot_association, summarize_change
    from extract.devices import resolve_device

    if args.out.suffix.lower() != ".csv" or args.out.is_dir():
        raise UserError(f"--out {args.out} is not a .csv file path; pass e.g. "
                        "work/association/table.csv.")
    if args.null_seeds < 0:
        raise UserError(f"--null-seeds {args.null_seeds} is negative; pass 0 (no null) or more.")
    items = _comparison_items(args)
    if args.tests is None and not items:
        raise UserError("nothing to measure; pass --tests SPEC, --comparison-groups with "
                        "--objects, or both.")
    options = RetentionOptions(n_bootstrap=args.retention_bootstrap)
    tests = load_tests(args.tests) if args.tests is not None else []
    sets = load_concepts(args.concepts, list(dict.fromkeys(set_names(tests) + item_sets(items))),
                         per_set=args.per_set, split=None if args.split == "all" else args.split,
                         seed=args.concept_seed, folder_size=args.folder_size)
    embed = EmbedOptions(image_size=args.image_size, batch_size=args.batch_size,
                         device=resolve_device(args.device))
    written = []
    if tests:
        table = run_association(args.backbone, sets, tests, null_seeds=range(args.null_seeds),
                                null_arch=args.null_arch, embed=embed)
        written.append(write_table(table, args.out))
        summary = summarize_change(table)
        if len(summary):
            written.append(write_table(summary, args.out.with_name(args.out.stem + "_change.csv")))
        if not args.no_plot:
            written += plot_association(table, args.out.with_suffix(""))
    if items:
        written += _write_groups(args, sets, items, options, embed)
    for path in written:
        print(f"wrote {path}")
    return 0


def _write_groups(args, sets, items, options, embed) -> list[Path]:
    """The comparison-group similarities and the retention table (and its plot) next to --out."""
    from analyze.association.report import plot_retention

    similarities, retention = run_comparison_groups(args.backbone, sets, items, options=options,
                                                    embed=embed)
    stem = args.out.with_name(args.out.stem)
    written = [write_table(similarities, Path(f"{stem}_groups.csv"))]
    if len(retention):
        written.append(write_table(retention, Path(f"{stem}_retention.csv")))
        if not args.no_plot:
            written += plot_retention(similarities, retention, Path(f"{stem}_retention"))
    return written
