"""The options of one salience table, as one object: :class:`SalienceConfig`.

How many models, trained how and on which base, travel together from the command line (or
a reproduce preset) to :func:`analyze.salience.table.salience_table`; the probe method's C
grid comes as a :class:`~analyze.probe.ProbeConfig` and the diagnosis's floor as an
:class:`~analyze.config.EvalConfig`, beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extract.parsing import FromMapping
from extract.errors import UserError

METHODS = ("scratch", "probe")
DEFAULT_BASE = "smallcnn.scratch"


def _count(value, *, allow_none: bool, minimum: int = 1) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class SalienceConfig(FromMapping):
    """Which models a salience estimate trains, and where.

    Parameters
    ----------
    method : {"scratch", "probe"}, default="probe"
        ``"scratch"``: networks trained from random initialisation (the paper's estimator);
        ``"probe"``: linear probes on fixed features (seconds per target).
    base : str, default="smallcnn.scratch"
        ``"scratch"``: the architecture trained from random init (seeded per replicate);
        ``"probe"`` without a store: the base whose features are probed (a random-init base
        is re-initialised per replicate, from ``seed + r``).
    replicates : int, default=3
        Models per arrangement (aligned, inverted).
    seed : int, default=0
        First seed; replicate ``r`` uses ``seed + r``.
    n : int, optional
        Training rows per model (None: the whole set).
    image_size : int, optional
        Resize images to this side. Default: an avatar cache's own size; for image files the
        base's size, except that ``"scratch"`` trains at
        :data:`analyze.salience.fit.SCRATCH_IMAGE_SIZE` px (32), which keeps it to about a
        minute per target on a 1,800-image dataset on CPU.
    device : str, default="auto"
        Where models train and embed: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    training : FinetuneConfig, optional
        Training protocol of ``"scratch"`` (default :data:`analyze.salience.fit.SCRATCH_CONFIG`:
        lr 0.05, at most 6 epochs, stopping after 2 without a lower validation loss).
    """

    method: str = "probe"
    base: str = DEFAULT_BASE
    replicates: int = 3
    seed: int = 0
    n: int | None = None
    image_size: int | None = None
    device: str = "auto"
    training: object | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"`method` must be one of {METHODS}, got {self.method!r}.")
        if not isinstance(self.base, str) or not self.base:
            raise UserError(f"`base` must be a registered name or a checkpoint path, got {self.base!r}.")
        if not _count(self.replicates, allow_none=False):
            raise UserError(f"`replicates` must be a positive integer, got {self.replicates!r}.")
        if not _count(self.seed, allow_none=False, minimum=0):
            raise UserError(f"`seed` must be an integer >= 0, got {self.seed!r}.")
        for name in ("n", "image_size"):
            if not _count(getattr(self, name), allow_none=True):
                raise UserError(f"`{name}` must be a positive integer or None, got {getattr(self, name)!r}.")
        if not isinstance(self.device, str):
            raise UserError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}.")


__all__ = ["DEFAULT_BASE", "METHODS", "SalienceConfig"]
