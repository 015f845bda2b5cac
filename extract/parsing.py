"""Values typed by users, parsed once: comma lists and ``KEY=VALUE`` adapter options.

The command line, recipes and grid overrides all use these rules."""

from __future__ import annotations

from extract.errors import UserError


def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> keyword options (ints, floats, comma lists, true/false)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"adapter option {pair!r} is not KEY=VALUE; write e.g. val_fraction=0.1.")
        options[key.strip()] = _parse_value(value.strip())
    return options



def split_list(text) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the one comma-list rule of the command line and of
    grid overrides (entries stripped, blank entries dropped)."""
    return [part.strip() for part in str(text).split(",") if part.strip()]



def parse_list(text, cast, *, name: str) -> tuple:
    """``"0.0,0.5,1"`` -> a tuple of ``cast`` values; a bad or empty list is one clear sentence."""
    try:
        values = tuple(cast(part) for part in split_list(text))
    except ValueError:
        raise UserError(f"{name} must be a comma-separated list of {cast.__name__}s, got {text!r}.") from None
    if not values:
        raise UserError(f"{name} is empty; give at least one value.")
    return values



def _parse_value(text: str):
    if "," in text:
        return tuple(_parse_value(part) for part in split_list(text))
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text

