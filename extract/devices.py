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



# oneDNN v3.12.0 (torch 2.14.1) computes the input gradient of a 1x1 convolution with stride > 1
# and 2-7 input channels per group in the channels_last layout with its `brgconv_strided:avx2`
# kernel wherever it dispatches AVX2 (CPUs without AVX-512), and that kernel writes out of bounds:
# the heap is corrupted and the process dies later with a segmentation fault, an abort or a bus
# error (issue 23: the small CNN at width 4, whose first shortcut is a 1x1 stride-2 convolution
# from 4 channels). The contiguous layout takes another kernel; the forward pass is unaffected.
_ONEDNN_SAFE_1X1_STRIDED_CHANNELS = 8


def _defective_on_onednn_avx2(conv: torch.nn.Conv2d) -> bool:
    return (tuple(conv.kernel_size) == (1, 1) and max(conv.stride) > 1
            and conv.in_channels // conv.groups < _ONEDNN_SAFE_1X1_STRIDED_CHANNELS)


def training_memory_format(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """The layout to train ``model`` in on ``device``: channels_last where it is safe, else contiguous.

    channels_last is faster on both CUDA and the CPU (Lite0 at 64 px: about 1.4x on one CPU
    thread), but on the CPU a model with a 1x1 strided convolution of fewer than 8 input
    channels per group trains in the contiguous layout instead, whatever the CPU: oneDNN's
    AVX2 kernel for that convolution's input gradient corrupts memory (see the comment above).
    """
    if device.type == "cpu" and any(isinstance(m, torch.nn.Conv2d) and _defective_on_onednn_avx2(m)
                                    for m in model.modules()):
        return torch.contiguous_format
    return torch.channels_last
