"""Backbones for association tests: embedding concept sets, stages, and random-init twins.

:func:`embed_images` embeds a small uint8 image set with a backbone's own preprocessing.
:func:`describe_model` builds a backbone from a registered name or a toolkit checkpoint and
reads its finetuning **stage** from the checkpoint's meta (``checkpoint_meta``), using these
keys, all optional:

* ``base`` — the base the checkpoint was finetuned from (a registered name, a checkpoint path,
  its file stem, or its meta ``name``). Present means stage ``"after"``; absent, or a plain
  registered name, means stage ``"before"``.
* ``base_sha256`` — sha256 of the base's weight file; matches the base more reliably than
  ``base``.
* ``condition`` — the finetuning condition (e.g. ``"corr0.9"``, ``"balanced"``); default
  ``"finetuned"``. Before-stage models get the condition ``"base"``.
* ``seed`` — the finetuning seed, reported as ``finetune_seed``.
* ``name`` — the model's display name (default: the file stem).

:func:`random_twin` builds the same architecture at random initialisation for a seed, with
the observed model's preprocessing: the null baseline.

A registered name or a ``timm/<model>`` name may carry its weights file as ``NAME=PATH``
(``timm/vit_small_patch14_dinov2.lvd142m=dinov2_vits14_pretrain.pth``; ``NAME=scratch``
for random initialisation); a timm model's null twin is the same timm architecture
(:mod:`extract.models.timm_bridge`), shared with the checkpoints finetuned from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import nn
from torchvision.transforms import InterpolationMode

from extract.backbones import (
    ARCHITECTURES,
    REGISTRY,
    Backbone,
    create_backbone,
    split_weights,
)
from extract.devices import resolve_device
from extract.errors import UserError
from extract.models.timm_bridge import is_timm_name

DEFAULT_BATCH_SIZE = 64


def embed_images(backbone: Backbone, images: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Pooled features of ``images`` under ``backbone`` (eval mode, no gradients).

    Each batch is resized (shorter side to ``preprocess.resize``, antialiased, on uint8 as in
    feature extraction), centre-cropped to ``preprocess.crop``, scaled to [0, 1] and
    normalised with the backbone's mean / std.

    Parameters
    ----------
    backbone : Backbone
    images : ndarray of shape (k, H, W, 3), uint8
    batch_size : int, default 64
    device : str or torch.device, default "cpu"

    Returns
    -------
    ndarray of shape (k, feature_dim), float32
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise UserError(f"images of shape {images.shape} and dtype {images.dtype} cannot be "
                        "embedded; pass a non-empty uint8 (k, H, W, 3) array.")
    device = resolve_device(device)
    prep = backbone.preprocess
    mean = torch.tensor(prep.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    model = backbone.model.to(device).eval()
    mode = InterpolationMode(prep.interpolation.lower())
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            batch = batch.to(device).permute(0, 3, 1, 2)
            if min(batch.shape[-2:]) != prep.resize:
                batch = TF.resize(batch, [prep.resize], interpolation=mode, antialias=True)
            batch = TF.center_crop(batch, [prep.crop, prep.crop])
            normalised = (batch.to(torch.float32) / 255.0 - mean) / std
            out.append(model(normalised).float().cpu().numpy())
    return np.concatenate(out)


@dataclass
class ModelInfo:
    """One backbone argument, built: its stage, condition and how to build its null twin."""

    given: str
    backbone: Backbone
    label: str
    stage: str
    condition: str
    base: str | None = None
    base_sha256: str | None = None
    finetune_seed: int | None = None
    aliases: set = field(default_factory=set)
    null_key: tuple = ()
    build_random: Callable[[], nn.Module] | None = None


def _layout(network: nn.Module) -> str:
    """Short fingerprint of a network's class and tensor names and shapes (not its values)."""
    layout = [type(network).__qualname__, *(f"{name}:{tuple(tensor.shape)}"
                                            for name, tensor in network.state_dict().items())]
    return hashlib.sha256("\n".join(layout).encode()).hexdigest()[:16]


def _architecture(given: str, backbone: Backbone, null_arch: str | None):
    """(key, builder) of the null's architecture.

    The key is the class and tensor layout, so a registered base and the checkpoints
    finetuned from it share one null (same networks for the same seed).
    """
    if null_arch is not None:
        if null_arch not in REGISTRY:
            raise UserError(f"null architecture {null_arch!r} is not a registered backbone; run "
                            "`biastransfer backbones` to list the names.")
        return (REGISTRY[null_arch].arch, f"registry {null_arch}"), REGISTRY[null_arch].build_model
    if backbone.arch is None:
        raise UserError(f"{given} records no architecture, so its random-init null cannot be built; pass "
                        "`null_arch` with a registered name of the same architecture.")
    arch, kwargs = backbone.arch, backbone.arch_kwargs
    # timm models are keyed by the model name, so a base and its finetuned checkpoints share one null
    key = f"timm:{kwargs['model']}" if arch == "timm" else arch
    return (key, _layout(backbone.model)), partial(ARCHITECTURES[arch], **kwargs)


def describe_model(name: str | Path, *, image_size: int | None = None,
                   null_arch: str | None = None) -> ModelInfo:
    """Build ``name`` and read its stage (see the module docstring).

    Parameters
    ----------
    name : str or Path
        A registered ``arch.tag`` name, a ``timm/<model>`` name (either optionally
        ``=PATH`` of its weights file, or ``=scratch``) or a toolkit checkpoint path.
    image_size : int, optional
        Override the backbone's resize and crop.
    null_arch : str, optional
        A registered name whose architecture the null twin uses instead of ``name``'s own.
    """
    given, weights = split_weights(str(name))
    backbone = create_backbone(given, weights=weights, image_size=image_size)
    meta = backbone.extra.get("checkpoint_meta", {})
    named = given.partition("@")[0] in REGISTRY or is_timm_name(given)
    label = given if named else str(meta.get("name") or Path(given).stem)
    key, build = _architecture(given, backbone, null_arch)
    aliases = {given, label, Path(given).stem, backbone.weights_sha256 or given}
    if not named:
        aliases.add(str(Path(given).expanduser().resolve()))
    after = "base" in meta
    seed = meta.get("seed") if after else None
    return ModelInfo(
        given=given, backbone=backbone, label=label, stage="after" if after else "before",
        condition=str(meta.get("condition", "finetuned")) if after else "base",
        base=str(meta["base"]) if after else None, base_sha256=meta.get("base_sha256"),
        finetune_seed=int(seed) if isinstance(seed, (int, np.integer)) else None,
        aliases=aliases, null_key=(*key, json.dumps(backbone.preprocess.to_dict(), sort_keys=True)),
        build_random=build)


def find_base(model: ModelInfo, candidates: Sequence[ModelInfo]) -> ModelInfo | None:
    """The before-stage model ``model`` was finetuned from, or None when none matches."""
    befores = [c for c in candidates if c.stage == "before"]
    if model.base_sha256:
        for candidate in befores:
            if candidate.backbone.weights_sha256 == model.base_sha256:
                return candidate
    for candidate in befores:
        if model.base in candidate.aliases:
            return candidate
    return None


def random_twin(model: ModelInfo, seed: int) -> Backbone:
    """``model``'s architecture at random initialisation from ``seed``, same preprocessing.

    The initialisation runs under a forked RNG seeded with ``seed``, exactly as
    :func:`extract.backbones.create_backbone` initialises a random-init entry, so the caller's
    random state is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = model.build_random()
    network.eval()
    return Backbone(name=f"{model.null_key[0]} random init", model=network,
                    preprocess=model.backbone.preprocess, feature_dim=int(network.feature_dim),
                    seed=int(seed))
