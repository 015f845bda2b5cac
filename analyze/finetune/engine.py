"""Many finetuning runs of one base trained in lockstep as one batched model (the default engine).

A grid of full finetunes is hundreds of runs of one architecture at one image size that
differ in their rows, seeds, learning rates and weight decays. Trained one at a time
(:func:`analyze.finetune.train.train_run`, the reference ``"loop"`` engine) each small model
leaves the cores half idle; here ``K`` runs are stacked into one model
(:func:`torch.func.stack_module_state`) whose forward is the base's own under
:func:`torch.vmap` (every convolution becomes one grouped convolution over the K models),
and one backward pass gives every run its own gradient.

What each run keeps, as in the loop:

- its data order and flips: a private generator seeded from its seed draws the epoch's
  permutation and then each batch's flips, in the loop's order, so both engines see the same
  rows in the same batches;
- its head initialisation, learning rate, weight decay and momentum buffer (a per-model SGD
  with PyTorch's update rule), and the shared learning-rate schedule (:func:`~analyze.finetune.train.lr_factor`);
- its best validation epoch, weights and early stop (:func:`~analyze.finetune.train.end_epoch`,
  shared with the loop); a run that stops (patience, divergence) is dropped from the stack at
  the end of its epoch while the others go on.

BatchNorm: with ``freeze_bn`` the layers use the base's statistics; without it every model
normalises its own batch and updates its own running statistics (the buffers are stacked
too). This is exact because runs are grouped by training-set size, so every model's batch at
a step has the same length and no padding enters a batch.

Differences from the loop: floating-point summation order (grouped convolutions), so
results agree to rounding, not bit for bit; and dropout or stochastic depth inside the base
draws one seeded stream for the whole stack (``vmap(randomness="different")``), not one
per run.

K: :func:`choose_models` sizes the stack from the memory a model needs (parameters, their
gradients, momentum and best-epoch copies, and the training activations) and the memory
free, capped where throughput stops growing (``benchmarks/finetune.py`` measures it).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import psutil
import torch
from torch import nn
from torch.func import functional_call, stack_module_state
from torch.nn import functional as F

from analyze.finetune.data import ImageBank
from analyze.finetune.train import (
    PREDICT_BATCH,
    STREAM_GLOBAL,
    RunResult,
    RunSettings,
    _batches,
    autocast,
    end_epoch,
    finish_run,
    lr_factor,
    steps_per_epoch,
)
from extract.seeding import seeded_torch_rng

CPU_MAX_MODELS = 4  # 2-core CPU, 32 px, 2 threads: K = 4 1.46x the loop, K = 8 0.99x (an early probe)
GPU_MAX_MODELS = 32
MEMORY_SHARE = 0.5  # of the memory free, the most a stack may plan to use


@dataclass(frozen=True)
class Job:
    """One training run: its seed, rows (bank indices), labels and hyperparameters.

    ``train``/``val``: int64 bank positions (:meth:`ImageBank.positions`); ``y_train``/``y_val``:
    float32 labels of those rows.
    """

    seed: int
    train: torch.Tensor
    y_train: torch.Tensor
    val: torch.Tensor
    y_val: torch.Tensor
    settings: RunSettings


class BatchedModels:
    """``K`` finetune nets of one architecture as stacked tensors, trained together by SGD.

    Parameters
    ----------
    nets : list of FinetuneNet
        Same architecture and frozen units; their weights are copied into the stack.
    lrs, weight_decays : sequence of float, one per net
    momentum : float
    """

    def __init__(self, nets: Sequence[nn.Module], *, lrs, weight_decays, momentum: float):
        device = next(nets[0].parameters()).device
        self.keys = list(nets[0].state_dict())
        self.params, self.buffers = stack_module_state(list(nets))
        self.trainable = [k for k, v in self.params.items() if v.requires_grad]
        self.template = copy.deepcopy(nets[0]).to("meta")
        self.template.channels_last = False  # vmap cannot query a channels_last layout
        self.lr = torch.tensor(list(lrs), dtype=torch.float32, device=device)
        self.weight_decay = torch.tensor(list(weight_decays), dtype=torch.float32, device=device)
        self.momentum = float(momentum)
        self.velocity: dict[str, torch.Tensor] = {}
        self._call = torch.vmap(self._forward, in_dims=(0, 0, 0), randomness="different")

    def _forward(self, params, buffers, images):
        return functional_call(self.template, (params, buffers), (images,))

    def logits(self, images: torch.Tensor, *, train: bool) -> torch.Tensor:
        """Logits (K, b) of uint8 images (K, b, 3, H, W), model k on ``images[k]``."""
        self.template.train(train)
        return self._call(self.params, self.buffers, images)

    def step(self, images: torch.Tensor, labels: torch.Tensor, factor: float) -> torch.Tensor:
        """One SGD step of every model on its own batch; each model's mean BCE, shape (K,)."""
        with autocast(images.device):
            logits = self.logits(images, train=True)
        losses = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none").mean(1)
        grads = torch.autograd.grad(losses.sum(), [self.params[k] for k in self.trainable], allow_unused=True)
        with torch.no_grad():
            for key, grad in zip(self.trainable, grads):
                if grad is not None:  # an unused parameter (a timm classifier) is left alone, as torch's SGD does
                    self._update(key, grad, factor)
        return losses.detach()

    def _update(self, key: str, grad: torch.Tensor, factor: float) -> None:
        """``torch.optim.SGD`` (dampening 0, no Nesterov) with a learning rate and weight decay per model."""
        param = self.params[key]
        shape = (-1,) + (1,) * (param.dim() - 1)
        direction = grad + self.weight_decay.view(shape) * param
        if self.momentum:
            if key in self.velocity:
                direction = self.velocity[key].mul_(self.momentum).add_(direction)
            else:
                self.velocity[key] = direction = direction.clone()
        param.sub_((self.lr * factor).view(shape) * direction)

    def keep(self, index: Sequence[int]) -> None:
        """Keep only the models at ``index`` (the others stopped); their order is kept."""
        at = torch.as_tensor(list(index), dtype=torch.int64, device=self.lr.device)
        self.params = {k: v.detach()[at].requires_grad_(v.requires_grad) for k, v in self.params.items()}
        self.buffers = {k: v[at] for k, v in self.buffers.items()}
        self.velocity = {k: v[at] for k, v in self.velocity.items()}
        self.lr, self.weight_decay = self.lr[at], self.weight_decay[at]

    def state(self, k: int) -> dict:
        """Model ``k``'s weights as a ``state_dict`` of one net (copies)."""
        merged = {**self.params, **self.buffers}
        return {key: merged[key][k].detach().clone() for key in self.keys}


def _gather(bank: ImageBank, rows: torch.Tensor) -> torch.Tensor:
    """uint8 images (K, b, 3, H, W) of bank positions ``rows`` (K, b)."""
    return bank.images.index_select(0, rows.reshape(-1)).view(*rows.shape, *bank.images.shape[1:])


def _epoch_plan(jobs: Sequence[Job], generators: Sequence[torch.Generator], settings: RunSettings):
    """Per step: bank rows (K, b), labels (K, b) and flips (K, b) or None, drawn as the loop draws them."""
    per_job = []
    for job, generator in zip(jobs, generators):
        batches = _batches(len(job.train), settings.batch_size, generator)
        flips = [torch.rand(len(b), generator=generator) < 0.5 if settings.flip else None for b in batches]
        per_job.append((batches, flips))
    plan = []
    for step in range(len(per_job[0][0])):
        index = torch.stack([batches[step] for batches, _ in per_job])
        rows = torch.stack([job.train[i] for job, i in zip(jobs, index)])
        labels = torch.stack([job.y_train[i] for job, i in zip(jobs, index)])
        flips = torch.stack([f[step] for _, f in per_job]) if settings.flip else None
        plan.append((rows, labels, flips))
    return plan


def _train_epoch(models: BatchedModels, jobs, generators, bank: ImageBank, epoch: int) -> list[float]:
    """One epoch of every model; each model's mean training loss (nan when it diverged)."""
    settings = jobs[0].settings
    per_epoch = steps_per_epoch(len(jobs[0].train), settings.batch_size)
    device = bank.images.device
    total = torch.zeros(len(jobs), dtype=torch.float64)
    for step, (rows, labels, flips) in enumerate(_epoch_plan(jobs, generators, settings), start=(epoch - 1) * per_epoch):
        images = _gather(bank, rows.to(device))
        if flips is not None and bool(flips.any()):
            images = torch.where(flips.to(device).view(*flips.shape, 1, 1, 1), images.flip(-1), images)
        factor = lr_factor(step, total=per_epoch * settings.epochs, per_epoch=per_epoch, schedule=settings.schedule)
        losses = models.step(images, labels.to(device), factor)
        total += losses.double().cpu() * rows.shape[1]
    mean = (total / len(jobs[0].train)).tolist()
    return [v if math.isfinite(v) else math.nan for v in mean]


def _val_logits(models: BatchedModels, jobs, bank: ImageBank) -> list[torch.Tensor]:
    """Eval-mode validation logits of every model on its own rows (float32, CPU)."""
    longest = max(len(j.val) for j in jobs)
    rows = torch.stack([torch.cat([j.val, j.val[:1].expand(longest - len(j.val))]) for j in jobs])
    chunk = max(1, PREDICT_BATCH // 2)
    out = []
    with torch.no_grad(), autocast(bank.images.device):
        for start in range(0, longest, chunk):
            part = rows[:, start:start + chunk].to(bank.images.device)
            out.append(models.logits(_gather(bank, part), train=False).float().cpu())
    logits = torch.cat(out, dim=1)
    return [logits[k, :len(j.val)] for k, j in enumerate(jobs)]


def train_stack(jobs: Sequence[Job], nets: Sequence[nn.Module], *, bank: ImageBank,
                on_run: Callable[[], None] | None = None) -> list[RunResult]:
    """Train ``jobs`` (equal training-set size and settings but lr and weight decay) in lockstep.

    ``nets[k]`` is job k's freshly built net (base plus seeded head, on the bank's device).
    Returns one :class:`RunResult` per job, in order; ``seconds`` is the stack's wall time
    shared equally among its runs.
    """
    began = time.perf_counter()
    settings = jobs[0].settings
    models = BatchedModels(nets, lrs=[j.settings.lr for j in jobs], weight_decays=[j.settings.weight_decay for j in jobs],
                           momentum=settings.momentum)
    results = [RunResult(val_loss=math.inf, best_epoch=0, val_curve=[], train_curve=[], val_scores=None) for _ in jobs]
    generators = [torch.Generator().manual_seed(int(j.seed)) for j in jobs]
    alive = list(range(len(jobs)))
    with seeded_torch_rng(jobs[0].seed, STREAM_GLOBAL, bank.images.device):
        for epoch in range(1, settings.epochs + 1):
            live = [jobs[i] for i in alive]
            losses = _train_epoch(models, live, [generators[i] for i in alive], bank, epoch)
            logits = _val_logits(models, live, bank)
            keep = []
            for j, i in enumerate(alive):
                stop = end_epoch(results[i], epoch, train_loss=losses[j],
                                 logits=logits[j] if math.isfinite(losses[j]) else None, val_labels=jobs[i].y_val,
                                 settings=settings, state=lambda j=j: models.state(j))
                if stop:
                    finish_run(results[i], began)
                    if on_run is not None:
                        on_run()
                else:
                    keep.append(j)
            if len(keep) < len(alive):
                models.keep(keep)
                alive = [alive[j] for j in keep]
            if not alive:
                break
    for result in results:
        result.seconds /= len(jobs)
    return results


def group_jobs(jobs: Sequence[Job], max_models: int) -> list[list[int]]:
    """Indices of ``jobs`` in stacks of at most ``max_models`` that may train together
    (same training-set size and the same settings but learning rate and weight decay)."""
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        s = job.settings
        key = (len(job.train), s.epochs, s.batch_size, s.momentum, s.flip, s.patience, s.schedule)
        groups.setdefault(key, []).append(i)
    return [members[start:start + max_models] for members in groups.values()
            for start in range(0, len(members), max_models)]


def model_bytes(net: nn.Module, *, side: int, batch_size: int) -> int:
    """Memory one model of a stack needs while training, in bytes (an estimate).

    Parameters four times over (weights, gradients, momentum, best-epoch copy) plus the
    activations of a training batch (every module's output, kept for the backward pass and
    matched by its gradient), counted with forward hooks on one image.
    """
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() if torch.is_tensor(out) else 0))
             for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, side, side, dtype=torch.uint8, device=next(net.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    n_params = sum(p.numel() for p in net.parameters())
    return 4 * (4 * n_params + 2 * sum(sizes) * batch_size)


def choose_models(net: nn.Module, *, side: int, batch_size: int, device: torch.device) -> int:
    """K for a stack of ``net``-like models: what ``MEMORY_SHARE`` of the free memory holds,
    at most ``CPU_MAX_MODELS`` on the CPU (``GPU_MAX_MODELS`` on a GPU), at least 1."""
    if device.type == "cuda":
        free, cap = torch.cuda.mem_get_info(device)[0], GPU_MAX_MODELS
    else:
        free, cap = psutil.virtual_memory().available, CPU_MAX_MODELS
    fits = int(MEMORY_SHARE * free // max(1, model_bytes(net, side=side, batch_size=batch_size)))
    return int(np.clip(fits, 1, cap))


__all__ = ["BatchedModels", "CPU_MAX_MODELS", "GPU_MAX_MODELS", "Job", "choose_models", "group_jobs", "model_bytes",
           "train_stack"]
