"""Seeded draws from torch's global RNG for the layers that use it, without touching the caller's RNG.

Shuffling, flips and initialisation take private generators, but some layers can only draw
from torch's *global* RNG: dropout and stochastic depth inside timm backbones (EfficientNet-Lite0
applies ``drop_rate = 0.2`` dropout to its pooled features in training mode). Left unseeded,
those draws depend on whatever consumed the global RNG before, so two runs of the same
recipe gave different weights. :func:`seeded_torch_rng` runs a training loop with the global
RNG seeded from ``(seed, stream)`` and restores the caller's state afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch


def derived_seed(seed: int, stream: int) -> int:
    """A 62-bit seed for stream ``stream`` of ``seed`` (numpy's SeedSequence: independent streams)."""
    return int(np.random.default_rng([int(seed), int(stream)]).integers(2**62))


@contextmanager
def seeded_torch_rng(seed: int, stream: int, device: torch.device | None = None):
    """Run the block with torch's global RNG (CPU, and ``device`` when it is CUDA) seeded from ``(seed, stream)``.

    The caller's RNG states are restored on exit, also when the block raises.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derived_seed(seed, stream))
        yield


__all__ = ["derived_seed", "seeded_torch_rng"]
