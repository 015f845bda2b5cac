"""One finetuning run: a base plus a new linear head, trained with SGD on uint8 images.

The paper's protocol (docs/science.md section 10): all layers trained (unless the first stages are
frozen), a new head ``Linear(feature_dim, 1)`` with BCE on its logit, SGD with momentum
0.9, batch 64, horizontal flips as the only augmentation, a constant learning rate
(``schedule="constant"``) or a cosine decay after a linear warm-up (``schedule="cosine"``,
:func:`lr_factor`), which lets training settle inside its epoch budget. Unlike
the released code, the epoch count is chosen *within* the run: validation loss is measured
after every epoch and the weights of the best epoch are kept (the released code re-ran
with ``argmin + 1`` epochs and reported the last one).

Sign convention: the head's logit is for ``y = 1``; scores are logits (``sigmoid(logit)`` is the probability).

Reproducibility: shuffling order, flips and the head's initialisation come from ``seed``
(a private ``torch.Generator``); dropout and stochastic depth inside the backbone, which can
only draw from torch's global RNG, draw from it seeded from ``seed`` in a forked RNG state
(:func:`extract.seeding.seeded_torch_rng`; the caller's RNG is untouched), so a run on the
CPU is repeatable bit for bit at a fixed thread count. On CUDA the forward runs under bf16
autocast with channels_last (fast, not bitwise repeatable).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from extract.backbones import Preprocess
from extract.pretrain.train import freeze_batchnorm
from extract.errors import UserError
from extract.seeding import seeded_torch_rng

STREAM_GLOBAL = 1  # seed stream of the global-RNG draws (dropout, stochastic depth) of a run
PREDICT_BATCH = 512  # rows per inference batch (no gradients, so larger than training)
SCHEDULES = ("constant", "cosine")
WARMUP_FRACTION = 0.1  # share of a cosine schedule's steps spent warming up linearly (at most one epoch)


def frozen_units(backbone: nn.Module, freeze: int) -> list[nn.Module]:
    """Modules frozen by ``freeze = k``: the stem and the first ``k`` stages (k = 0: none).

    ``k = len(stages)`` freezes the whole backbone (only the head trains). The backbone
    must expose ``stem`` and ``stages`` (the registry's architectures do).
    """
    if isinstance(freeze, bool) or not isinstance(freeze, (int, np.integer)) or freeze < 0:
        raise UserError(f"freeze must be a non-negative number of stages, got {freeze!r}.")
    if freeze == 0:
        return []
    stages = getattr(backbone, "stages", None)
    if stages is None or not hasattr(backbone, "stem"):
        raise UserError(f"{type(backbone).__name__} has no stem/stages to freeze; use `freeze=0`.")
    if freeze > len(stages):
        raise UserError(f"freeze={freeze} exceeds the base's {len(stages)} stages; pass 0 to {len(stages)}.")
    if freeze == len(stages):
        return [backbone]
    return [backbone.stem, *list(stages)[:freeze]]


class FinetuneNet(nn.Module):
    """Base + new head on uint8 input: ``logit = head(base((x / 255 - mean) / std))``.

    Frozen units have ``requires_grad = False`` and stay in eval mode whenever the net is
    put in training mode, so their BatchNorm running statistics never change (the released
    code froze weights but kept updating those statistics). With ``freeze_bn`` every
    BatchNorm layer stays in eval mode (the base's running statistics; affine weights still
    train), the usual way to finetune a pretrained base on a few hundred small images.

    Parameters
    ----------
    backbone : nn.Module
        Returns pooled features of shape (N, feature_dim); owned (trained) by this net.
    feature_dim : int
    preprocess : Preprocess
        Its mean and std normalise the input.
    freeze : int
        Stem plus the first ``freeze`` stages are frozen (see :func:`frozen_units`).
    freeze_bn : bool
        Keep every BatchNorm layer in eval mode while training.
    seed : int
        Seeds the head's initialisation.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, preprocess: Preprocess, *, freeze: int = 0,
                 freeze_bn: bool = False, seed: int = 0):
        super().__init__()
        self.freeze_bn = bool(freeze_bn)
        self.channels_last = True  # on CUDA; off under vmap (the batched engine), which cannot query that layout
        self.backbone = backbone
        with torch.random.fork_rng(devices=[]):  # seeded head without touching the caller's RNG
            torch.manual_seed(seed)
            self.head = nn.Linear(feature_dim, 1)
        self.register_buffer("mean", torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1))
        self._frozen = frozen_units(backbone, freeze)  # a plain list: not registered twice
        for unit in self._frozen:
            unit.requires_grad_(False)

    def train(self, mode: bool = True) -> "FinetuneNet":
        super().train(mode)
        for unit in self._frozen:
            unit.eval()
        if self.freeze_bn:
            freeze_batchnorm(self.backbone)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N,) for uint8 images of shape (N, 3, H, W)."""
        x = (images.to(torch.float32) / 255.0 - self.mean) / self.std
        if images.is_cuda and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x)).squeeze(1).float()


@dataclass(frozen=True)
class RunSettings:
    """Hyperparameters of one run (recorded with every result)."""

    lr: float
    weight_decay: float
    epochs: int = 5
    batch_size: int = 64
    momentum: float = 0.9
    flip: bool = True
    patience: int = 0  # stop after this many epochs without a better validation loss (0: never stop early)
    schedule: str = "constant"  # learning rate over the steps: one of SCHEDULES (see lr_factor)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` rows (a trailing batch of one joins the previous one)."""
    steps = -(-int(n) // int(batch_size))
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def lr_factor(step: int, *, total: int, per_epoch: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total``.

    ``"constant"``: 1. ``"cosine"``: a linear warm-up over the first ``WARMUP_FRACTION`` of the
    steps (at most one epoch, ``per_epoch`` steps; factors 1/w, 2/w, ..., 1), then a half
    cosine from 1 down towards 0, reached at the end of the last epoch, so the final epochs
    take small steps and the best validation epoch falls inside the budget.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise UserError(f"unknown learning-rate schedule {schedule!r}; set `schedule` to one of {SCHEDULES}.")
    warmup = min(max(1, int(per_epoch)), max(1, round(WARMUP_FRACTION * total))) if total > 1 else 0
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@dataclass
class RunResult:
    """What one run leaves: its validation curve, the best epoch and its weights.

    ``val_loss`` is the best epoch's mean validation BCE (``inf`` when training
    diverged); ``best_epoch`` counts from 1; ``state`` holds the best epoch's weights
    (None when diverged); ``val_scores`` are that epoch's validation logits (float64; logits,
    not probabilities, so that a confident model's scores do not saturate and tie).
    """

    val_loss: float
    best_epoch: int
    val_curve: list[float]
    train_curve: list[float]
    val_scores: np.ndarray | None
    state: dict | None = field(repr=False, default=None)
    seconds: float = 0.0
    diverged: bool = False


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context on the CPU (float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def predict_logits(net: nn.Module, images: torch.Tensor, *, device: torch.device) -> torch.Tensor:
    """Eval-mode logits (N,) float32 on the CPU for uint8 images (N, 3, H, W)."""
    net.eval()
    out = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(images), PREDICT_BATCH):
            out.append(net(images[start:start + PREDICT_BATCH].to(device, non_blocking=True)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing batch of one row joins the previous one
    (BatchNorm cannot normalise a single sample with a 1x1 feature map)."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


def _train_epoch(net, optimizer, images, labels, *, settings: RunSettings, generator, device, epoch: int) -> float:
    """One pass over the training rows (``epoch`` counts from 1); returns the mean training loss (nan if it diverged)."""
    net.train()
    total, count = 0.0, 0
    per_epoch = steps_per_epoch(len(images), settings.batch_size)
    for step, index in enumerate(_batches(len(images), settings.batch_size, generator), start=(epoch - 1) * per_epoch):
        factor = lr_factor(step, total=per_epoch * settings.epochs, per_epoch=per_epoch, schedule=settings.schedule)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * factor
        flip = torch.rand(len(index), generator=generator) < 0.5 if settings.flip else None
        x = images.index_select(0, index.to(images.device)).to(device, non_blocking=True)
        if flip is not None and bool(flip.any()):
            flip = flip.to(device).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        y = labels.index_select(0, index.to(labels.device)).to(device, non_blocking=True)
        with autocast(device):
            loss = F.binary_cross_entropy_with_logits(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            return math.nan
        total, count = total + value * len(index), count + len(index)
    return total / max(count, 1)


def train_run(net: FinetuneNet, train_images: torch.Tensor, train_labels: torch.Tensor, val_images: torch.Tensor,
              val_labels: torch.Tensor, *, settings: RunSettings, seed: int, device: torch.device) -> RunResult:
    """Train ``net`` for ``settings.epochs`` epochs, keeping the best validation epoch.

    With ``settings.patience`` > 0 training stops once that many epochs in a row bring no
    lower validation loss (the best epoch's weights are kept either way).

    Parameters
    ----------
    net : FinetuneNet
        Already on ``device``; trained in place.
    train_images, val_images : Tensor of shape (n, 3, H, W), uint8
    train_labels, val_labels : Tensor of shape (n,), float32 in {0, 1}
    settings : RunSettings
    seed : int
        Seeds shuffling and flips.

    The best epoch's weights are kept in ``RunResult.state``.
    """
    began = time.perf_counter()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    best = RunResult(val_loss=math.inf, best_epoch=0, val_curve=[], train_curve=[], val_scores=None)
    with seeded_torch_rng(seed, STREAM_GLOBAL, device):  # dropout and stochastic depth in the backbone
        for epoch in range(1, settings.epochs + 1):
            train_loss = _train_epoch(net, optimizer, train_images, train_labels, settings=settings,
                                      generator=generator, device=device, epoch=epoch)
            logits = predict_logits(net, val_images, device=device) if math.isfinite(train_loss) else None
            if end_epoch(best, epoch, train_loss=train_loss, logits=logits, val_labels=val_labels,
                         settings=settings, state=lambda: copy.deepcopy(net.state_dict())):
                break
    return finish_run(best, began)


def end_epoch(best: RunResult, epoch: int, *, train_loss: float, logits: torch.Tensor | None,
              val_labels: torch.Tensor, settings: RunSettings, state) -> bool:
    """Book one finished epoch into ``best`` (in place); True when the run stops here.

    The one place both engines decide divergence, the best epoch and early stopping.
    ``logits``: the epoch's validation logits (None when training diverged); ``state``: a
    callable returning the weights to keep at a new best epoch (None: keep none).
    """
    best.train_curve.append(train_loss)
    if not math.isfinite(train_loss):
        best.diverged = True
        return True
    val_loss = float(F.binary_cross_entropy_with_logits(logits, val_labels.cpu()))
    best.val_curve.append(val_loss)
    if not math.isfinite(val_loss):
        best.diverged = True
        return True
    if val_loss < best.val_loss:
        best.val_loss, best.best_epoch = val_loss, epoch
        best.val_scores = logits.numpy().astype(np.float64)
        if state is not None:
            best.state = state()
    elif settings.patience and epoch - best.best_epoch >= settings.patience:
        return True
    return epoch >= settings.epochs


def finish_run(best: RunResult, began: float) -> RunResult:
    """Clear what a run that never improved holds, and stamp its seconds."""
    if best.best_epoch == 0:
        best.state, best.val_scores = None, None
    best.seconds = time.perf_counter() - began
    return best


def check_labels(labels: np.ndarray, *, what: str) -> None:
    """Raise :class:`UserError` unless ``labels`` hold both 0 and 1 (and nothing else)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise UserError(f"the {what} rows are empty; choose a larger subset or another split.")
    values = set(np.unique(labels).tolist())
    if not values <= {0, 1}:
        raise UserError(f"the {what} labels contain {sorted(values - {0, 1})}; rows with unknown labels must be dropped.")
    if len(values) < 2:
        raise UserError(f"the {what} label is constant ({values.pop()}) on its {len(labels)} rows; "
                        "choose another target or a subset that holds both classes.")
