"""Devices: the one parser of ``--device`` (imports only torch, so every verb can use it cheaply)."""

from __future__ import annotations

import torch

from extract.errors import UserError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable device is a :class:`UserError`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was requested but CUDA is not available; use `device='cpu'` or `device='auto'`.")
    if resolved.type not in ("cpu", "cuda"):
        raise UserError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return resolved

