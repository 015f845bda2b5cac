"""The learning-rate x weight-decay grid of a finetuning condition, searched on validation loss.

A *condition* is a set of replicate cells: subset specs that differ only in their seed
(e.g. ``Correlation("hat", "dark_skin", 0.8, n=256, seed=s)`` for s = 0..4). Every grid
setting is trained on every replicate (the replicate's own training rows, seed and
validation rows), each run keeping its best epoch. The chosen setting is the one with the
**lowest mean best-epoch validation loss over the replicates** (docs/science.md section 10: the
released code's "duplicate-robustness" rule inverted this); a setting where any replicate
diverged is invalid. The chosen setting's runs *are* the condition's replicates: no run
is repeated after the search.

Every run of a condition (and of several conditions, :func:`run_conditions`) is trained by
the config's ``engine``: ``"batched"`` (default) stacks runs of equal shape into one model
(:mod:`analyze.finetune.engine`), ``"loop"`` trains them one at a time
(:func:`analyze.finetune.train.train_run`, the reference).
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
from analyze.finetune.engine import Job, choose_models, group_jobs, train_stack
from analyze.finetune.train import (
    SCHEDULES,
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
ENGINES = ("auto", "batched", "loop")
# the default training (docs/science.md section 10): a constant rate for the whole budget. Warm-up and
# cosine decay over a 30-epoch budget with patience 5 flagged fewer demo cells (3/12 against 7/12 at
# 32 px) but at a lower mean test AUC (0.718 against 0.751), so it is not the default
DEFAULT_EPOCHS = 5
DEFAULT_SCHEDULE = "constant"
DEFAULT_PATIENCE = 0
#: What a run trained with before ``schedule`` and ``patience`` existed (records without those keys):
#: the settings digest omits them at exactly these values, so only records trained that way stay valid.
LEGACY_TRAINING = {"schedule": "constant", "patience": 0}


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
        The epoch budget (maximum epochs); the best validation epoch is kept.
    batch_size, momentum, flip
        SGD batch size, momentum, random horizontal flips during training.
    freeze : int
        Freeze the stem and the first ``freeze`` stages (0 = train everything).
    freeze_bn : bool
        Keep the base's BatchNorm statistics (layers in eval mode while training).
    schedule : {"constant", "cosine"}
        Learning rate over the run: constant, or a linear warm-up then a cosine decay to zero
        at the end of the budget (:func:`analyze.finetune.train.lr_factor`).
    patience : int
        Stop a run after this many epochs without a lower validation loss (0: train every
        epoch); the best epoch is kept either way. With a patience a run ends inside its
        budget unless it is still improving when the budget runs out, the case the
        ``epochs_at_edge`` diagnosis then flags (docs/science.md section 10).
    engine : {"auto", "batched", "loop"}
        Train runs of one shape together as one batched model (:mod:`analyze.finetune.engine`),
        or one at a time (the reference); results agree to rounding. ``"auto"``: batched on a
        GPU, the loop on the CPU, where the stack measured slower (:func:`resolve_engine`).
    """

    lrs: tuple[float, ...] = DEFAULT_LRS
    weight_decays: tuple[float, ...] = DEFAULT_WEIGHT_DECAYS
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 64
    momentum: float = 0.9
    flip: bool = True
    freeze: int = 0
    freeze_bn: bool = False
    schedule: str = DEFAULT_SCHEDULE
    patience: int = DEFAULT_PATIENCE
    engine: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "lrs", _positive_floats("learning rate", self.lrs, allow_zero=False))
        object.__setattr__(self, "weight_decays", _positive_floats("weight decay", self.weight_decays, allow_zero=True))
        for name, low in (("epochs", 1), ("batch_size", 2), ("freeze", 0), ("patience", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise UserError(f"{name} must be an integer >= {low}, got {value!r}.")
        if not isinstance(self.freeze_bn, bool):
            raise UserError(f"freeze_bn must be true or false, got {self.freeze_bn!r}.")
        if not 0 <= float(self.momentum) < 1:
            raise UserError(f"momentum must lie in [0, 1), got {self.momentum!r}.")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown learning-rate schedule {self.schedule!r}; set `schedule` to one of {SCHEDULES}.")
        if self.engine not in ENGINES:
            raise UserError(f"unknown finetune engine {self.engine!r}; set `engine` to one of {ENGINES}.")

    def settings(self) -> list[RunSettings]:
        """Every grid point, learning rate major."""
        return [RunSettings(lr=lr, weight_decay=wd, epochs=self.epochs, batch_size=self.batch_size,
                            momentum=self.momentum, flip=self.flip, schedule=self.schedule,
                            patience=int(self.patience))
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
    """Train every grid setting on every replicate; keep the chosen setting's runs."""
    return run_conditions([replicates], bank=bank, make_base=make_base, config=config, device=device,
                          on_run=on_run)[0]


def run_conditions(conditions: Sequence[list[Replicate]], *, bank: ImageBank, make_base: Callable[[int], Backbone],
                   config: FinetuneConfig, device: torch.device,
                   on_run: Callable[[], None] | None = None) -> list[ConditionOutcome]:
    """Search the grid of several conditions at once (their runs share the engine's stacks).

    Every (condition, setting, replicate) run is trained by ``config.engine``; each
    condition's setting is then chosen by :func:`select_setting` and its runs kept.
    """
    began = time.perf_counter()
    grid = config.settings()
    jobs = [_job(rep, settings, bank) for replicates in conditions for settings in grid for rep in replicates]
    runs = TRAINERS[resolve_engine(config.engine, device)](jobs, bank=bank, make_base=make_base, config=config, device=device, on_run=on_run)
    shared_setup = max(0.0, time.perf_counter() - began - sum(r.seconds for r in runs)) / max(1, len(conditions))
    outcomes, start = [], 0
    for replicates in conditions:
        mine = runs[start:start + len(grid) * len(replicates)]
        start += len(mine)
        trials = pd.DataFrame([{"lr": s.lr, "weight_decay": s.weight_decay, "seed": rep.spec.seed,
                                "val_loss": run.val_loss, "best_epoch": run.best_epoch, "diverged": run.diverged,
                                "seconds": run.seconds}
                               for (s, rep), run in zip([(s, r) for s in grid for r in replicates], mine)])
        selection = select_setting(trials)
        at = next(i for i, s in enumerate(grid) if (s.lr, s.weight_decay) == (selection.lr, selection.weight_decay))
        chosen = mine[at * len(replicates):(at + 1) * len(replicates)]
        outcomes.append(ConditionOutcome(selection, trials, list(replicates), chosen, shared_setup,
                                         float(sum(r.seconds for r in mine))))
    return outcomes


def _job(rep: Replicate, settings: RunSettings, bank: ImageBank) -> Job:
    """A run of ``rep`` under ``settings``: its bank positions and float labels (on the bank's device)."""
    y = torch.from_numpy(rep.labels.astype(np.float32))
    train, val = rep.rows.train, rep.rows.val
    device = bank.images.device
    return Job(seed=int(rep.spec.seed), train=bank.positions(train), y_train=y[torch.from_numpy(train)].to(device),
               val=bank.positions(val), y_val=y[torch.from_numpy(val)].to(device), settings=settings)


def _train_loop(jobs, *, bank, make_base, config, device, on_run) -> list[RunResult]:
    """The reference engine: one net at a time (:func:`~analyze.finetune.train.train_run`)."""
    runs = []
    for job in jobs:
        net = build_net(make_base, job.seed, freeze=config.freeze, freeze_bn=config.freeze_bn, device=device)
        images = bank.images.device
        run = train_run(net, bank.images.index_select(0, job.train.to(images)), job.y_train,
                        bank.images.index_select(0, job.val.to(images)), job.y_val, settings=job.settings,
                        seed=job.seed, device=device)
        runs.append(run)
        if on_run is not None:
            on_run()
    return runs


def _train_batched(jobs, *, bank, make_base, config, device, on_run) -> list[RunResult]:
    """The batched engine: stacks of runs of one shape (:func:`~analyze.finetune.engine.train_stack`)."""
    def net(seed):
        return build_net(make_base, seed, freeze=config.freeze, freeze_bn=config.freeze_bn, device=device)

    size = choose_models(net(jobs[0].seed), side=bank.images.shape[-1], batch_size=config.batch_size, device=device)
    runs: list[RunResult | None] = [None] * len(jobs)
    for members in group_jobs(jobs, size):
        stack = train_stack([jobs[i] for i in members], [net(jobs[i].seed) for i in members], bank=bank, on_run=on_run)
        for i, run in zip(members, stack):
            runs[i] = run
    return runs


TRAINERS = {"batched": _train_batched, "loop": _train_loop}


def resolve_engine(engine: str, device: torch.device) -> str:
    """The engine that trains: ``"auto"`` is ``"batched"`` on CUDA and ``"loop"`` on the CPU.

    On the 2-core CPU the stack of K = 4 Lite0 models trained at 0.49x the loop's images/s at
    64 px and 1.04x at 32 px, each at its best thread count (``benchmarks/finetune.py``); a
    vmapped convolution is a grouped one, which the CPU runs no faster per image.
    """
    if engine == "auto":
        return "batched" if device.type == "cuda" else "loop"
    return engine
