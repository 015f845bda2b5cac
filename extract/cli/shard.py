"""``biastransfer extract-shard`` (and ``python -m extract.cli.shard`` under torchrun): sharded extraction."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import timedelta

from extract.cli.options import add_extract_arguments, store_out
from extract.cli.parser import OneLineParser, flag_table
from extract.errors import UserError
from extract.extraction import ExtractOptions
from extract.sharded import BACKENDS, DEFAULT_TIMEOUT, RankInfo, ShardOptions, extract_sharded
from extract.store.join import JOIN_MODES
from extract.store.writer import check_store_output


# -- command line -------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``extract-shard`` (those of ``biastransfer extract`` plus the join)."""
    add_extract_arguments(p, out_help="joined store (default: work/stores/<dataset>__<backbone>.h5)",
                          batch_help="images per forward; also sets the shard boundaries (default 256)",
                          device_help="auto, cpu or cuda (each rank uses cuda:LOCAL_RANK)",
                          workers_help="decode workers per rank")
    p.add_argument("--join", choices=JOIN_MODES, default="copy",
                   help="copy into one store (default) or an HDF5 virtual dataset over the shard files")
    p.add_argument("--keep-shards", action="store_true", help="keep the shard files after a copy join")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="torch.distributed backend (auto: nccl on GPUs)")
    p.add_argument("--timeout-minutes", type=float, default=DEFAULT_TIMEOUT.total_seconds() / 60,
                   help="how long a rank waits for the others (default 24 h)")
    p.add_argument("--overwrite", action="store_true", help="redo an existing store (and its shards)")



def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``extract-shard`` verb (launch it under torchrun) to the top-level parser."""
    p = sub.add_parser("extract-shard", help="extract on several processes/GPUs under torchrun and join the shards")
    add_arguments(p)
    p.set_defaults(func=cmd_extract_shard)



def cmd_extract_shard(args) -> int:
    from extract.backbones import create_backbone
    from extract.parsing import parse_options
    from extract.datasets import get_adapter

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.timeout_minutes <= 0:
        raise UserError(f"--timeout-minutes must be positive, got {args.timeout_minutes}.")
    adapter = get_adapter(args.dataset, args.root, **parse_options(args.option))
    out = check_store_output(store_out(args))
    backbone = create_backbone(args.backbone, weights=args.weights, seed=args.seed, image_size=args.image_size)
    options = ExtractOptions(batch_size=args.batch_size, device=args.device, num_workers=args.workers,
                             resume=not args.no_resume, overwrite=args.overwrite, decode=args.decode)
    sharding = ShardOptions(join=args.join, keep_shards=args.keep_shards, backend=args.backend,
                            timeout=timedelta(minutes=args.timeout_minutes))
    path = extract_sharded(adapter, backbone, out, options=options, sharding=sharding)
    if RankInfo.from_env().rank == 0:
        print(f"wrote {path}")
    return 0



def main(argv: list[str] | None = None) -> int:
    """``python -m extract.cli.shard ...`` (under torchrun or alone); a UserError exits 2."""
    parser = OneLineParser(prog="python -m extract.cli.shard", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(message)s")
    try:
        return cmd_extract_shard(args)
    except UserError as exc:
        print(f"extract-shard (rank {rank}): error: {exc.with_flags(flag_table(parser))}", file=sys.stderr)
        return 2



if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
