"""Argument types shared by the analyze verbs: comma lists, the ``--test`` rows option."""

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

