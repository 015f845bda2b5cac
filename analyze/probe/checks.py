"""Input checks, devices and threads for the probe engine.

Every bad input raises :class:`ProbeInputError` with one sentence that names the problem
and the fix. It is a :class:`extract.errors.UserError` (the CLI prints it and exits 2)
and a :class:`ValueError` (what scikit-learn's estimator checks expect).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from extract import devices
from extract.errors import UserError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ProbeInputError(UserError, ValueError):
    """Bad input to a probe, explained in one sentence."""


def resolve_device(device):
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present, else CPU) -> torch.device.

    :func:`extract.devices.resolve_device` with its error raised as a :class:`ProbeInputError`.
    """
    try:
        return devices.resolve_device(device)
    except UserError as error:
        raise ProbeInputError(str(error)) from None


def resolve_dtype(dtype):
    """'float32' or 'float64' (or the torch/numpy dtype) -> torch.dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in DTYPES:
        raise ProbeInputError(f"dtype {dtype!r} is not supported; use 'float32' or 'float64'.")
    return DTYPES[name]


_CONTROLLER = []  # one ThreadpoolController: building it scans the loaded libraries (~50 ms)


@contextlib.contextmanager
def limited_threads(n_threads):
    """Run torch and every BLAS/OpenMP pool with ``n_threads`` threads, then restore.

    None leaves the current settings alone. Oversubscribed pools cost 8-12x on small
    machines (PERFORMANCE.md), and on a shared 2-core machine two torch threads measured
    2-9x slower than one, so the probe engine defaults to 1 and parallelises across
    probes instead (``n_jobs``).
    """
    if n_threads is None:
        yield
        return
    if not (isinstance(n_threads, (int, np.integer)) and n_threads >= 1):
        raise ProbeInputError(f"n_threads must be a positive integer, got {n_threads!r}; use 1 per parallel worker.")
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        with _CONTROLLER[0].limit(limits=int(n_threads)):
            yield
    finally:
        torch.set_num_threads(previous)


def as_feature_tensor(features):
    """A 2-D float feature matrix (numpy or torch) as a torch tensor, without copying."""
    if isinstance(features, np.ndarray):
        if features.dtype not in (np.float16, np.float32, np.float64):
            raise ProbeInputError(
                f"features have dtype {features.dtype}; pass a float16, float32 or float64 array.")
        with warnings.catch_warnings():  # read-only arrays (h5py, memmap) are fine: never written
            warnings.simplefilter("ignore", UserWarning)
            features = torch.from_numpy(np.ascontiguousarray(features))
    elif not isinstance(features, torch.Tensor):
        raise ProbeInputError(
            f"features must be a numpy array or torch tensor, got {type(features).__name__}; load the store matrix first.")
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ProbeInputError(
            f"features must be a non-empty 2-D matrix (rows x features), got shape {tuple(features.shape)}.")
    if not features.is_floating_point():
        raise ProbeInputError(f"features have dtype {features.dtype}; pass a floating-point matrix.")
    return features


def check_cs(Cs):
    """Positive finite regularisation values, sorted ascending (strong to weak)."""
    values = np.asarray(Cs, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ProbeInputError(f"Cs must be a non-empty list of positive finite numbers, got {Cs!r}.")
    return np.unique(values)


def check_rows(rows, n_rows, *, what, allow_empty=False):
    """Row positions into the feature matrix as int64, checked against its height."""
    positions = np.empty(0, dtype=np.int64) if rows is None else np.asarray(rows)
    if positions.ndim != 1 or (positions.size and not np.issubdtype(positions.dtype, np.integer)):
        raise ProbeInputError(f"{what} must be a 1-D array of integer row positions, got shape "
                              f"{positions.shape} and dtype {positions.dtype}.")
    if positions.size == 0 and not allow_empty:
        raise ProbeInputError(f"{what} is empty; give it at least one row of each class.")
    positions = positions.astype(np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= n_rows):
        raise ProbeInputError(f"{what} has row positions outside 0..{n_rows - 1}; index rows of the feature matrix.")
    return positions


def check_labels(labels, n_rows, *, what):
    """Labels for every row of the matrix (0/1 where used; other values are ignored)."""
    values = np.asarray(labels)
    if values.ndim != 1 or values.shape[0] != n_rows:
        raise ProbeInputError(f"{what} must have one label per feature row ({n_rows}), got shape {values.shape}.")
    return values


def binary_labels(labels, rows, *, what, need_both):
    """The 0/1 labels of ``rows`` as float64; both classes required when ``need_both``."""
    picked = labels[rows]
    if picked.size and not np.all((picked == 0) | (picked == 1)):
        raise ProbeInputError(f"{what} has labels other than 0 and 1; binarise the target first.")
    picked = picked.astype(np.float64)
    if need_both and (picked.size == 0 or picked.min() == picked.max()):
        raise ProbeInputError(f"{what} has only one class; a probe needs positive and negative rows.")
    return picked
