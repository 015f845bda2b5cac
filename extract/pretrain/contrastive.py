"""A self-supervised base: SimCLR (Chen et al. 2020) on the pretraining images, no label.

Recipe of one run (:func:`pretrain_contrastive`), beside the supervised one of
:mod:`extract.pretrain.train` and sharing its architecture, starting point (``init``),
``freeze_bn``, optimiser (SGD, momentum 0.9, weight decay), learning-rate schedule, seeded
validation carve and batch order:

- two random views of every image of a batch (:mod:`extract.pretrain.augment`, the base's
  named set ``augment``), both through the backbone in one forward;
- the backbone's pooled features (the features a base gives downstream) feed a projection
  head ``Linear(d, d) -> ReLU -> Linear(d, projection_dim)``, initialised from the seed;
- the NT-Xent loss (:func:`nt_xent`) with ``temperature`` on the L2-normalised projections:
  for each of the 2B views, cross-entropy of its partner among the other 2B - 1 views;
- the head is dropped when the base is saved: only the backbone is a base.

Validation (each epoch): the NT-Xent loss on the held-out rows with views drawn from a
fixed seed (the same views every epoch), in batches of the training size, and the share of
views whose most similar other view is their partner (``pair_accuracy``; chance 1/(2B-1)).

Determinism: as :func:`extract.pretrain.train.pretrain_base` (deterministic algorithms on
CPU; the order from the same seed stream as a supervised base, so both see the same
batches; the views from their own stream).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from extract.datasets.base import Adapter
from extract.devices import resolve_device, training_memory_format
from extract.pretrain.augment import DEFAULT_AUGMENT, AugmentSpec, augment_batch, resolve_augment
from extract.pretrain.config import PretrainConfig, PretrainModel, check_number, resolve_arch
from extract.pretrain.data import check_positions, describe_data, load_images, split_train_val
from extract.pretrain.train import (
    MOMENTUM,
    STREAM_GLOBAL,
    STREAM_ORDER,
    _batches,
    _deterministic,
    _steps_per_epoch,
    base_preprocess,
    build_model,
    freeze_batchnorm,
    init_backbone,
)
from extract.seeding import derived_seed, seeded_torch_rng

STREAM_VIEWS = 4  # seed stream of the training views
STREAM_VAL_VIEWS = 5  # seed stream of the (fixed) validation views
STREAM_HEAD = 6  # seed stream of the projection head's initialisation
OBJECTIVES = ("supervised", "simclr")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy of two views' projections.

    ``z1[i]`` and ``z2[i]`` are the two views of image i (each (B, k)). With the 2B vectors
    L2-normalised and s the cosine similarity, the loss of view a with partner p is
    ``-log(exp(s(a, p) / t) / sum_{c != a} exp(s(a, c) / t))``; returned is the mean over
    all 2B views.
    """
    temperature = check_number("temperature", temperature, integer=False)
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partners)


def projection_head(feature_dim: int, projection_dim: int, *, seed: int) -> nn.Module:
    """SimCLR's MLP head ``Linear(d, d) -> ReLU -> Linear(d, projection_dim)``, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, STREAM_HEAD))
        return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, projection_dim))


class _Views:
    """uint8 batch -> two normalised random views, each (B, 3, H, W) in the training layout."""

    def __init__(self, spec: AugmentSpec, preprocess, device, memory_format):
        self.spec, self.memory_format = spec, memory_format
        self.mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        views = [augment_batch(batch, self.spec, generator) for _ in range(2)]
        x = (torch.cat(views) - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)


def _project(backbone, head, x, device) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        z = head(backbone(x)).float()
    n = len(z) // 2
    return z[:n], z[n:]


@torch.no_grad()
def evaluate_contrastive(backbone, head, images, views: _Views, *, temperature: float, batch_size: int,
                         seed: int) -> dict:
    """Eval-mode NT-Xent loss and pair accuracy on ``images`` with views from a fixed ``seed``."""
    backbone.eval()
    head.eval()
    generator = torch.Generator().manual_seed(derived_seed(seed, STREAM_VAL_VIEWS))
    loss, hits, count, chance = 0.0, 0, 0, []
    device = images.device
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if len(batch) < 2:
            break
        z1, z2 = _project(backbone, head, views(batch, generator), device)
        loss += float(nt_xent(z1, z2, temperature)) * 2 * len(batch)
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        sims = (z @ z.T).fill_diagonal_(float("-inf"))
        partners = torch.cat([torch.arange(len(batch), 2 * len(batch)), torch.arange(0, len(batch))]).to(device)
        hits += int((sims.argmax(1) == partners).sum())
        count += 2 * len(batch)
        chance.append(1.0 / (2 * len(batch) - 1))
    return {"loss": loss / max(count, 1), "pair_accuracy": hits / max(count, 1),
            "chance": float(np.mean(chance)) if chance else 0.0, "n_views": count}


def _record(config: PretrainConfig, spec: AugmentSpec) -> dict:
    return {"epochs": int(config.epochs), "batch_size": int(config.batch_size), "lr": float(config.lr),
            "weight_decay": float(config.weight_decay), "seed": int(config.seed),
            "val_fraction": float(config.val_fraction), "schedule": config.schedule, "optimizer": "sgd",
            "momentum": MOMENTUM, "objective": "simclr", "loss": "nt_xent", "temperature": float(config.temperature),
            "projection_dim": int(config.projection_dim),
            "projection_head": "linear-relu-linear, hidden = feature_dim; dropped when saved",
            "augment": spec.name, "augmentation": spec.to_dict(), "attributes": [], "freeze_bn": bool(config.freeze_bn)}


def _train_epoch(backbone, head, images, state: dict) -> float:
    backbone.train()
    if state["freeze_bn"]:
        freeze_batchnorm(backbone)
    head.train()
    total, count = 0.0, 0
    for idx in _batches(len(images), state["batch_size"], state["order"]):
        x = state["views"](images[idx.to(images.device)], state["view_generator"])
        z1, z2 = _project(backbone, head, x, images.device)
        loss = nt_xent(z1, z2, state["temperature"])
        state["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        state["optimizer"].step()
        state["scheduler"].step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def _training_state(backbone, head, record: dict, views: _Views, n_train: int) -> dict:
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=record["lr"], momentum=MOMENTUM,
                                weight_decay=record["weight_decay"])
    total = max(1, record["epochs"] * _steps_per_epoch(n_train, record["batch_size"]))
    if record["schedule"] == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    return {"optimizer": optimizer, "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor),
            "order": torch.Generator().manual_seed(derived_seed(record["seed"], STREAM_ORDER)),
            "view_generator": torch.Generator().manual_seed(derived_seed(record["seed"], STREAM_VIEWS)),
            "views": views, "batch_size": record["batch_size"], "temperature": record["temperature"],
            "freeze_bn": record["freeze_bn"]}


def _prepare(adapter, model: PretrainModel, config: PretrainConfig, spec: AugmentSpec, rows) -> tuple:
    """Rows, images, starting point, preprocessing and the history's config/data records."""
    arch, arch_kwargs = resolve_arch(model.arch, model.arch_kwargs)
    positions = check_positions(len(adapter.metadata()), rows)
    train_pos, val_pos = split_train_val(len(positions), val_fraction=config.val_fraction, seed=config.seed)
    images = load_images(adapter, positions, model.image_size)
    size = int(images.shape[-1])
    start = init_backbone(model.init, arch=arch, arch_kwargs=arch_kwargs, image_size=size) \
        if model.init is not None else None
    preprocess = base_preprocess(arch, size, init=start)
    record = _record(config, spec)
    record.update(arch=arch, arch_kwargs=arch_kwargs, image_size=size, preprocess=preprocess.to_dict(),
                  init=None if start is None else {"name": model.init, "weights_sha256": start.weights_sha256})
    data = describe_data(adapter, positions, np.zeros((len(positions), 0), np.float32), [], len(train_pos), len(val_pos))
    return images, (train_pos, val_pos), start, preprocess, record, data


def pretrain_contrastive(adapter: Adapter, *, augment: str = DEFAULT_AUGMENT, model: PretrainModel = PretrainModel(),
                         config: PretrainConfig = PretrainConfig(), rows=None, device: str = "auto",
                         progress: bool = True) -> tuple[nn.Module, dict]:
    """Train ``model`` with SimCLR on ``adapter``'s images (no label); return ``(backbone, history)``.

    Parameters as :func:`extract.pretrain.train.pretrain_base`, less ``attributes``;
    ``augment`` names the augmentation set (:data:`extract.pretrain.augment.AUGMENTS`), and
    ``config.temperature`` / ``config.projection_dim`` set the loss and the head (its
    ``factors`` are not used). ``history`` has ``config`` (with ``objective`` "simclr",
    ``augment`` and the augmentation parameters), ``data``, ``epochs`` (train loss, val loss
    and pair accuracy), ``final`` (``val``) and ``seconds``; :func:`write_base` saves it.
    """
    started = time.perf_counter()
    spec = resolve_augment(augment)
    device = resolve_device(device)
    images, (train_pos, val_pos), start, preprocess, record, data = _prepare(adapter, model, config, spec, rows)
    history = {"config": record, "data": data, "epochs": []}
    backbone, _ = build_model(record["arch"], record["arch_kwargs"], seed=record["seed"])
    if start is not None:
        backbone.load_state_dict(start.model.state_dict())
        del start
    head = projection_head(int(backbone.feature_dim), record["projection_dim"], seed=record["seed"])
    memory_format = training_memory_format(backbone, device)
    backbone.to(device, memory_format=memory_format)
    head.to(device)
    views = _Views(spec, preprocess, device, memory_format)
    train_images = images[torch.from_numpy(train_pos)].to(device)
    val_images = images[torch.from_numpy(val_pos)].to(device) if len(val_pos) else None
    del images
    with _deterministic(device.type == "cpu"), seeded_torch_rng(record["seed"], STREAM_GLOBAL, device):
        state = _training_state(backbone, head, record, views, len(train_pos))
        for epoch in tqdm(range(record["epochs"]), desc=f"pretrain simclr ({spec.name})", unit="epoch",
                          disable=not progress, leave=False):
            entry = {"epoch": epoch + 1, "train_loss": _train_epoch(backbone, head, train_images, state),
                     "lr_end": state["scheduler"].get_last_lr()[0]}
            if val_images is not None:
                entry["val"] = evaluate_contrastive(backbone, head, val_images, views, temperature=record["temperature"],
                                                    batch_size=record["batch_size"], seed=record["seed"])
            history["epochs"].append(entry)
    history["final"] = {"val": history["epochs"][-1]["val"]} if val_images is not None else {}
    history["seconds"] = time.perf_counter() - started
    return backbone.to("cpu", memory_format=torch.contiguous_format).eval(), history


__all__ = ["OBJECTIVES", "evaluate_contrastive", "nt_xent", "pretrain_contrastive", "projection_head"]
