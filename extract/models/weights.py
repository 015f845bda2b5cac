"""Reading weight files safely: ``torch.load(..., weights_only=True)`` with one-sentence errors.

The registry and the timm bridge both read files through :func:`load_state_file`."""

from __future__ import annotations

from pathlib import Path

import torch

from extract.errors import UserError


def load_state_file(path: str | Path) -> dict:
    """Read a weight file with ``weights_only=True``; errors become one sentence."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; pass the path of a local file (nothing is downloaded).")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise UserError(
            f"weights file {path} cannot be loaded safely ({exc.__class__.__name__}): it is truncated, corrupt or "
            "holds objects other than tensors, and only plain tensor checkpoints are accepted (torch.load weights_only=True)."
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"weights file {path} holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead.")
    return obj

