"""The learning-rate x weight-decay grid of a finetuning condition, searched on validation loss.

A *condition* is a set of replicate cells: subset specs that differ only in their seed
(e.g. ``Correlation("hat", "dark_skin", 0.8, n=256, seed=s)`` for s = 0..4). Every grid
setting is trained on every replicate (the replicate's own training rows, seed and
validation rows), each run keeping its best epoch. The chosen setting is the one with the
**lowest mean best-epoch validation loss over the replicates** (docs/science.md section 10: the
released code's "duplicate-robustness" rule inverted this); a setting where any replicate
diverged is invalid. The chosen setting's runs *are* the condition's replicates: no run
is repeated after the search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from analyze.finetune.data import ImageBank
from analyze.finetune.train import (
    FinetuneNet,
    RunResult,
    RunSettings,
    check_labels,
    train_run,
)
from analyze.subsets.core import SubsetSplit
from extract.backbones import Backbone
from extract.errors import UserError

DEFAULT_LRS = (0.01, 0.003)  # a small CPU-sized grid; the paper searched 5 x 4 (docs/science.md section 10)
DEFAULT_WEIGHT_DECAYS = (1e-4, 1e-3)


def _positive_floats(name: str, values, *, allow_zero: bool) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a list of numbers, got {values!r}.") from None
    if not out:
        raise UserError(f"the {name} grid is empty; give at least one value.")
    if any(not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) for v in out):
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"every {name} must be a finite number {bound}, got {list(out)}.")
    return out


@dataclass(frozen=True)
class FinetuneConfig:
    """Protocol of the full-finetune runner (defaults: the paper's, on a small CPU grid).

    Parameters
    ----------
    lrs, weight_decays : tuple of float
        The grid searched on validation loss (every pair is trained).
    epochs : int
        Maximum epochs; the best validation epoch is kept.
    batch_size, momentum, flip
        SGD batch size, momentum, random horizontal flips during training.
    freeze : int
        Freeze the stem and the first ``freeze`` stages (0 = train everything).
    freeze_bn : bool
        Keep the base's BatchNorm statistics (layers in eval mode while training).
    """

    lrs: tuple[float, ...] = DEFAULT_LRS
    weight_decays: tuple[float, ...] = DEFAULT_WEIGHT_DECAYS
    epochs: int = 5
    batch_size: int = 64
    momentum: float = 0.9
    flip: bool = True
    freeze: int = 0
    freeze_bn: bool = False

    def __post_init__(self):
        object.__setattr__(self, "lrs", _positive_floats("learning rate", self.lrs, allow_zero=False))
        object.__setattr__(self, "weight_decays", _positive_floats("weight decay", self.weight_decays, allow_zero=True))
        for name, low in (("epochs", 1), ("batch_size", 2), ("freeze", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise UserError(f"{name} must be an integer >= {low}, got {value!r}.")
        if not isinstance(self.freeze_bn, bool):
            raise UserError(f"freeze_bn must be true or false, got {self.freeze_bn!r}.")
        if not 0 <= float(self.momentum) < 1:
            raise UserError(f"momentum must lie in [0, 1), got {self.momentum!r}.")

    def settings(self) -> list[RunSettings]:
        """Every grid point, learning rate major."""
        return [RunSettings(lr=lr, weight_decay=wd, epochs=self.epochs, batch_size=self.batch_size,
                            momentum=self.momentum, flip=self.flip)
                for lr in self.lrs for wd in self.weight_decays]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Selection:
    """The chosen grid point and the per-setting summary it was chosen from.

    ``summary``: one row per (lr, weight_decay) in grid order with ``mean_val_loss``,
    ``sd_val_loss``, ``n_replicates``, ``n_finite`` and ``valid``.
    """

    lr: float
    weight_decay: float
    summary: pd.DataFrame = field(repr=False)


def select_setting(trials: pd.DataFrame) -> Selection:
    """Choose the grid point with the lowest mean validation loss over its replicates.

    Parameters
    ----------
    trials : DataFrame
        One row per run: ``lr``, ``weight_decay``, ``seed``, ``val_loss`` (the run's best
        epoch; ``inf`` or NaN when it diverged).

    Returns
    -------
    Selection
        Ties go to the setting listed first. A setting with any non-finite replicate is
        invalid; when every setting is invalid, :class:`UserError`.
    """
    missing = {"lr", "weight_decay", "val_loss"} - set(trials.columns)
    if missing or trials.empty:
        raise UserError(f"the grid trials table is empty or lacks {sorted(missing)}; nothing to select from.")
    loss = trials["val_loss"].astype(float)
    grouped = trials.assign(val_loss=loss, finite=np.isfinite(loss)).groupby(["lr", "weight_decay"], sort=False)
    summary = grouped.agg(mean_val_loss=("val_loss", "mean"), sd_val_loss=("val_loss", "std"),
                          n_replicates=("val_loss", "size"), n_finite=("finite", "sum")).reset_index()
    summary["valid"] = summary["n_finite"] == summary["n_replicates"]
    valid = summary[summary["valid"]]
    if valid.empty:
        raise UserError(f"no setting of the {len(summary)}-point learning-rate x weight-decay grid trained without "
                        "diverging on every replicate; add smaller learning rates to the grid.")
    best = valid.index[int(np.argmin(valid["mean_val_loss"].to_numpy()))]  # argmin: first of ties
    return Selection(lr=float(summary.at[best, "lr"]), weight_decay=float(summary.at[best, "weight_decay"]),
                     summary=summary)


@dataclass
class Replicate:
    """One replicate cell of a condition and its rows (dataset positions)."""

    spec: object
    rows: SubsetSplit
    labels: np.ndarray  # the finetuning label of every dataset row (int8, -1 unknown)


@dataclass
class ConditionOutcome:
    """A searched condition: the selection, every trial, and the chosen runs per replicate."""

    selection: Selection
    trials: pd.DataFrame
    replicates: list[Replicate]
    chosen: list[RunResult]
    setup_seconds: float  # building nets and gathering rows, summed over every run
    train_seconds: float  # training compute (epochs + validation), summed over every run


def prepare_replicates(specs: Sequence, meta: pd.DataFrame) -> list[Replicate]:
    """Rows and labels of every replicate; a constant training label is a UserError."""
    out = []
    for spec in specs:
        rows = spec.split_indices(meta)
        labels = np.asarray(spec.labels(meta))
        check_labels(labels[rows.train], what=f"training ({spec.to_dict().get('kind')}, seed {spec.seed})")
        if len(rows.val) == 0:
            raise UserError(f"the subset with seed {spec.seed} has no validation rows; use a val_fraction > 0.")
        out.append(Replicate(spec, rows, labels))
    return out


def build_net(make_base: Callable[[int], Backbone], seed: int, *, freeze: int, device: torch.device,
              freeze_bn: bool = False) -> FinetuneNet:
    """A fresh base (from ``make_base(seed)``) with a new seeded head, on ``device``."""
    backbone = make_base(seed)
    net = FinetuneNet(backbone.model, backbone.feature_dim, backbone.preprocess, freeze=freeze, freeze_bn=freeze_bn,
                      seed=seed).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def run_condition(replicates: list[Replicate], *, bank: ImageBank, make_base: Callable[[int], Backbone],
                  config: FinetuneConfig, device: torch.device,
                  on_run: Callable[[], None] | None = None) -> ConditionOutcome:
    """Train every grid setting on every replicate; keep the chosen setting's runs.

    Runs go setting by setting; only the weights of the best setting so far are held, so
    memory stays at two models per replicate.
    """
    rows, best_runs, best_loss = [], None, math.inf
    setup_seconds = train_seconds = 0.0
    for settings in config.settings():
        runs = []
        for rep in replicates:
            began = time.perf_counter()
            net = build_net(make_base, rep.spec.seed, freeze=config.freeze, freeze_bn=config.freeze_bn, device=device)
            tensors = _gather(rep, bank)
            setup_seconds += time.perf_counter() - began
            run = train_run(net, *tensors, settings=settings, seed=rep.spec.seed, device=device)
            train_seconds += run.seconds
            runs.append(run)
            rows.append({"lr": settings.lr, "weight_decay": settings.weight_decay, "seed": rep.spec.seed,
                         "val_loss": run.val_loss, "best_epoch": run.best_epoch, "diverged": run.diverged,
                         "seconds": run.seconds})
            if on_run is not None:
                on_run()
        mean_loss = float(np.mean([r.val_loss for r in runs]))
        if math.isfinite(mean_loss) and mean_loss < best_loss:  # the same rule as select_setting
            best_runs, best_loss = runs, mean_loss
    trials = pd.DataFrame(rows)
    selection = select_setting(trials)
    return ConditionOutcome(selection, trials, replicates, best_runs, setup_seconds, train_seconds)


def _gather(rep: Replicate, bank: ImageBank):
    """Training and validation images (uint8, on the bank's device) and float labels."""
    y = torch.from_numpy(rep.labels.astype(np.float32))
    train, val = rep.rows.train, rep.rows.val
    return (bank.take(train), y[torch.from_numpy(train)].to(bank.images.device),
            bank.take(val), y[torch.from_numpy(val)].to(bank.images.device))
