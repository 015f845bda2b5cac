"""Values typed by users, parsed once: comma lists and ``KEY=VALUE`` adapter options.

The command line, recipes and grid overrides all use these rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

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


def config_from_mapping(cls, mapping, where: str | None = None, *, ignore=()):
    """``cls(**mapping)`` for a frozen config dataclass, from one section of a grid or recipe file.

    Lists become tuples (a TOML array is a list); keys that are not fields of ``cls`` raise,
    except those in ``ignore`` (keys of the same section that another group takes). Errors
    start with ``where`` (e.g. ``"grid.toml [probe]"``) so they name the file and section.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(mapping, Mapping):
        raise UserError(f"{prefix}expected a table of options, got {type(mapping).__name__}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - fields - set(ignore))
    if unknown:
        raise UserError(f"{prefix}unknown key `{unknown[0]}`; use some of {sorted(fields)}.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items() if k in fields}
    try:
        return cls(**values)
    except UserError as error:
        raise type(error)(f"{prefix}{error}") from None


class FromMapping:
    """Mixin: :meth:`from_mapping` and :meth:`with_` for a frozen config dataclass."""

    @classmethod
    def from_mapping(cls, mapping, where: str | None = None, *, ignore=()):
        """Built from one section of a grid or recipe file (see :func:`config_from_mapping`)."""
        return config_from_mapping(cls, mapping, where, ignore=ignore)

    def with_(self, **changes):
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
