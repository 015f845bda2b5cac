"""The ``biastransfer`` command line: one console script with subcommands.

Each command module exposes ``register(subparsers)``, which adds its verbs and sets
``func`` on their parsers. ``VERBS`` names, for every verb, the module that registers it and
its one-line help: ``biastransfer VERB ...`` imports only that module (the command modules
pull in torch, statsmodels or seaborn, which take seconds to import), and
``biastransfer --help`` lists every verb from ``VERBS`` without importing any of them
(a test keeps ``VERBS`` equal to what the modules register). A :class:`extract.errors.UserError`
is printed as one sentence on stderr with exit status 2, never as a traceback, and in the verb's
words: the parameters the library names are written as the flags that set them
(:func:`extract.cli.parser.flag_table`); so is a
usage error (unknown option, missing or malformed argument), through
:class:`extract.cli.parser.OneLineParser`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from extract import __version__
from extract.cli.parser import OneLineParser
from extract.errors import UserError

VERBS = {
    "avatars": ("extract.cli.avatars", "render the embedded procedural avatar dataset, or a contact sheet of it"),
    "datasets": ("extract.cli.extract", "list the dataset adapters and the layout each expects"),
    "backbones": ("extract.cli.extract", "list the registered backbones"),
    "extract": ("extract.cli.extract", "embed every image of a dataset into an HDF5 feature store"),
    "store": ("extract.cli.extract", "print a feature store's shape, attributes and provenance"),
    "extract-shard": ("extract.cli.shard", "extract on several processes/GPUs under torchrun and join the shards"),
    "pretrain": ("extract.cli.pretrain", "train a base from scratch on dataset attributes, or build the bases of a recipe"),
    "demo": ("analyze.cli.demo", "the quick-start on the embedded avatar dataset: render, extract, probe, report"),
    "probe": ("analyze.cli.probe",
              "linear probes on feature stores over a grid of finetuning subsets -> one JSON per cell"),
    "associate": ("analyze.cli.associate", "embedding association tests (WEAT / iEAT, concept, pair) before and "
                  "after finetuning, with a random-init null"),
    "associate-experiment": ("analyze.cli.associate_experiment", "association change of a target concept after "
                             "finetuning on a set correlated with dark_skin vs a balanced one, over seeds, with a "
                             "random-init null"),
    "geography": ("analyze.cli.geography", "bases x domain-mix shares (e.g. Dollar Street + COCO): multi-label "
                  "probes, top-k accuracy by income bucket and macro AP, over seeds"),
    "geography-avatars": ("analyze.cli.geography", "the geographic-representation experiment on two rendered "
                          "avatar domains, offline: pretrain a base per domain, probe on domain mixes, top-k accuracy"),
    "finetune": ("analyze.cli.finetune", "fully finetune a base on correlation-level subsets; one JSON record per cell"),
    "salience": ("analyze.cli.salience", "estimate how much easier the sensitive attribute is to learn than each target"),
    "effects": ("analyze.cli.effects", "effect-size regressions on a collected results table"),
    "plot": ("analyze.cli.plot", "figures from a collected results table, an effects table or a salience table"),
    "sweep": ("analyze.cli.sweep", "run a grid (preset or TOML) of probe/finetune cells; one JSON record per cell"),
    "collect": ("analyze.cli.collect", "fold result records (one JSON per cell) into one table (CSV or Parquet)"),
    "plan": ("analyze.cli.plan", "curation planner: the correlation move that halves the stereotype FPR gap"),
    "report": ("analyze.cli.report", "a Markdown and a self-contained HTML report from a collected results table"),
    "reproduce": ("analyze.cli.reproduce", "run the grids the papers' findings need (on the avatars, or on your own "
                  "labelled images) and write the findings table (reproduced / contradicted / inconclusive) and a "
                  "report"),
}
COMMAND_MODULES = list(dict.fromkeys(module for module, _ in VERBS.values()))


def chosen_verb(argv: list[str]) -> str | None:
    """The verb of a command line: its first word that is not an option (None: no verb)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser with the verbs of ``verb``'s module registered (every module when ``verb``
    is None); every other verb is listed with its help but parses nothing."""
    parser = OneLineParser(
        prog="biastransfer",
        description="Measure how bias in a pretrained backbone carries over into finetuned models.",
    )
    parser.add_argument("--version", action="version", version=f"biastransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = COMMAND_MODULES if verb is None else [VERBS[verb][0]] if verb in VERBS else []
    for name in modules:
        importlib.import_module(name).register(sub)
    for name, (_, help_text) in VERBS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text)
    return parser


def configure_environment(env=None) -> None:
    """Before torch is imported: OpenMP threads that wait sleep (``OMP_WAIT_POLICY=PASSIVE``)
    unless the user chose a policy. With the default (spinning) policy, two torch threads
    beside one other CPU-bound process on 2 cores train a Lite0 at 26-35% of their quiet
    speed; passive waiting keeps 54-61%, at 6-13% less quiet speed (``benchmarks/busy.py``,
    README; set ``OMP_WAIT_POLICY=ACTIVE`` on a dedicated machine to take that back)."""
    (os.environ if env is None else env).setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "torch" not in sys.modules:  # OpenMP reads its wait policy once, when torch loads
        configure_environment()
    verb = chosen_verb(argv)
    parser = build_parser(verb if verb is not None else "")  # no verb: list them, import nothing
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
        message = exc.with_flags(getattr(args, "param_flags", None) or {})
        print(f"biastransfer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", None)
        if signum is None:  # Ctrl-C outside a sweep
            print(f"biastransfer {args.command}: interrupted.", file=sys.stderr)
            return 130
        # SIGTERM or SIGINT ended a sweep (analyze.sweep.workers.Terminated), whose workers are gone:
        # end at once, as the signal would have, so the resource trackers that end with this
        # process do not wait for the interpreter's teardown
        from analyze.sweep.workers import exit_now

        print(f"biastransfer {args.command}: {'terminated' if signum == 15 else 'interrupted'}.", file=sys.stderr)
        exit_now(128 + signum)
    return int(result or 0)

