"""The probe's options as one object: :class:`ProbeConfig`, passed whole to every probe runner.

The C grid, the selection rule, the solver's tolerances and the device travel together from
a grid file or the command line down to :func:`analyze.probe.fit_probes`; a runner takes them
as one frozen :class:`ProbeConfig` (as scikit-learn keeps hyperparameters on the estimator),
validated once on construction with errors that name the field in backticks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from extract.parsing import FromMapping
from analyze.probe.checks import ProbeInputError

# sklearn's LogisticRegressionCV default grid is logspace(-4, 4, 10); probes on CNN
# features rarely want C > 100, and every extra C costs a full fit.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
SELECTION_RULES = ("val_loss", "auc")
PATHS = ("warm", "joint")


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class ProbeConfig(FromMapping):
    """How a batch of linear probes is fitted (:func:`analyze.probe.fit_probes`).

    Parameters
    ----------
    Cs : sequence of float, default=logspace(-4, 2, 7)
        Grid of inverse regularisation strengths (sklearn's ``C``), used ascending.
    select : {"val_loss", "auc"}, default="val_loss"
        Choose C by lowest mean validation log-loss or highest validation ROC AUC; exact
        ties go to the smaller C (stronger regularisation).
    path : {"joint", "warm"}, default="joint"
        ``"joint"``: fit all C values at once, so each read of a probe's rows serves
        every C; ``"warm"``: fit C values in ascending order, each warm-started from the
        previous solution. Same probes up to ``tol``; joint measured 1.6-1.9x faster on
        CPU (n=1024, d=2048, 7 values of C), because the fit is bound by reading rows.
    tol : float, default=1e-6
        Stop when max |gradient| of sklearn's scaled objective ``mean logloss +
        ||w||^2 / (2 C n)`` is at most ``tol`` (sklearn's lbfgs ``tol`` rule).
    max_iter : int, default=1000
        Iteration budget per fit; unconverged fits raise one ``ConvergenceWarning``.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    precondition : bool, default=True
        Use the spectral preconditioner (speed only; same solutions).
    device : {"cpu", "cuda", "auto"} or "cuda:N", default="cpu"
    dtype : {"float32", "float64"}, default="float32"
        Compute precision; float32 meets ``tol`` down to about 1e-7.
    batch_size : int, optional
        Row blocks per batch (tasks sharing their rows count once); by default sized to the
        device (CPU: 64 MB of rows and solver state).
    n_threads : int or None, default=1
        Torch/BLAS threads per batch (restored afterwards); None keeps the current
        setting. One thread measured 2-9x faster than two on a shared 2-core machine;
        parallelise with ``n_jobs`` instead.
    n_jobs : int, default=1
        Batches fitted in parallel by this many threads, each with ``n_threads`` torch
        threads: parallelism across probes without oversubscription. Results do not
        depend on it.
    share_rows : bool, default=True
        Tasks with the same training and validation rows (differing only in labels) are
        fitted on one gathered row block: each pass over the rows serves all of them.
        False fits every task on its own block (same probes up to float round-off).
    """

    Cs: tuple = DEFAULT_CS
    select: str = "val_loss"
    path: str = "joint"
    tol: float = 1e-6
    max_iter: int = 1000
    fit_intercept: bool = True
    precondition: bool = True
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int | None = None
    n_threads: int | None = 1
    n_jobs: int | None = 1
    share_rows: bool = True

    def __post_init__(self):
        object.__setattr__(self, "Cs", _checked_cs(self.Cs))
        if self.select not in SELECTION_RULES:
            raise ProbeInputError(f"`select` must be one of {SELECTION_RULES}, got {self.select!r}.")
        if self.path not in PATHS:
            raise ProbeInputError(f"`path` must be one of {PATHS}, got {self.path!r}.")
        tol = self.tol
        if isinstance(tol, bool) or not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol > 0):
            raise ProbeInputError(f"`tol` must be a positive number, got {tol!r}.")
        if not _positive_int(self.max_iter):
            raise ProbeInputError(f"`max_iter` must be a positive integer, got {self.max_iter!r}.")
        for name in ("batch_size", "n_threads", "n_jobs"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise ProbeInputError(f"`{name}` must be a positive integer or None, got {value!r}.")
        for name in ("fit_intercept", "precondition", "share_rows"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ProbeInputError(f"`{name}` must be true or false, got {getattr(self, name)!r}.")
        if not isinstance(self.device, (str, torch.device)):
            raise ProbeInputError(f"`device` must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}.")
        if str(self.dtype).replace("torch.", "") not in ("float32", "float64"):
            raise ProbeInputError(f"`dtype` {self.dtype!r} is not supported; use 'float32' or 'float64'.")


def _checked_cs(Cs) -> tuple:
    """The C grid as given, as a tuple of floats: non-empty, positive and finite."""
    try:
        values = np.asarray(Cs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ProbeInputError(f"`Cs` must be a non-empty list of positive finite numbers, got {Cs!r}.")
    return tuple(float(c) for c in values)


__all__ = ["DEFAULT_CS", "PATHS", "SELECTION_RULES", "ProbeConfig"]
