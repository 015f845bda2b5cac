"""A pretraining run's options as two objects, each passed whole to :func:`extract.pretrain.train.pretrain_base`.

:class:`PretrainModel`
    What is trained: architecture, its keyword arguments, image size, starting point (a
    recipe's ``[model]`` section).
:class:`PretrainConfig`
    How it is trained: epochs, batch size, learning rate and schedule, weight decay, seed,
    validation share, generalist factors, frozen BatchNorm statistics (a recipe's
    ``[train]`` section, less the role checks' ``max_control_phi`` and
    ``max_factor_dependence``).

Both validate themselves on construction, naming the field in backticks, and parse a recipe
section with ``from_mapping(section, where="recipe.toml [train]")``, whose errors start with
the file and section.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import numpy as np

from extract.backbones import ARCHITECTURES
from extract.errors import UserError
from extract.parsing import FromMapping

SCHEDULES = ("cosine", "constant")
DEFAULT_ARCH_KWARGS = {"smallcnn": {"width": 16}}


def check_number(name: str, value, *, integer: bool, allow_zero: bool = False):
    """``value`` as an int (``integer``) or float, > 0 (>= 0 with ``allow_zero``), else a UserError naming ``name``."""
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"`{name}` must be {kind} {bound} (got {value!r}).")
    return int(value) if integer else float(value)


def resolve_arch(arch: str, arch_kwargs: dict | None) -> tuple[str, dict]:
    """The architecture name, checked, and its keyword arguments (defaults filled in)."""
    if arch not in ARCHITECTURES:
        close = difflib.get_close_matches(str(arch), list(ARCHITECTURES), n=2)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown architecture {arch!r}; {hint}choose one of {sorted(ARCHITECTURES)}.")
    kwargs = dict(DEFAULT_ARCH_KWARGS.get(arch, {}))
    kwargs.update(arch_kwargs or {})
    return arch, kwargs


@dataclass(frozen=True)
class PretrainModel(FromMapping):
    """The network a base trains.

    Parameters
    ----------
    arch : str, default="smallcnn"
        Architecture (:data:`extract.backbones.ARCHITECTURES`).
    arch_kwargs : dict, optional
        Its keyword arguments (defaults filled in), e.g. ``{"width": 16}``.
    image_size : int, optional
        Train at this square side (default: the data's own size).
    init : str, optional
        Registry backbone whose local weights are the starting point (e.g.
        ``"efficientnet_lite0.imagenet"``); default: random initialisation from ``seed``.
    """

    arch: str = "smallcnn"
    arch_kwargs: dict | None = None
    image_size: int | None = None
    init: str | None = None

    def __post_init__(self):
        if self.arch_kwargs is not None and not isinstance(self.arch_kwargs, dict):
            raise UserError(f"`arch_kwargs` must be a table of keyword arguments, got {self.arch_kwargs!r}.")
        resolve_arch(self.arch, self.arch_kwargs)
        if self.image_size is not None:
            check_number("image_size", self.image_size, integer=True)
        if self.init is not None and (not isinstance(self.init, str) or not self.init):
            raise UserError(f"`init` must be a registry name such as 'efficientnet_lite0.imagenet', got {self.init!r}.")


@dataclass(frozen=True)
class PretrainConfig(FromMapping):
    """How a base is trained (module docstring of :mod:`extract.pretrain.train`).

    Parameters
    ----------
    epochs : int, default=4
    batch_size : int, default=64
    lr : float, default=0.05
        SGD learning rate (momentum 0.9).
    weight_decay : float, default=5e-4
    schedule : {"cosine", "constant"}, default="cosine"
        Per-step cosine decay to 0, or the paper's constant rate.
    seed : int, default=0
        Initialisation, validation carve, shuffling and flips.
    val_fraction : float in [0, 1), default=0.2
        Share of the rows held out for validation.
    factors : list of str or dict, optional
        Generalist factor heads (avatars; :mod:`extract.datasets.avatars.factors`).
    factor_weight : float, default=1.0
        Weight of the generalist task's loss.
    freeze_bn : bool, default=False
        Keep the starting point's BatchNorm statistics while training.
    temperature : float, default=0.5
        NT-Xent temperature of a contrastive (``simclr``) base; unused by supervised bases
        (0.5: SimCLR's best value at small batch sizes on CIFAR-10).
    projection_dim : int, default=128
        Output size of a contrastive base's projection head (SimCLR's 128); the head is
        dropped when the base is saved.
    """

    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    val_fraction: float = 0.2
    factors: tuple | dict | None = None
    factor_weight: float = 1.0
    freeze_bn: bool = False
    temperature: float = 0.5
    projection_dim: int = 128

    def __post_init__(self):
        check_number("epochs", self.epochs, integer=True)
        check_number("batch_size", self.batch_size, integer=True)
        check_number("lr", self.lr, integer=False)
        check_number("weight_decay", self.weight_decay, integer=False, allow_zero=True)
        check_number("seed", self.seed, integer=True, allow_zero=True)
        if check_number("val_fraction", self.val_fraction, integer=False, allow_zero=True) >= 1:
            raise UserError(f"`val_fraction` must be below 1 (got {self.val_fraction}); use 0.2 to validate on a fifth "
                            "of the rows.")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown learning-rate schedule {self.schedule!r}; set `schedule` to one of "
                            f"{list(SCHEDULES)}.")
        check_number("factor_weight", self.factor_weight, integer=False, allow_zero=True)
        if not isinstance(self.freeze_bn, bool):
            raise UserError(f"`freeze_bn` must be true or false, got {self.freeze_bn!r}.")
        check_number("temperature", self.temperature, integer=False)
        check_number("projection_dim", self.projection_dim, integer=True)
        if isinstance(self.factors, list):
            object.__setattr__(self, "factors", tuple(self.factors))


__all__ = ["DEFAULT_ARCH_KWARGS", "SCHEDULES", "PretrainConfig", "PretrainModel", "check_number", "resolve_arch"]
