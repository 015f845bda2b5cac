"""Pretraining bases from scratch: a backbone plus one linear head per attribute.

The W&R paper's central comparison (docs/science.md section 2) needs bases that share data,
architecture and recipe and differ only in the pretraining label: a *biased* base taught
the sensitive attribute ("Gendered" in the paper), *control* bases taught attributes
unrelated to it, and a *scratch* base (random init, no training). This module trains one
such base; :mod:`extract.pretrain.recipe` builds a whole set from a recipe file.

Recipe of one run (:func:`pretrain_base`):

- the architecture's backbone (``extract.backbones.ARCHITECTURES``) and a linear head per
  attribute (``Linear(feature_dim, 1)``), both initialised from ``seed`` in a forked RNG;
  the backbone is built first, so every base of a seed starts from the same weights as the
  scratch base of that seed (``create_backbone("smallcnn.scratch", seed=s)`` for width 16);
- multi-label binary cross-entropy on logits (``BCEWithLogitsLoss``, the stable form of
  the paper's sigmoid + ``BCELoss``), mean over images and attributes;
- optionally a shared *generalist* task (``factors``): many-class heads for the avatar
  renderer's nuisance factors (part within class, colours, background, position; see
  :mod:`extract.datasets.avatars.factors`), independent of every attribute by construction,
  whose mean cross-entropy (each divided by ``log(bins)``) is added with ``factor_weight``.
  It gives every base general features while the bases still differ only in their one
  attribute;
- optionally a pretrained starting point (``init``, a registry backbone whose weights are
  local files, e.g. ``efficientnet_lite0.imagenet``): every base of a recipe then starts
  from the same general features and learns only its label on top of them; its
  normalisation becomes the base's, and ``freeze_bn`` keeps the starting point's BatchNorm
  statistics (the layers run in eval mode while their affine weights train), which at a
  small learning rate keeps the general features instead of re-estimating them on a few
  thousand small images;
- SGD with momentum 0.9 and weight decay on all parameters, as in the paper's
  ``classifier.py``; the learning rate follows a per-step cosine decay to 0 (``schedule=
  "cosine"``, default: a few epochs from scratch converge better than with the paper's
  constant rate) or stays constant (``"constant"``, the paper's setting);
- horizontal flip as the only augmentation;
- images decoded once and held in memory as a uint8 tensor (N, 3, S, S) (resized once if
  ``image_size`` differs from the data), scaled and normalised per batch with the
  preprocess mean/std (``(x / 255 - mean) / std``);
- a seeded validation carve of the rows (``val_fraction``); the last full batch of each
  epoch is dropped when it would be short (batch norm needs more than one image).

Determinism: on CPU, the same seed, data, configuration and thread count give identical
weights (``torch.use_deterministic_algorithms`` is on during training; shuffling and flips
come from a seeded ``torch.Generator``; dropout and stochastic depth inside the backbone,
which can only draw from torch's global RNG, draw from it seeded from ``seed`` in a forked
RNG state (:func:`extract.seeding.seeded_torch_rng`), so the caller's global RNG is left
untouched and the weights do not depend on what ran before in the process). On
CUDA the run uses bf16 autocast and channels_last and is not bit-reproducible.

Memory layout: channels_last on CUDA and on the CPU, except that on the CPU a backbone with a
1x1 strided convolution of fewer than 8 input channels per group (the small CNN below width
8) trains in the contiguous layout: oneDNN's AVX2 kernel for that convolution's input
gradient writes out of bounds (:func:`extract.devices.training_memory_format`).

Keeping pretraining images apart: train bases on a cache rendered for pretraining only
(the recipe renders ``work/avatars/pretrain-*.h5`` with its own seed, never the seed of
the finetuning caches); the checkpoint records that cache's manifest hash and a sha256 of
the row positions used, and :func:`extract.pretrain.recipe.shared_images` proves two caches
have no image in common.
"""

from __future__ import annotations

import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from extract.backbones import (
    ARCHITECTURES,
    HALF_MEAN_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    REGISTRY,
    Preprocess,
    save_checkpoint,
)
from extract.datasets.base import Adapter
from extract.devices import resolve_device, training_memory_format
from extract.errors import UserError
from extract.pretrain.config import (  # noqa: F401 (DEFAULT_ARCH_KWARGS, SCHEDULES re-exported)
    DEFAULT_ARCH_KWARGS,
    SCHEDULES,
    PretrainConfig,
    PretrainModel,
    check_number,
    resolve_arch,
)
from extract.seeding import derived_seed, seeded_torch_rng
from extract.pretrain.data import (
    describe_data,
    load_images,
    select_rows,
    split_train_val,
)
from extract.store.reader import check_output_writable

MOMENTUM = 0.9
STREAM_ORDER = 2  # seed stream of shuffling and flips (pretrain_data.STREAM_VAL_SPLIT = 1 carves val)
STREAM_GLOBAL = 3  # seed stream of the global-RNG draws of dropout and stochastic depth in the backbone


# -- configuration -----------------------------------------------------------------------------
def base_preprocess(arch: str, image_size: int, *, init=None) -> Preprocess:
    """Preprocessing of a base: square ``image_size`` input, the architecture's mean/std.

    The mean/std are those of the architecture's ``scratch`` registry entry (0.5/0.5 for
    smallcnn, ImageNet's for the ResNets), so a pretrained base and the random-init entry
    of the same architecture see identically normalised pixels. With a starting point
    ``init`` (a :class:`extract.backbones.Backbone`), its mean/std instead (the bases of a
    recipe with ``init`` all share them, the scratch base included); interpolation is
    bilinear as for every base.
    """
    if init is not None:
        return Preprocess(resize=image_size, crop=image_size, mean=tuple(init.preprocess.mean),
                          std=tuple(init.preprocess.std))
    entry = REGISTRY.get(f"{arch}.scratch")
    if entry is not None:
        return replace(entry.preprocess, resize=image_size, crop=image_size)
    mean, std = (HALF_MEAN_STD, HALF_MEAN_STD) if arch == "smallcnn" else (IMAGENET_MEAN, IMAGENET_STD)
    return Preprocess(resize=image_size, crop=image_size, mean=mean, std=std)


def init_backbone(init: str, *, arch: str, arch_kwargs: dict, image_size: int):
    """The starting point ``init`` (a registry name with local weights), checked against ``arch``.

    Returns the built :class:`extract.backbones.Backbone`; its preprocessing is resized to
    ``image_size``.
    """
    from extract.backbones import create_backbone

    if not isinstance(init, str) or not init.strip():
        raise UserError(f"init = {init!r} must name a registry backbone with local weights, "
                        "e.g. init = \"efficientnet_lite0.imagenet\".")
    start = create_backbone(init, image_size=image_size)
    if start.arch != arch or dict(start.arch_kwargs) != dict(arch_kwargs):
        raise UserError(f"init {init!r} is a {start.arch} with options {start.arch_kwargs}, but the recipe's model is "
                        f"{arch} with {arch_kwargs}; set [model] arch = \"{start.arch}\" (and its arch_kwargs) "
                        "or drop init.")
    return start


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics stay fixed)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def build_model(arch: str, arch_kwargs: dict, *, seed: int, n_heads: int = 0) -> tuple[nn.Module, nn.Module | None]:
    """Backbone (and a ``Linear(feature_dim, n_heads)`` head) initialised from ``seed``.

    The backbone is built first after ``torch.manual_seed(seed)`` inside a forked RNG, as
    in :func:`extract.backbones.create_backbone`, so it does not depend on ``n_heads``.
    """
    arch, arch_kwargs = resolve_arch(arch, arch_kwargs)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = ARCHITECTURES[arch](**arch_kwargs)
            head = nn.Linear(int(backbone.feature_dim), n_heads) if n_heads else None
    except TypeError as exc:
        raise UserError(f"the architecture {arch!r} does not accept the options {arch_kwargs} ({exc}); fix arch_kwargs.") from None
    return backbone, head


def _config_record(config: PretrainConfig) -> dict:
    """The training settings a base's history records (its ``config``, completed by :func:`pretrain_base`)."""
    return {
        "epochs": int(config.epochs), "batch_size": int(config.batch_size), "lr": float(config.lr),
        "weight_decay": float(config.weight_decay), "seed": int(config.seed),
        "val_fraction": float(config.val_fraction), "schedule": config.schedule,
        "optimizer": "sgd", "momentum": MOMENTUM, "loss": "bce_with_logits", "augmentation": "hflip",
    }


# -- training ---------------------------------------------------------------------------------
@contextmanager
def _deterministic(enabled: bool):
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class _Normaliser:
    """uint8 (k, 3, H, W) -> float32 ``(x / 255 - mean) / std`` on the batch's device."""

    def __init__(self, preprocess: Preprocess, device: torch.device,
                 memory_format: torch.memory_format = torch.channels_last):
        self.mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1)
        self.memory_format = memory_format

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = (batch.to(torch.float32).div_(255.0) - self.mean).div_(self.std)
        return x.contiguous(memory_format=self.memory_format)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size if n > batch_size else 1


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled index batches; a short last batch is dropped when n exceeds one batch."""
    order = torch.randperm(n, generator=generator)
    stop = _steps_per_epoch(n, batch_size) * batch_size if n > batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


@dataclass
class _Run:
    """What one training run carries from epoch to epoch."""

    backbone: nn.Module
    head: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    normalise: "_Normaliser"
    generator: torch.Generator
    batch_size: int
    device: torch.device
    factor_bins: tuple[int, ...] = ()
    factor_weight: float = 1.0
    freeze_bn: bool = False

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor, factors: torch.Tensor) -> float:
        """One pass over shuffled, randomly flipped batches; the mean training loss."""
        self.backbone.train()
        if self.freeze_bn:
            freeze_batchnorm(self.backbone)
        self.head.train()
        total, count = 0.0, 0
        for idx in _batches(len(images), self.batch_size, self.generator):
            flip = (torch.rand(len(idx), generator=self.generator) < 0.5).view(-1, 1, 1, 1).to(self.device)
            idx = idx.to(self.device)
            x = images[idx]
            x = self.normalise(torch.where(flip, x.flip(-1), x))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = self.head(self.backbone(x)).float()
            loss = training_loss(logits, labels[idx], factors[idx], bins=self.factor_bins, weight=self.factor_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        return total / max(count, 1)


def training_loss(logits: torch.Tensor, labels: torch.Tensor, factors: torch.Tensor, *, bins: tuple[int, ...],
                  weight: float) -> torch.Tensor:
    """Mean binary cross-entropy over the attribute logits, plus ``weight`` times the mean
    over generalist factors of their cross-entropy divided by ``log(bins)`` (1 at chance,
    so every factor counts alike whatever its number of classes).

    ``logits`` holds the attribute logits first (``labels.shape[1]`` of them), then each
    factor's ``bins[j]`` class logits in turn; ``factors`` holds the class of each factor.
    """
    n_attributes = labels.shape[1]
    loss = nn.functional.binary_cross_entropy_with_logits(logits[:, :n_attributes], labels)
    if bins:
        offset, terms = n_attributes, []
        for j, k in enumerate(bins):
            terms.append(nn.functional.cross_entropy(logits[:, offset:offset + k], factors[:, j]) / math.log(k))
            offset += k
        loss = loss + weight * torch.stack(terms).mean()
    return loss


@torch.no_grad()
def evaluate(network, images, labels, normalise, *, attributes, factors=None, factor_labels=None,
             batch_size=256) -> dict:
    """Eval-mode loss and accuracy (logit > 0) per attribute, and accuracy per generalist factor.

    Parameters
    ----------
    network : nn.Module
        Backbone and head in sequence (``nn.Sequential(backbone, head)``): images -> logits.
    factors : dict, optional
        ``{factor: bins}`` of the generalist head (its logits follow the attributes').
    factor_labels : tensor of shape (n, len(factors)), optional
        The factor classes of ``images``.

    Returns
    -------
    dict
        ``{"loss": mean over attributes, "per_attribute": {name: {"loss", "accuracy"}}}``
        and, with factors, ``"per_factor": {name: {"accuracy", "chance"}}`` (chance: the
        share of the most frequent class).
    """
    network.eval()
    device = labels.device
    factors = dict(factors or {})
    losses = torch.zeros(len(attributes), dtype=torch.float64, device=device)
    correct = torch.zeros(len(attributes), dtype=torch.float64, device=device)
    factor_correct = torch.zeros(len(factors), dtype=torch.float64, device=device)
    for start in range(0, len(images), batch_size):
        x = normalise(images[start:start + batch_size])
        y = labels[start:start + batch_size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = network(x).float()
        attribute_logits = logits[:, :len(attributes)]
        losses += nn.functional.binary_cross_entropy_with_logits(attribute_logits, y, reduction="none").sum(0).double()
        correct += ((attribute_logits > 0).float() == y).sum(0).double()
        offset = len(attributes)
        for j, k in enumerate(factors.values()):
            predicted = logits[:, offset:offset + k].argmax(1)
            factor_correct[j] += (predicted == factor_labels[start:start + batch_size, j]).sum().double()
            offset += k
    n = max(len(images), 1)
    per = {a: {"loss": float(losses[j] / n), "accuracy": float(correct[j] / n)} for j, a in enumerate(attributes)}
    out = {"loss": float(losses.sum() / n / len(attributes)), "per_attribute": per}
    if factors:
        out["per_factor"] = {
            name: {"accuracy": float(factor_correct[j] / n),
                   "chance": float(torch.bincount(factor_labels[:, j], minlength=k).max() / n) if len(images) else 0.0}
            for j, (name, k) in enumerate(factors.items())}
    return out


def pretrain_base(adapter: Adapter, *, attributes: list[str], model: PretrainModel = PretrainModel(),
                  config: PretrainConfig = PretrainConfig(), rows=None, device: str = "auto",
                  progress: bool = True) -> tuple[nn.Module, dict]:
    """Train ``arch`` (from scratch, or from ``init``) to predict ``attributes`` (and generalist factors) on ``adapter``'s images.

    Parameters
    ----------
    adapter : Adapter
        The pretraining data (for avatars: a cache rendered for pretraining only).
    attributes : list of str
        Binary attribute columns, one linear head (logit) each; several give multi-label BCE.
    model : PretrainModel, default=PretrainModel()
        What is trained (:class:`extract.pretrain.config.PretrainModel`): ``arch`` (a name in
        ``extract.backbones.ARCHITECTURES``) and ``arch_kwargs`` (smallcnn: ``width``, 16);
        ``image_size`` (default the data's shorter image side); ``init``, a registry backbone
        whose local weights are the starting point (e.g. ``"efficientnet_lite0.imagenet"``,
        its architecture must be ``arch`` and its normalisation becomes the base's) instead
        of a seeded random init.
    config : PretrainConfig, default=PretrainConfig()
        How it is trained (:class:`extract.pretrain.config.PretrainConfig`): SGD (momentum
        0.9) ``epochs``, ``batch_size``, ``lr``, ``weight_decay`` and ``schedule``
        (``"cosine"``, per-step decay to 0, or ``"constant"``); ``seed`` (initialisation, val
        carve, shuffling, flips); ``val_fraction`` of ``rows`` held out (seeded) for
        validation, 0 for none; ``factors``, generalist factors of an avatar cache
        (:mod:`extract.datasets.avatars.factors`: a shared many-class task, independent of
        every attribute, each factor with ``bins`` class logits after the attribute logits)
        weighted by ``factor_weight`` beside the attributes' BCE; ``freeze_bn`` keeps the
        BatchNorm layers in eval mode while training (running statistics of the starting
        point; affine weights still train).
    rows : array of int, optional
        Row positions used for pretraining (train and val); default every row.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Returns
    -------
    model : nn.Module
        The trained backbone (eval mode, CPU); ``model(x)`` gives (N, feature_dim) features.
    history : dict
        JSON-serialisable: ``config`` (architecture, preprocessing, optimiser), ``data``
        (dataset, manifest hash, sha256 of the rows, counts, base rates, phi with the
        sensitive attribute), ``epochs`` (per epoch: train loss during training, val loss
        and accuracy), ``final`` (eval-mode ``train`` and ``val`` loss/accuracy per
        attribute) and ``seconds``.
    """
    started = time.perf_counter()
    attributes, init = list(attributes), model.init
    settings, config = config, _config_record(config)
    arch, arch_kwargs = resolve_arch(model.arch, model.arch_kwargs)
    device = resolve_device(device)
    positions, labels = select_rows(adapter, rows, attributes)
    factors, factor_classes = _factor_classes(adapter, settings.factors, positions)
    config.update(factors=factors, factor_weight=float(settings.factor_weight))
    train_pos, val_pos = split_train_val(len(positions), val_fraction=config["val_fraction"], seed=config["seed"])
    images = load_images(adapter, positions, model.image_size)
    start = init_backbone(init, arch=arch, arch_kwargs=arch_kwargs, image_size=int(images.shape[-1])) \
        if init is not None else None
    preprocess = base_preprocess(arch, int(images.shape[-1]), init=start)
    config.update(arch=arch, arch_kwargs=arch_kwargs, image_size=int(images.shape[-1]),
                  preprocess=preprocess.to_dict(), attributes=attributes, freeze_bn=bool(settings.freeze_bn),
                  init=None if start is None else {"name": init, "weights_sha256": start.weights_sha256})
    history = {"config": config, "data": describe_data(adapter, positions, labels, attributes, len(train_pos), len(val_pos)),
               "epochs": []}
    if factors:
        history["data"]["factor_labels_sha256"] = hashlib.sha256(np.ascontiguousarray(factor_classes, "<i8").tobytes()).hexdigest()
    # Subsets are copied once to the device; the labels follow the same positions.
    splits = {name: (images[pos].to(device), torch.from_numpy(labels[pos]).to(device),
                     torch.from_numpy(factor_classes[pos]).to(device))
              for name, pos in (("train", train_pos), ("val", val_pos)) if len(pos)}
    del images
    backbone, head = build_model(arch, arch_kwargs, seed=config["seed"], n_heads=len(attributes) + sum(factors.values()))
    if start is not None:
        backbone.load_state_dict(start.model.state_dict())
        del start
    scores, network = {"attributes": attributes, "factors": factors}, nn.Sequential(backbone, head)
    with _deterministic(device.type == "cpu"), seeded_torch_rng(config["seed"], STREAM_GLOBAL, device):
        run = _start_run(backbone, head, config, preprocess, device, n_train=len(train_pos))
        bar = tqdm(range(config["epochs"]), desc=f"pretrain {'+'.join(attributes)}", unit="epoch",
                   disable=not progress, leave=False)
        for epoch in bar:
            record = {"epoch": epoch + 1, "train_loss": run.train_epoch(*splits["train"]),
                      "lr_end": run.scheduler.get_last_lr()[0]}
            if "val" in splits:
                images_val, labels_val, factors_val = splits["val"]
                record["val"] = evaluate(network, images_val, labels_val, run.normalise, factor_labels=factors_val,
                                         **scores)
            history["epochs"].append(record)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}")
        history["final"] = {name: evaluate(network, x, y, run.normalise, factor_labels=f, **scores)
                            for name, (x, y, f) in splits.items()}
    history["seconds"] = time.perf_counter() - started
    return backbone.to("cpu", memory_format=torch.contiguous_format).eval(), history


def _start_run(backbone, head, config, preprocess, device, *, n_train: int) -> _Run:
    memory_format = training_memory_format(backbone, device)  # channels_last unless oneDNN's defect applies
    backbone.to(device, memory_format=memory_format)
    head.to(device)
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=config["lr"], momentum=MOMENTUM, weight_decay=config["weight_decay"])
    total = max(1, config["epochs"] * _steps_per_epoch(n_train, config["batch_size"]))
    if config["schedule"] == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    order_seed = derived_seed(config["seed"], STREAM_ORDER)
    return _Run(backbone=backbone, head=head, optimizer=optimizer,
                scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, factor),
                normalise=_Normaliser(preprocess, device, memory_format),
                generator=torch.Generator().manual_seed(order_seed),
                batch_size=config["batch_size"], device=device, factor_bins=tuple(config["factors"].values()),
                factor_weight=config["factor_weight"], freeze_bn=config.get("freeze_bn", False))


def _factor_classes(adapter: Adapter, factors, positions: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """``({factor: bins}, classes (n, k) int64)`` of the generalist factors; ``({}, (n, 0))`` without."""
    from extract.datasets.avatars.factors import factor_labels, resolve_factors

    spec = resolve_factors(factors)
    if not spec:
        return {}, np.zeros((len(positions), 0), dtype=np.int64)
    return spec, factor_labels(adapter, spec, rows=positions)


# -- writing ----------------------------------------------------------------------------------
def write_base(out: str | Path, model: nn.Module, *, history: dict, name: str, meta: dict | None = None) -> Path:
    """Save a trained base with :func:`extract.backbones.save_checkpoint`.

    The checkpoint's meta holds ``name``, ``kind`` ("pretrained"), ``attributes``,
    ``seed``, ``config`` (the full training configuration), ``data`` (dataset, manifest
    hash, sha256 of the rows, counts, label rates), ``data_hash`` (sha256 over the manifest
    hash and the rows hash), ``final`` (train/val loss and accuracy per attribute),
    ``epochs`` and ``versions``; ``meta`` adds or overrides entries. The file loads with
    ``create_backbone(out)``.
    """
    out = check_output_writable(out)
    config, data = history["config"], history["data"]
    record = {
        "name": name, "kind": "pretrained", "attributes": list(config["attributes"]), "seed": config["seed"],
        "config": config, "data": data,
        "data_hash": hashlib.sha256(f"{data['manifest_hash']}:{data['rows_sha256']}".encode()).hexdigest(),
        "final": history.get("final"), "epochs": history.get("epochs"), "seconds": history.get("seconds"),
        "versions": {"torch": torch.__version__},
        **(meta or {}),
    }
    return save_checkpoint(out, model, arch=config["arch"], arch_kwargs=config["arch_kwargs"],
                           preprocess=Preprocess.from_dict(config["preprocess"]), meta=record)


def write_scratch_base(out: str | Path, *, arch: str = "smallcnn", arch_kwargs: dict | None = None, image_size: int,
                       seed: int = 0, name: str = "scratch", meta: dict | None = None, init: str | None = None) -> Path:
    """Save a seeded random-init backbone (no training) as a checkpoint.

    Its weights equal the starting weights of :func:`pretrain_base` with the same
    architecture and seed (without ``init``); with ``init`` (the recipe's starting point) it
    takes that starting point's normalisation, so it sees the same pixels as the other
    bases, while its weights stay random. Meta: ``name``, ``kind`` ("scratch"),
    ``attributes`` ([]), ``seed``, ``config``; ``meta`` adds entries.
    """
    out = check_output_writable(out)
    arch, arch_kwargs = resolve_arch(arch, arch_kwargs)
    image_size = check_number("image_size", image_size, integer=True)
    seed = check_number("seed", seed, integer=True, allow_zero=True)
    backbone, _ = build_model(arch, arch_kwargs, seed=seed)
    start = init_backbone(init, arch=arch, arch_kwargs=arch_kwargs, image_size=image_size) if init is not None else None
    preprocess = base_preprocess(arch, image_size, init=start)
    config = {"arch": arch, "arch_kwargs": arch_kwargs, "image_size": image_size, "preprocess": preprocess.to_dict(),
              "seed": seed, "attributes": [], "init_normalisation": init}
    record = {"name": name, "kind": "scratch", "attributes": [], "seed": seed, "config": config,
              "versions": {"torch": torch.__version__}, **(meta or {})}
    return save_checkpoint(out, backbone.eval(), arch=arch, arch_kwargs=arch_kwargs, preprocess=preprocess, meta=record)



__all__ = ["base_preprocess", "build_model", "evaluate", "freeze_batchnorm", "init_backbone", "pretrain_base", "resolve_arch", "write_base", "write_scratch_base"]
