"""Option groups that travel together through the analysis stages, each passed whole.

A runner takes its data as arguments and its options as one of these frozen objects, as
nanoGPT's ``GPTConfig`` or scikit-learn's estimator hyperparameters: a grid file parses into
them once, the command line builds them from flags, and adding an option edits one class
instead of every signature it passes through. Each validates itself on construction, naming
the field in backticks (the command line maps the name to its flag).

:class:`EvalConfig`
    How a trained model is scored: threshold policy, competence floor, group column.
:class:`RunContext`
    Where and how a stage writes: output folder, overwrite, progress bars.

Every group has ``from_mapping(mapping, where=...)``, which builds it from one section of a
grid or recipe file (lists become tuples) and names the file and key in its errors:
``grid.toml [probe]: `Cs` must be ...``.

The runners' own groups live beside them (``FinetuneConfig`` in
:mod:`analyze.finetune.search`, the probe's in :mod:`analyze.probe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from extract.errors import UserError
from extract.parsing import FromMapping
from extract.parsing import config_from_mapping  # noqa: F401 (re-exported)

# The values live in analyze.metrics (threshold.POLICIES, diagnosis.DEFAULT_AUC_FLOOR); they are
# repeated here so that building a config imports neither pandas nor the metrics package.
THRESHOLD_POLICIES = ("top_p", "top_p_reference", "val_top_p", "fixed")
AUC_FLOOR = 0.65


@dataclass(frozen=True)
class EvalConfig(FromMapping):
    """How every model of a stage is scored.

    Parameters
    ----------
    policy : {"top_p", "top_p_reference", "val_top_p", "fixed"}, default="top_p"
        Threshold policy of the FPR/TPR metrics (docs/science.md section 3).
    auc_floor : float in [0.5, 1), default=0.65
        Test AUC under which a cell is flagged ``weak_task``.
    sensitive : str, optional
        Group column of the metrics (default: each cell's own ``sensitive``).
    """

    policy: str = "top_p"
    auc_floor: float = AUC_FLOOR
    sensitive: str | None = None

    def __post_init__(self):
        if self.policy not in THRESHOLD_POLICIES:
            raise UserError(f"Unknown threshold policy {self.policy!r}; set `policy` to one of {THRESHOLD_POLICIES}.")
        floor = self.auc_floor
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor) or not 0.5 <= floor < 1:
            raise UserError(f"`auc_floor` must be a number in [0.5, 1), got {floor!r}.")
        object.__setattr__(self, "auc_floor", float(floor))
        if self.sensitive is not None and (not isinstance(self.sensitive, str) or not self.sensitive):
            raise UserError(f"`sensitive` must be a column name, got {self.sensitive!r}.")


@dataclass(frozen=True)
class RunContext(FromMapping):
    """Where a stage writes and how it reports.

    Parameters
    ----------
    out : path, optional
        Folder of the stage's records (None: nothing written, results returned only).
    overwrite : bool, default=False
        Replace records that already exist (default: keep them and skip their cells).
    progress : bool, default=True
        Show progress bars on standard error.
    """

    out: Path | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.out is not None:
            if not isinstance(self.out, (str, Path)):
                raise UserError(f"`out` must be a folder path, got {self.out!r}.")
            object.__setattr__(self, "out", Path(self.out))
        for name in ("overwrite", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"`{name}` must be true or false, got {getattr(self, name)!r}.")
