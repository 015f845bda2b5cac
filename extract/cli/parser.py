"""The argument parser of the ``biastransfer`` CLI: usage errors in one sentence.

argparse prints a usage block and an error line; the project's rule is one sentence on
stderr and exit status 2 (docs/troubleshooting.md). :class:`OneLineParser` prints::

    biastransfer extract: error: the following arguments are required: --root; see `biastransfer extract --help`.

Subparsers (and their subparsers) are built with the same behaviour, and an option a verb
does not know is reported by that verb's parser (``biastransfer store: error: unrecognized
arguments: --colour; ...``) rather than by the top-level one.
"""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr with exit status 2."""

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
        return namespace, extras


__all__ = ["OneLineParser", "VerbParser"]
