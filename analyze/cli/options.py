"""Argument types shared by the analyze verbs: comma lists, the ``--test`` rows option, ``--auc-floor``."""

from __future__ import annotations

import argparse

from extract.errors import UserError


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None



def ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_list(text: str, cast, *, name: str) -> tuple:
    """``"0.0,0.5,1"`` -> a tuple of ``cast`` values; a bad entry is one clear sentence."""
    try:
        values = tuple(cast(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise UserError(f"{name} must be a comma-separated list of {cast.__name__}s, got {text!r}.") from None
    if not values:
        raise UserError(f"{name} is empty; give at least one value.")
    return values



SCIENCE_DOC = "docs/science.md"  # where every definition the outputs use is written down
DEFAULT_AUC_FLOOR = 0.65  # the diagnosis's default (analyze.diagnosis.DEFAULT_AUC_FLOOR; kept here so --help imports nothing)


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
