"""Seeded, batched image augmentations of a contrastive (SimCLR) base, on tensors.

Every draw of a batch comes from one ``torch.Generator`` on the CPU (so the same seed gives
the same views on any device) and is applied to the whole batch at once: one
``affine_grid``/``grid_sample`` for crop and flip, a few broadcast arithmetic operations
for the colour jitter. No PIL image is made.

Named sets (a recipe's per-base ``augment``):

``"color"`` (the default)
    random resized crop, horizontal flip and SimCLR's colour distortion: with probability
    0.8 a colour jitter (brightness, contrast and saturation factors in [0.6, 1.4], hue
    shift in [-0.1, 0.1] of a turn), then with probability 0.2 grey scale. Two views of one
    face then differ in skin colour, so the objective rewards features *invariant* to it.
``"no_color"``
    random resized crop and horizontal flip only; colour is the same in both views, so
    the objective has no reason to discard skin tone.

The default is SimCLR's own set: Chen et al. (2020) found colour distortion essential,
since without it two crops of one image are matched by their colour histogram alone, and
on flat-coloured avatars (one skin, hair and background colour per image) that shortcut is
all the more available. ``"no_color"`` is the ablation that measures what the jitter costs
the sensitive attribute.

The crop takes a share of the area in [0.25, 1] (SimCLR: [0.08, 1]; a 64-px avatar is one
centred face, and a crop of 8% of it often holds no face at all) and an aspect ratio in
[3/4, 4/3] (log-uniform), placed uniformly inside the image, and is resampled bilinearly to
the full size. The colour operations follow torchvision's definitions in a fixed order
(brightness, contrast, saturation, hue): contrast blends with the image's mean grey,
saturation with its grey image; the hue shift is a rotation of the chroma plane of YIQ,
a linear stand-in for torchvision's HSV hue shift that keeps the batch on-device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from extract.errors import UserError

# ITU-R BT.601 luma, as torchvision's rgb_to_grayscale
LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True)
class AugmentSpec:
    """One named augmentation set (see the module docstring).

    ``scale`` and ``ratio`` bound the crop's area share and aspect ratio; ``jitter`` is
    (brightness, contrast, saturation, hue) strengths (factors drawn in ``[1 - s, 1 + s]``,
    hue in ``[-h, h]`` turns), applied with probability ``p_jitter``; ``p_gray`` is the
    probability of grey scale; ``flip`` the probability of a horizontal flip.
    """

    name: str
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: tuple[float, float, float, float] | None = None
    p_jitter: float = 0.0
    p_gray: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "random_resized_crop": {"scale": list(self.scale), "ratio": list(self.ratio)},
                "hflip": self.flip, "color_jitter": None if self.jitter is None else {
                    "brightness": self.jitter[0], "contrast": self.jitter[1], "saturation": self.jitter[2],
                    "hue": self.jitter[3], "p": self.p_jitter}, "grayscale": self.p_gray}


AUGMENTS = {
    "color": AugmentSpec("color", jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=0.8, p_gray=0.2),
    "no_color": AugmentSpec("no_color"),
}
DEFAULT_AUGMENT = "color"


def resolve_augment(name) -> AugmentSpec:
    """The named augmentation set, or a UserError naming ``augment``."""
    if name not in AUGMENTS:
        raise UserError(f"`augment` = {name!r} is not a known augmentation set; choose one of {sorted(AUGMENTS)}.")
    return AUGMENTS[name]


def _crop_boxes(n: int, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) crop boxes ``(width, height, centre x, centre y)`` in the [-1, 1] image frame."""
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    area = spec.scale[0] + (spec.scale[1] - spec.scale[0]) * u[:, 0]
    log_ratio = math.log(spec.ratio[0]) + (math.log(spec.ratio[1]) - math.log(spec.ratio[0])) * u[:, 1]
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1.0 - width) * (2.0 * u[:, 2] - 1.0)  # the box stays inside the image
    cy = (1.0 - height) * (2.0 * u[:, 3] - 1.0)
    return torch.stack([width, height, cx, cy], 1)


def _color(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Colour jitter and grey scale of ``x`` (n, 3, H, W) in [0, 1]."""
    n = len(x)
    u = torch.rand(n, 6, generator=generator)
    b, c, s, h = spec.jitter
    on = (u[:, 0] < spec.p_jitter).float()
    gray_on = (u[:, 1] < spec.p_gray).float()
    factors = [1.0 + on * strength * (2.0 * u[:, k] - 1.0) for k, strength in zip((2, 3, 4), (b, c, s))]
    hue = on * h * (2.0 * u[:, 5] - 1.0)
    view = lambda t: t.to(x.device).view(n, 1, 1, 1)  # noqa: E731
    luma = torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)
    x = (x * view(factors[0])).clamp(0, 1)
    mean_grey = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (view(factors[1]) * x + (1 - view(factors[1])) * mean_grey).clamp(0, 1)
    grey = (x * luma).sum(1, keepdim=True)
    x = (view(factors[2]) * x + (1 - view(factors[2])) * grey).clamp(0, 1)
    angle = 2 * math.pi * hue
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(n, 3, 3)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).to(x.device, x.dtype)  # (n, 3, 3)
    x = torch.einsum("nij,njhw->nihw", matrix, x).clamp(0, 1)
    grey = (x * luma).sum(1, keepdim=True).expand_as(x)
    return torch.where(view(gray_on) > 0, grey, x)


def augment_batch(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image: float32 (n, 3, H, W) in [0, 1].

    ``images`` is uint8 (n, 3, H, W) on any device; ``generator`` (CPU) draws every random
    choice, in a fixed order (crop boxes, flips, then colour), so the same generator state
    gives the same views.
    """
    n, _, height, width = images.shape
    x = images.to(torch.float32).div(255.0)
    boxes = _crop_boxes(n, spec, generator)
    flips = torch.where(torch.rand(n, generator=generator) < spec.flip, -1.0, 1.0).double()
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = boxes[:, 0] * flips
    theta[:, 0, 2] = boxes[:, 2]
    theta[:, 1, 1] = boxes[:, 1]
    theta[:, 1, 2] = boxes[:, 3]
    grid = F.affine_grid(theta.to(x.device, torch.float32), [n, 3, height, width], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if spec.jitter is not None:
        x = _color(x, spec, generator)
    return x


__all__ = ["AUGMENTS", "DEFAULT_AUGMENT", "AugmentSpec", "augment_batch", "resolve_augment"]
