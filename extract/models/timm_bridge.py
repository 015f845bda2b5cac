"""Any `timm <https://github.com/huggingface/pytorch-image-models>`_ model as a backbone, from a local file.

A backbone name ``timm/<model_name>[.<tag>][@<pool>]`` (for example
``timm/vit_base_patch32_clip_quickgelu_224.openai@proj``) builds ``<model_name>.<tag>`` with
``timm.create_model(pretrained=False)`` and loads weights **only** from a local file; timm
never downloads anything here (the Hugging Face hub is switched to offline mode before
timm is imported, and every load passes the weights in memory or as a local path).

Weight files (``--weights PATH``):

* ``.safetensors`` -- timm's own layout (what ``huggingface.co/timm/<model>`` holds as
  ``model.safetensors``);
* ``.bin`` / ``.pth`` / ``.pt`` / ``.tar`` -- a plain tensor state dict, read with
  ``torch.load(weights_only=True)``, possibly wrapped in ``{"state_dict": ...}`` or
  ``{"model": ...}``. timm's checkpoint filter for the architecture converts the
  original releases it knows: an OpenAI CLIP state dict (``visual.*`` keys; the text
  tower is ignored), a DINOv2 ``*_pretrain.pth``, a facebookresearch ConvNeXt ``.pth``;
* ``.npz`` -- an original JAX/Flax release (BiT ``BiT-M-R50x1.npz``, the ViT AugReg
  ``*.npz`` files), read by the model's ``load_pretrained`` with ``allow_pickle=False``;
* ``scratch`` -- random initialisation from the seed (the null baseline).

Where no ``--weights`` option fits (several backbones in ``associate``, a finetune base
rebuilt per seed), the name carries it: ``timm/<model>=PATH`` or ``timm/<model>=scratch``
(:func:`extract.backbones.split_weights`).

Features (``@<pool>``, default ``default``):

* ``default`` -- timm's pooled pre-logits, ``forward_head(forward_features(x), pre_logits=True)``
  (the class token for ViTs built with token pooling, the pooled and normalised map for
  ConvNeXt, the global average for ResNets);
* ``token`` -- a ViT's class token after the final norm;
* ``avg`` -- the mean of a ViT's patch tokens (class and register tokens excluded) after
  the final norm;
* ``proj`` -- CLIP's projected image embedding (512-d for ViT-B/32), as Ranjit et al.
  (2023) use; CLIP models only (timm names containing ``clip``).

OpenAI's CLIP models were trained with QuickGELU; timm's ``*_clip_*`` models use GELU and
its ``*_clip_quickgelu_*`` variants QuickGELU. Loading a file into the GELU variant when timm's
config notes QuickGELU warns and names the variant (the features differ).

Preprocessing comes from timm's resolved data config of the model: centre crop of
``input_size``, shorter side resized to ``floor(input_size / crop_pct)`` with the config's
interpolation, then its mean and std (timm's own evaluation transform). Only square inputs
with ``crop_mode="center"`` are supported.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from extract.errors import UserError
from extract.models.weights import load_state_file

PREFIX = "timm/"
POOLS = ("default", "token", "avg", "proj")
SCRATCH = "scratch"
_VIT_POOLS = ("token", "avg")  # poolings that read a ViT's token sequence


def _import_timm():
    """Import timm with the Hugging Face hub in offline mode (nothing is ever fetched)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    try:
        import timm
    except ImportError:
        raise UserError("timm backbones need the package timm; install it with pip install timm.") from None
    try:  # an already-imported hub client read the variable at import time
        import huggingface_hub.constants as hub_constants
        hub_constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        pass
    return timm


@dataclass(frozen=True)
class TimmSpec:
    """What builds one timm backbone: the model, its feature pooling and build options.

    Attributes
    ----------
    model : str
        timm name with its pretrained tag (``vit_base_patch32_clip_224.openai``); the tag
        selects timm's config (classes, mean/std, input size).
    pool : str
        One of :data:`POOLS`.
    model_kwargs : dict
        Extra ``timm.create_model`` arguments (e.g. ``img_size`` for a ViT).
    crop_pct : float, optional
        Override of the config's crop fraction (e.g. 1.0 for OpenAI CLIP's own
        resize-224 / crop-224 evaluation).
    """

    model: str
    pool: str = "default"
    model_kwargs: dict = field(default_factory=dict)
    crop_pct: float | None = None

    def to_dict(self) -> dict:
        return {"model": self.model, "pool": self.pool, "model_kwargs": dict(self.model_kwargs), "crop_pct": self.crop_pct}

    @classmethod
    def from_dict(cls, d: dict) -> "TimmSpec":
        crop = d.get("crop_pct")
        return cls(model=str(d["model"]), pool=str(d.get("pool", "default")), model_kwargs=dict(d.get("model_kwargs") or {}),
                   crop_pct=None if crop is None else float(crop))


def is_timm_name(name) -> bool:
    """True for names of the form ``timm/<model_name>...``."""
    return str(name).startswith(PREFIX)


def parse_name(name: str) -> TimmSpec:
    """``timm/<model>[.<tag>][@<pool>]`` -> :class:`TimmSpec` (the model is checked against timm's registry)."""
    body = str(name)[len(PREFIX):] if is_timm_name(name) else str(name)
    model, _, pool = body.partition("@")
    pool = pool or "default"
    if pool not in POOLS:
        raise UserError(f"unknown feature pooling {pool!r} in {name!r}; choose one of {', '.join(POOLS)} after '@'.")
    check_model_name(model)
    return TimmSpec(model=model, pool=pool)


def check_model_name(model: str) -> None:
    """Raise a :class:`UserError` unless ``model`` is a timm registry name (with a known tag when given).

    Hub (``hf-hub:``) and folder (``local-dir:``) sources are refused: they would fetch or
    read a config outside the registry.
    """
    if not model or any(c in model for c in ":/\\"):
        raise UserError(f"timm model name {model!r} must be a timm registry name such as resnet50.a1_in1k "
                        "(hub and folder sources are not used; weights come from a local file, `weights=PATH`).")
    timm = _import_timm()
    arch, _, tag = model.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"timm has no model {arch!r}; {hint}see timm.list_models() for the names.")
    if tag and model not in timm.list_pretrained(arch + ".*"):
        tags = [m.partition(".")[2] for m in timm.list_pretrained(arch + ".*")]
        raise UserError(f"timm model {arch} has no pretrained tag {tag!r}; its tags are {', '.join(tags) or 'none'}.")


def _pretrained_cfg(timm, model: str) -> dict:
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None:  # architecture without any registered pretrained config
        return {}
    return cfg.to_dict()


def data_config(spec: TimmSpec) -> dict:
    """timm's resolved data config for ``spec`` (input size, interpolation, mean, std, crop)."""
    timm = _import_timm()
    cfg = dict(_pretrained_cfg(timm, spec.model))
    if "img_size" in spec.model_kwargs:
        side = spec.model_kwargs["img_size"]
        side = side if isinstance(side, (tuple, list)) else (side, side)
        cfg["input_size"] = (3, *side)
    resolved = timm.data.resolve_data_config({}, pretrained_cfg=cfg)
    if spec.crop_pct is not None:
        resolved["crop_pct"] = float(spec.crop_pct)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}


def preprocess_fields(config: dict) -> dict:
    """timm data config -> :class:`extract.backbones.Preprocess` fields (resize, crop, mean, std, interpolation).

    timm's evaluation transform resizes the shorter side to ``floor(side / crop_pct)`` and
    centre-crops ``side``; non-square inputs and other crop modes are refused.
    """
    _, height, width = config["input_size"]
    if height != width:
        raise UserError(f"timm config input size {height}x{width} is not square; only square inputs are supported.")
    mode = config.get("crop_mode", "center") or "center"
    if mode != "center":
        raise UserError(f"timm config crop mode {mode!r} is not supported; only 'center' crops are.")
    interpolation = str(config.get("interpolation", "bilinear"))
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bilinear"
    crop_pct = float(config.get("crop_pct") or 0.875)
    return {"resize": int(math.floor(height / crop_pct)), "crop": int(height),
            "mean": tuple(float(x) for x in config["mean"]), "std": tuple(float(x) for x in config["std"]),
            "interpolation": interpolation}


class TimmFeatures(nn.Module):
    """A timm model whose ``forward`` returns pooled features of shape (N, ``feature_dim``).

    Parameters
    ----------
    net : nn.Module
        The timm model, head included (``proj`` pooling and :meth:`forward_logits` use it).
    pool : str
        One of :data:`POOLS` (see the module docstring).
    spec : TimmSpec, optional
        What rebuilds ``net`` (recorded by toolkit checkpoints as ``arch="timm"``).

    Attributes
    ----------
    feature_dim : int
    timm_spec : TimmSpec or None
    stem, stages : modules
        What finetuning freezes stage by stage: the net's ``stem`` and ``stages``
        (ResNetV2, ConvNeXt), or ``conv_stem`` + ``bn1`` and ``blocks`` (EfficientNet);
        absent for ViTs.
    """

    def __init__(self, net: nn.Module, pool: str = "default", *, spec: TimmSpec | None = None):
        super().__init__()
        self.timm_spec = spec
        if pool not in POOLS:
            raise UserError(f"unknown feature pooling {pool!r}; choose one of {', '.join(POOLS)}.")
        is_vit = hasattr(net, "num_prefix_tokens") and hasattr(net, "blocks")
        if pool in _VIT_POOLS and not is_vit:
            raise UserError(f"pooling {pool!r} needs a ViT with a token sequence; {type(net).__name__} is not one, "
                            "use the default pooling.")
        if pool == "token" and getattr(net, "cls_token", None) is None:
            raise UserError(f"{type(net).__name__} has no class token; use @avg or the default pooling.")
        arch = str(getattr(net, "pretrained_cfg", {}).get("architecture") or "")
        if pool == "proj" and not ("clip" in arch and isinstance(getattr(net, "head", None), nn.Linear)):
            raise UserError(f"pooling 'proj' is CLIP's projected image embedding and {arch or type(net).__name__} is "
                            "not a CLIP model with a projection; use the default pooling.")
        self.net = net
        self.pool = pool
        if pool == "proj":
            self.feature_dim = int(net.num_classes)
        elif pool in _VIT_POOLS:
            self.feature_dim = int(net.embed_dim)
        else:
            self.feature_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)

    def __getattr__(self, name: str):
        if name in ("stem", "stages"):
            net = self._modules["net"]
            if isinstance(getattr(net, "stem", None), nn.Module) and isinstance(getattr(net, "stages", None), nn.Module):
                return getattr(net, name)
            if all(isinstance(getattr(net, n, None), nn.Module) for n in ("conv_stem", "bn1", "blocks")):
                # A view over the net's own modules (nothing is registered twice).
                return nn.Sequential(net.conv_stem, net.bn1) if name == "stem" else net.blocks
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, (N, feature_dim)."""
        tokens = self.net.forward_features(x)
        if self.pool == "default":
            return self.net.forward_head(tokens, pre_logits=True)
        if self.pool == "proj":
            return self.net.forward_head(tokens)
        if self.pool == "token":
            return tokens[:, 0]
        return tokens[:, self.net.num_prefix_tokens:].mean(dim=1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The timm model's own output (classifier logits, or CLIP's projection)."""
        return self.net(x)


def _create(timm, spec: TimmSpec, *, state_dict: dict | None = None) -> nn.Module:
    """``timm.create_model`` with random init, or with ``state_dict`` run through the model's checkpoint filter."""
    kwargs = dict(spec.model_kwargs)
    if state_dict is None:
        return timm.create_model(spec.model, pretrained=False, **kwargs)
    # An in-memory state dict is timm's highest-priority weight source; clearing the others
    # leaves no path to a URL or the hub.
    overlay = {"state_dict": state_dict, "file": None, "url": None, "hf_hub_id": None, "custom_load": False}
    return timm.create_model(spec.model, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def _mismatch(exc: Exception, path: Path, spec: TimmSpec) -> UserError:
    """One sentence for a file that does not fit the architecture."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if not ln.startswith("Error(s) in loading")), lines[0] if lines else type(exc).__name__)
    detail = detail.split(". ")[0]  # the library's first sentence keeps ours one sentence
    listed = re.match(r"^((?:Missing|Unexpected) key\(s\) in state_dict): (.*)$", detail)
    if listed:
        keys = re.findall(r'"([^"]+)"', listed.group(2))
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        detail = f"{listed.group(1)}: {', '.join(keys[:3])}{more}"
    if len(detail) > 240:
        detail = detail[:240] + "..."
    detail = detail.rstrip(".")
    return UserError(f"weights file {path} does not fit timm model {spec.model} ({type(exc).__name__}: {detail}); "
                     "check that the backbone name is that of the model the file was saved from.")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_state_dict(path: Path) -> dict:
    """Tensors of a safetensors or torch state-dict file (``weights_only=True``), unwrapped and cleaned.

    ``{"state_dict": ...}``/``{"model": ...}`` wrappers and ``module.`` prefixes are removed.
    """
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"weights file {path} is not a readable safetensors file ({exc.__class__.__name__}); "
                            "it is truncated or not safetensors.") from None
    else:
        if _is_torchscript(path):
            raise UserError(
                f"weights file {path} is a TorchScript archive (like OpenAI's released ViT-B-32.pt), which is not read "
                "here; save its state dict once with torch.save(torch.jit.load(PATH, map_location='cpu').state_dict(), "
                "'ViT-B-32.state_dict.pt') and pass that file.")
        state = load_state_file(path)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    cleaned = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # training metadata (epoch, args as text) next to the weights
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        cleaned[key] = value
    if not cleaned:
        raise UserError(f"weights file {path} holds no tensors; pass a state dict of the model's weights.")
    return cleaned


@dataclass
class Built:
    """A built timm backbone: the feature module, its preprocessing fields and provenance."""

    model: TimmFeatures
    preprocess: dict
    config: dict
    weights_path: Path | None
    weights_format: str


def build(spec: TimmSpec, *, weights: str | Path | None, seed: int = 0) -> Built:
    """Build ``spec`` with weights from ``weights`` (a local file path or ``"scratch"``).

    Parameters
    ----------
    spec : TimmSpec
    weights : path or "scratch"
        Local weight file (see the module docstring for the formats) or ``"scratch"`` for
        random initialisation from ``seed``. None is an error: timm models never fetch
        weights.
    seed : int
        Seed of the initialisation (the weights of a file replace it).
    """
    timm = _import_timm()
    check_model_name(spec.model)
    if weights is None:
        raise UserError(f"timm/{spec.model} needs `weights=PATH`, a local weight file (or `weights='scratch'` for "
                        "random initialisation); nothing is downloaded.")
    path = None if str(weights) == SCRATCH else Path(weights).expanduser()
    if path is not None and not path.is_file():
        raise UserError(f"weights file {path} does not exist; pass `weights` with the path of a local file "
                        "(nothing is downloaded).")
    config = data_config(spec)
    fields = preprocess_fields(config)
    if path is not None:
        _warn_gelu_variant(timm, spec)
    fmt = SCRATCH
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        try:
            if path is None:
                net = _create(timm, spec)
            elif path.suffix == ".npz":
                fmt = "npz"
                net = _create(timm, spec)
                if not hasattr(net, "load_pretrained"):
                    raise UserError(f"timm model {spec.model} cannot read .npz files; pass a safetensors or .pth state dict.")
                net.load_pretrained(str(path))
            else:
                state = read_state_dict(path)
                fmt = _detect_format(state, path)
                net = _create(timm, spec, state_dict=state)
        except UserError:
            raise
        except (RuntimeError, KeyError, ValueError, AssertionError, TypeError, IndexError) as exc:
            if path is None:
                raise UserError(f"timm cannot build {spec.model} with {spec.model_kwargs} ({exc}).") from None
            raise _mismatch(exc, path, spec) from None
    model = TimmFeatures(net, spec.pool, spec=spec).eval()
    provenance = {"timm": {**spec.to_dict(), "timm_version": timm.__version__, "data_config": config,
                           "weights_format": fmt, "feature_dim": model.feature_dim}}
    return Built(model=model, preprocess=fields, config=provenance, weights_path=path, weights_format=fmt)


def with_image_size(spec: TimmSpec, side: int) -> TimmSpec:
    """``spec`` built for ``side`` px inputs: models with a fixed input size (ViTs) get ``img_size``.

    Convolutional models take any size and are left as they are; a ViT's position
    embedding is resampled from the file's grid by timm's checkpoint filter.
    """
    timm = _import_timm()
    if not _pretrained_cfg(timm, spec.model).get("fixed_input_size", False):
        return spec
    return TimmSpec(model=spec.model, pool=spec.pool, model_kwargs={**spec.model_kwargs, "img_size": int(side)},
                    crop_pct=spec.crop_pct)


def _warn_gelu_variant(timm, spec: TimmSpec) -> None:
    """Warn when timm's config says the weights were trained with QuickGELU but the model uses GELU."""
    notes = " ".join(_pretrained_cfg(timm, spec.model).get("notes") or ())
    arch, _, tag = spec.model.partition(".")
    if "QuickGELU" not in notes or "quickgelu" in arch:
        return
    variant = arch.replace("_clip_", "_clip_quickgelu_", 1) + (f".{tag}" if tag else "")
    hint = f"; use timm/{variant}" if variant in timm.list_pretrained(variant) else ""
    warnings.warn(f"timm model {spec.model} uses GELU but its weights were trained with QuickGELU, so its features "
                  f"differ from the original model's{hint}.", UserWarning, stacklevel=3)


def build_random(spec: TimmSpec) -> TimmFeatures:
    """The architecture of ``spec`` at random initialisation under the caller's RNG (for null twins)."""
    timm = _import_timm()
    return TimmFeatures(_create(timm, spec), spec.pool, spec=spec)


def _detect_format(state: dict, path: Path) -> str:
    if "visual.class_embedding" in state or "module.visual.class_embedding" in state:
        return "openai_clip"
    if "mask_token" in state:
        return "dinov2"
    return "safetensors" if path.suffix == ".safetensors" else "state_dict"


__all__ = ["PREFIX", "POOLS", "SCRATCH", "TimmSpec", "TimmFeatures", "Built", "is_timm_name", "parse_name",
           "check_model_name", "data_config", "with_image_size", "preprocess_fields", "read_state_dict", "build", "build_random"]
