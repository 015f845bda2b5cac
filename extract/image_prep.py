"""The uint8 resize and centre crop shared by every image path (host or device decode).

Images stay uint8 until they reach the device, where they are scaled and normalised; the
same function runs in DataLoader workers (host decode) and on the device (device decode),
so both paths resize alike.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from extract.backbones import Preprocess


def prepare_uint8(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """Resize the shorter side to ``preprocess.resize`` and centre-crop, staying uint8.

    Parameters
    ----------
    images : Tensor of shape (3, H, W) or (k, 3, H, W), uint8, on any device

    Returns
    -------
    Tensor of shape (..., 3, crop, crop), uint8, on the same device
    """
    height, width = images.shape[-2:]
    if min(height, width) != preprocess.resize:
        mode = InterpolationMode(preprocess.interpolation.lower())
        images = TF.resize(images, [preprocess.resize], interpolation=mode, antialias=True)
    if tuple(images.shape[-2:]) != (preprocess.crop, preprocess.crop):
        images = TF.center_crop(images, [preprocess.crop, preprocess.crop])
    return images.contiguous()


__all__ = ["prepare_uint8"]
