"""The argument parser of the ``biastransfer`` CLI: usage errors in one sentence.

argparse prints a usage block and an error line; the project's rule is one sentence on
stderr and exit status 2 (docs/troubleshooting.md). :class:`OneLineParser` prints::

    biastransfer extract: error: the following arguments are required: --root; see `biastransfer extract --help`.

Subparsers (and their subparsers) are built with the same behaviour, and an option a verb
does not know is reported by that verb's parser (``biastransfer store: error: unrecognized
arguments: --colour; ...``) rather than by the top-level one.

Library errors name parameters, not flags (:class:`extract.errors.UserError`); each verb's
parser records its table ``{parameter: flag}`` (:func:`flag_table`) on the parsed arguments as
``param_flags``, and the entry points print a :class:`UserError` through that table, so the
command line's users read about the flags they typed.
"""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr with exit status 2.

    ``param_flags`` holds the entries of :func:`flag_table` that the options' ``dest`` cannot
    give: a library parameter spelled differently from its flag's ``dest``
    (:func:`map_params`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.param_flags: dict[str, str] = {}

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", VerbParser)
        return super().add_subparsers(**kwargs)

    def error(self, message: str):
        """Print ``<prog>: error: <message>; see `<prog> --help`.`` and exit with status 2."""
        text = " ".join(str(message).split()).rstrip(".")
        self.exit(2, f"{self.prog}: error: {text}; see `{self.prog} --help`.\n")


class VerbParser(OneLineParser):
    """The parser of one verb: arguments it does not recognise are its own usage error."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        if getattr(namespace, "param_flags", None) is None:  # the innermost verb (parsed first) sets it
            namespace.param_flags = flag_table(self)
        return namespace, extras


def map_params(parser: argparse.ArgumentParser, flags: dict[str, str]) -> None:
    """Add ``{parameter: flag}`` entries to ``parser``'s :func:`flag_table` (any ArgumentParser),
    for library parameters or grid keys spelled differently from an option's ``dest``, e.g.
    ``map_params(p, {"num_workers": "--workers"})``."""
    if getattr(parser, "param_flags", None) is None:
        parser.param_flags = {}
    parser.param_flags.update(flags)


def flag_table(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{parameter: flag}`` of one verb, through which its errors are printed
    (:meth:`extract.errors.UserError.with_flags`): each option's ``dest`` names its first long
    flag (``n_jobs`` -> ``--n-jobs``), then the parser's own ``param_flags`` entries."""
    table = {}
    for action in parser._actions:
        longs = [option for option in action.option_strings if option.startswith("--")]
        if longs and action.dest not in ("help", argparse.SUPPRESS):
            table.setdefault(action.dest, longs[0])
    return {**table, **getattr(parser, "param_flags", {})}


__all__ = ["OneLineParser", "VerbParser", "flag_table", "map_params"]
