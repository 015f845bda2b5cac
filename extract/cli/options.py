"""Options shared by the extract-stage verbs: adapter options, default store paths, and the
option groups of ``extract`` and ``extract-shard``."""

from __future__ import annotations

from pathlib import Path

from extract.errors import UserError
from extract.paths import work_dir


def default_store_path(dataset: str, backbone: str) -> Path:
    safe = str(backbone).replace("/", "_").replace("\\", "_")
    return work_dir() / "stores" / f"{dataset}__{Path(safe).name}.h5"



def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> keyword options (ints, floats, comma lists, true/false)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"adapter option {pair!r} is not KEY=VALUE; write e.g. --option val_fraction=0.1.")
        options[key.strip()] = _parse_value(value.strip())
    return options



def _parse_value(text: str):
    if "," in text:
        return tuple(_parse_value(part) for part in text.split(",") if part)
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text

