"""Argument types shared by the analyze verbs: comma lists, the ``--test`` rows option, ``--auc-floor``."""

from __future__ import annotations

import argparse

from extract.errors import UserError
from extract.parsing import parse_list


def _typed_list(text: str, cast, kind: str) -> list:
    try:
        return list(parse_list(text, cast, name="the value"))
    except UserError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}") from None


def floats(text: str) -> list[float]:
    """argparse type: a comma-separated list of numbers (the rule of :func:`extract.cli.options.split_list`)."""
    return _typed_list(text, float, "numbers")


def ints(text: str) -> list[int]:
    """argparse type: a comma-separated list of integers."""
    return _typed_list(text, int, "integers")



SCIENCE_DOC = "docs/science.md"  # where every definition the outputs use is written down
DEFAULT_AUC_FLOOR = 0.65  # the diagnosis's default (analyze.metrics.diagnosis.DEFAULT_AUC_FLOOR; kept here so --help imports nothing)


def auc_floor(text: str) -> float:
    """``--auc-floor``: a number in [0.5, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0.5, 1), got {text!r}") from None
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0.5, 1), got {text!r}")
    return value


def add_auc_floor(parser: argparse.ArgumentParser) -> None:
    """The ``--auc-floor`` option of every verb that diagnoses cells (``weak_task``)."""
    parser.add_argument("--auc-floor", type=auc_floor, default=DEFAULT_AUC_FLOOR, metavar="AUC",
                        help=f"flag cells whose test AUC is below this as weak_task (default {DEFAULT_AUC_FLOOR}; "
                             f"see {SCIENCE_DOC} section 8)")
