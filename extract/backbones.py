"""Backbone registry: ``arch.tag`` names -> models that return pooled penultimate features.

Each entry (a :class:`BackboneSpec`) knows its architecture, its preprocessing (resize,
crop, mean/std) and how to remap its checkpoint's keys. :func:`create_backbone` builds a
:class:`Backbone` from a name. Weights only come from local files (``weights=PATH``, or
the torch hub cache directory when the entry names a default file); a missing file is a
:class:`~extract.errors.UserError`, never a download. Files are read with
``torch.load(..., weights_only=True)``.

A path to a checkpoint written by this toolkit (:func:`save_checkpoint`) is also a valid
name: the file records its architecture and preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from extract.errors import UserError
from extract.models.smallcnn import SmallCNN

CHECKPOINT_FORMAT = "biastransfer-checkpoint-v1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocess:
    """How images are prepared: resize the shorter side, centre-crop, normalise.

    Resize and crop run on uint8 images (CPU, in the loader); scaling to [0, 1] and the
    mean/std normalisation run on the device.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(
            resize=int(d["resize"]),
            crop=int(d["crop"]),
            mean=tuple(float(x) for x in d["mean"]),
            std=tuple(float(x) for x in d["std"]),
            interpolation=str(d.get("interpolation", "bilinear")),
        )


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry.

    ``build`` returns the architecture whose ``forward`` gives pooled penultimate features
    (classifier heads removed). ``weights`` is ``"none"`` (random init from the seed),
    ``"file"`` (a local weight file is required) or ``"package"`` (weights ship in an
    installed Python package; ``locate`` finds the file). ``remap`` turns the source's
    state dict into the architecture's keys.
    """

    arch: str
    tag: str
    build: Callable[[], nn.Module]
    preprocess: Preprocess
    weights: str = "none"
    default_filename: str | None = None
    remap: Callable[[dict], dict] | None = None
    locate: Callable[[], Path] | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"


@dataclass
class Backbone:
    """A built backbone: the model (eval mode), its preprocessing and provenance."""

    name: str
    model: nn.Module
    preprocess: Preprocess
    feature_dim: int
    weights_path: str | None = None
    weights_sha256: str | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def config(self) -> dict:
        """JSON-serialisable provenance recorded in stores and results."""
        return {
            "name": self.name,
            "feature_dim": self.feature_dim,
            "preprocess": self.preprocess.to_dict(),
            "weights_path": self.weights_path,
            "weights_sha256": self.weights_sha256,
            "seed": self.seed,
            **self.extra,
        }


REGISTRY: dict[str, BackboneSpec] = {}

# Architectures a toolkit checkpoint may name: arch -> builder(**arch_kwargs).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"smallcnn": SmallCNN}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry under ``arch.tag``."""
    REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    """Registered names, sorted."""
    return sorted(REGISTRY)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def torch_hub_checkpoint_dir() -> Path:
    """torchvision's cache folder for weight files (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_state_file(path: str | Path) -> dict:
    """Read a weight file with ``weights_only=True``; errors become one sentence."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; pass --weights with the path of a local file (nothing is downloaded).")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise UserError(
            f"weights file {path} cannot be loaded safely ({exc.__class__.__name__}); "
            "only plain tensor checkpoints are accepted (torch.load weights_only=True)."
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"weights file {path} holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead.")
    return obj


def load_weights(model: nn.Module, state: dict, *, source: str) -> None:
    """Load ``state`` strictly; unexpected or missing keys are one clear sentence."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"checkpoint {source} does not match the architecture "
            f"(missing keys: {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected keys: {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}); "
            "check that --backbone names the architecture the file was saved from."
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise UserError(
            f"checkpoint {source} has tensor {bad[0]!r} of shape {tuple(state[bad[0]].shape)} "
            f"where the architecture expects {tuple(own[bad[0]].shape)}; check --backbone."
        )
    model.load_state_dict(state, strict=True)


def _resolve_weights_path(spec: BackboneSpec, weights: str | Path | None) -> Path:
    if weights is not None:
        return Path(weights).expanduser()
    if spec.locate is not None:
        return spec.locate()
    if spec.default_filename:
        cached = torch_hub_checkpoint_dir() / spec.default_filename
        if cached.is_file():
            return cached
        raise UserError(
            f"backbone {spec.name} needs its weights file {spec.default_filename}, which is not in {cached.parent}; "
            "pass --weights PATH to a local copy (nothing is downloaded)."
        )
    raise UserError(f"backbone {spec.name} needs a weights file; pass --weights PATH to a local copy (nothing is downloaded).")


def create_backbone(name: str | Path, *, weights: str | Path | None = None, seed: int = 0, image_size: int | None = None) -> Backbone:
    """Build the backbone ``name`` (``arch.tag`` or a toolkit checkpoint path).

    Parameters
    ----------
    name : str or Path
        A registered ``arch.tag`` name (see :func:`list_backbones`) or the path of a
        checkpoint written by :func:`save_checkpoint`.
    weights : path, optional
        Local weight file for entries that load weights (overrides the cache lookup).
        Random-init entries accept a toolkit checkpoint or a plain state dict here too.
    seed : int
        Seed of the random initialisation (recorded; irrelevant once weights load).
    image_size : int, optional
        Override the entry's resize and crop (e.g. 64 for small images on CPU).
    """
    if str(name) not in REGISTRY and (Path(str(name)).suffix in {".pt", ".pth"} or Path(str(name)).is_file()):
        backbone = load_checkpoint(name)
    else:
        backbone = _create_registered(str(name), weights=weights, seed=seed)
    if image_size is not None:
        if image_size < 8:
            raise UserError(f"image size {image_size} is too small; use at least 8 pixels.")
        backbone.preprocess = replace(backbone.preprocess, resize=image_size, crop=image_size)
    backbone.model.eval()
    return backbone


def _create_registered(name: str, *, weights, seed: int) -> Backbone:
    if name not in REGISTRY:
        raise UserError(f"unknown backbone {name!r}; run `biastransfer backbones` to list names such as {list_backbones()[:4]}.")
    spec = REGISTRY[name]
    torch.manual_seed(seed)
    model = spec.build()
    path = sha = None
    if spec.weights != "none" or weights is not None:
        path = _resolve_weights_path(spec, weights)
        state = load_state_file(path)
        if state.get("format") == CHECKPOINT_FORMAT:
            state = state["state_dict"]
        elif spec.remap is not None:
            state = spec.remap(state)
        load_weights(model, state, source=str(path))
        sha = sha256_file(path)
    return Backbone(
        name=name,
        model=model,
        preprocess=spec.preprocess,
        feature_dim=int(model.feature_dim),
        weights_path=str(path) if path else None,
        weights_sha256=sha,
        seed=seed,
    )


def save_checkpoint(path: str | Path, model: nn.Module, *, arch: str, arch_kwargs: dict, preprocess: Preprocess, meta: dict | None = None) -> Path:
    """Write a toolkit checkpoint (tensors + JSON text only, loadable with ``weights_only=True``).

    The file is written to a temporary name and renamed, so a killed write never leaves a
    file that loads as valid.
    """
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r} for a checkpoint; choose one of {sorted(ARCHITECTURES)}.")
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_kwargs_json": json.dumps(arch_kwargs, sort_keys=True),
        "preprocess_json": json.dumps(preprocess.to_dict(), sort_keys=True),
        "meta_json": json.dumps(meta or {}, sort_keys=True),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> Backbone:
    """Build a backbone from a toolkit checkpoint written by :func:`save_checkpoint`."""
    payload = load_state_file(path)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} is not a biastransfer checkpoint; pass a registered --backbone name and this file as --weights."
        )
    arch = payload["arch"]
    if arch not in ARCHITECTURES:
        raise UserError(f"checkpoint {path} names an unknown architecture {arch!r}; it was written by another version of biastransfer.")
    model = ARCHITECTURES[arch](**json.loads(payload["arch_kwargs_json"]))
    load_weights(model, payload["state_dict"], source=str(path))
    meta = json.loads(payload["meta_json"])
    return Backbone(
        name=meta.get("name", Path(path).stem),
        model=model,
        preprocess=Preprocess.from_dict(json.loads(payload["preprocess_json"])),
        feature_dim=int(model.feature_dim),
        weights_path=str(path),
        weights_sha256=sha256_file(path),
        seed=meta.get("seed"),
        extra={"checkpoint_meta": meta},
    )


# -- entries ------------------------------------------------------------------------------
_SMALL = Preprocess(resize=64, crop=64, mean=HALF_MEAN_STD, std=HALF_MEAN_STD)
register(BackboneSpec("smallcnn", "scratch", lambda: SmallCNN(width=16), _SMALL,
                      description="Small residual CNN (128-d features), random init from the seed; for 32-128 px images on CPU."))
register(BackboneSpec("smallcnn_w32", "scratch", lambda: SmallCNN(width=32), _SMALL,
                      description="Wider small residual CNN (256-d features), random init from the seed."))
