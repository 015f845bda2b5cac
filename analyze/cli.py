"""The ``biastransfer`` command line: one console script with subcommands.

Each command module exposes ``register(subparsers)``, which adds its verbs and sets
``func`` on their parsers. ``extract`` verbs come from :mod:`extract.cli`; ``analyze``
verbs from the modules listed in ``COMMAND_MODULES``. A :class:`extract.errors.UserError`
is printed as one sentence on stderr with exit status 2, never as a traceback; so is a
usage error (unknown option, missing or malformed argument), through
:class:`extract.cli_parser.OneLineParser`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from extract import __version__
from extract.cli_parser import OneLineParser
from extract.errors import UserError

COMMAND_MODULES = [
    "extract.cli",
    "extract.sharded",
    "extract.pretrain",
    "analyze.commands",
    "analyze.associate_run",
    "analyze.associate_experiment",
    "analyze.finetune",
    "analyze.salience",
    "analyze.effects",
    "analyze.plots",
    "analyze.sweep",
    "analyze.collect",
    "analyze.plan",
    "analyze.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="biastransfer",
        description="Measure how bias in a pretrained backbone carries over into finetuned models.",
    )
    parser.add_argument("--version", action="version", version=f"biastransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2:  # a usage error, already on stderr as one sentence
            return 2
        raise  # --help, --version
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"biastransfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"biastransfer {args.command}: interrupted.", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
