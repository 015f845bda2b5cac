"""Fit many linear probes at once, each on its own rows of one feature matrix.

A probe is scikit-learn's ``LogisticRegression(C=C)`` (L2 penalty, unpenalised intercept,
objective ``C * sum_i logloss_i + ||w||^2 / 2``) fitted on the ``train`` rows of its
:class:`ProbeTask`, with ``C`` chosen on its ``val`` rows, then scored on test rows.

How (see PERFORMANCE.md and ``probe_solver``):

* probes are fitted in batches by one batched L-BFGS (``solve_logistic``); the rows of a
  batch are gathered once into a (P, n, d) tensor, padded with zero-weight rows;
* the C grid runs as all C values at once sharing each gathered row block
  (``path="joint"``, default: one read of the rows serves every C), or as a path from
  strong to weak regularisation, each C warm-started from the previous solution
  (``path="warm"``, as ``LogisticRegressionCV`` does; 1.6-1.9x slower here);
* probes that are done leave the batch (the slowest probe no longer gates the others);
* a spectral preconditioner estimated once from the rows of all probes cuts iterations
  2-4x on CNN features without changing the solutions;
* CPU batches are sized to stay in cache (rows plus solver state, so batches of small
  training sets hold more probes); CUDA batches to a share of free memory;
* each distinct set of test rows (e.g. a store's test split, shared by every cell) is
  gathered and converted chunk by chunk once per call and scored for all its probes with
  one matrix product per chunk: memory does not grow with probes x test rows.

Features are used as given (no standardisation), as scikit-learn does, so coefficients and
C values are directly comparable with ``LogisticRegression`` fitted on the same matrix.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

import analyze.probe.checks as checks
import analyze.probe.scoring as scoring
from analyze.probe.precondition import PRECONDITIONER_ROWS, SpectralPreconditioner
from analyze.probe.solver import HISTORY_SIZE, SolverResult, solve_logistic

# sklearn's LogisticRegressionCV default grid is logspace(-4, 4, 10); probes on CNN
# features rarely want C > 100, and every extra C costs a full fit.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
SELECTION_RULES = ("val_loss", "auc")
PATHS = ("warm", "joint")
# Gathered rows and solver state per CPU batch: 64 MB keeps a batch in the last-level cache.
CPU_BATCH_BYTES = 64 * 2**20
# Share of free GPU memory a batch's gathered rows may use (the rest: iterates, history).
GPU_BATCH_SHARE = 0.25
MAX_BATCH_SIZE = 1024
# Vectors of length d + 1 the solver keeps per problem: 2 x HISTORY_SIZE L-BFGS pairs and
# about ten iterates, gradients and directions.
SOLVER_STATE_VECTORS = 2 * HISTORY_SIZE + 10


@dataclass(frozen=True)
class ProbeTask:
    """One probe: row positions into the feature matrix and, optionally, its own labels.

    Attributes
    ----------
    train : array-like of int, shape (n_train,)
        Training rows (both classes present).
    val : array-like of int, shape (n_val,), optional
        Validation rows that choose C; may be empty only with a single C.
    labels : array-like of int, shape (n_rows,), optional
        0/1 label of every row of the matrix (other values allowed on unused rows);
        defaults to ``fit_probes(labels=...)``.
    test : array-like of int, shape (n_test,), optional
        Rows to score; defaults to ``fit_probes(test=...)``.
    """

    train: np.ndarray
    val: np.ndarray | None = None
    labels: np.ndarray | None = None
    test: np.ndarray | None = None


@dataclass(frozen=True)
class ProbeResults:
    """Probes fitted by :func:`fit_probes`, in task order (P probes, K values of C).

    Attributes
    ----------
    Cs : ndarray of shape (K,)
        The C grid, ascending (strong to weak regularisation).
    C : ndarray of shape (P,)
        Chosen C of each probe; ``C_index`` (P,) is its position in ``Cs``.
    coef, intercept : ndarray of shape (P, d) and (P,)
        The probe at its chosen C, fitted on its training rows (no refit on val rows).
    val_loss, val_auc : ndarray of shape (P, K)
        Mean validation log-loss (natural log) and ROC AUC of each C (NaN without
        validation rows; AUC NaN when they hold one class).
    n_iter : ndarray of shape (P, K)
        L-BFGS iterations of each fit.
    converged : ndarray of shape (P, K)
        Whether each fit met the gradient tolerance.
    test_scores : tuple of P ndarrays of shape (n_test,)
        Decision function ``x @ coef + intercept`` on each probe's test rows, in the order
        given: higher means more likely label 1.
    seconds : float
        Wall time of the call.
    """

    Cs: np.ndarray
    C: np.ndarray
    C_index: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    val_loss: np.ndarray
    val_auc: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    test_scores: tuple
    seconds: float

    def test_score_matrix(self):
        """Test scores stacked to shape (P, n_test); needs equal test sizes."""
        sizes = {len(scores) for scores in self.test_scores}
        if len(sizes) > 1:
            raise checks.ProbeInputError(
                "probes have test sets of different sizes; use test_scores one probe at a time.")
        return np.stack(self.test_scores)


@dataclass(frozen=True)
class _Checked:
    """One task after validation: int64 rows and float64 0/1 labels."""

    train: np.ndarray
    y_train: np.ndarray
    val: np.ndarray
    y_val: np.ndarray
    test: np.ndarray
    shared_test: bool


def fit_probes(features, tasks, *, labels=None, test=None, Cs=DEFAULT_CS, select="val_loss",
               path="joint", tol=1e-6, max_iter=1000, fit_intercept=True, precondition=True,
               device="cpu", dtype="float32", batch_size=None, n_threads=1, n_jobs=1):
    """Fit one L2 logistic probe per task, choose its C on validation rows, score test rows.

    Parameters
    ----------
    features : ndarray or torch.Tensor of shape (n_rows, d)
        One feature matrix (float16/32/64), e.g. a whole feature store; never copied
        whole (a CUDA tensor stays on the GPU and rows are gathered there).
    tasks : sequence of ProbeTask
        The probes, P of them.
    labels : array-like of shape (n_rows,), optional
        0/1 labels of every row, for tasks without their own ``labels``.
    test : array-like of int, optional
        Shared test rows, for tasks without their own ``test``.
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
    device : {"cpu", "cuda", "auto"}, default="cpu"
    dtype : {"float32", "float64"}, default="float32"
        Compute precision; float32 meets ``tol`` down to about 1e-7.
    batch_size : int, optional
        Probes per batch; by default sized to the device (CPU: 64 MB of rows and solver state).
    n_threads : int or None, default=1
        Torch/BLAS threads per batch (restored afterwards); None keeps the current
        setting. One thread measured 2-9x faster than two on a shared 2-core machine;
        parallelise with ``n_jobs`` instead.
    n_jobs : int, default=1
        Batches fitted in parallel by this many threads, each with ``n_threads`` torch
        threads: parallelism across probes without oversubscription. Results do not
        depend on it.

    Returns
    -------
    ProbeResults
    """
    start = time.perf_counter()
    matrix = checks.as_feature_tensor(features)
    grid = checks.check_cs(Cs)
    if select not in SELECTION_RULES:
        raise checks.ProbeInputError(f"select must be one of {SELECTION_RULES}, got {select!r}.")
    if path not in PATHS:
        raise checks.ProbeInputError(f"path must be one of {PATHS}, got {path!r}.")
    _check_budget(tol, max_iter, batch_size, n_jobs)
    checked = _check_tasks(tasks, matrix.shape[0], labels, test, n_cs=len(grid), select=select)
    device, compute = checks.resolve_device(device), checks.resolve_dtype(dtype)
    n_jobs = n_jobs or 1
    with checks.limited_threads(n_threads), torch.no_grad():
        matrix = _place(matrix, device)
        preconditioner = _preconditioner(matrix, checked, device, compute) if precondition else None
        problems = len(grid) if path == "joint" else 1
        batches = _batches(checked, batch_size, _batch_budget(device), matrix.shape[1], compute, problems)
        options = dict(tol=tol, max_iter=max_iter, fit_intercept=fit_intercept,
                       preconditioner=preconditioner, path=path)
        parts = _fit_in_batches(matrix, checked, grid, select, device, compute, options, batches=batches, n_jobs=n_jobs)
        _score_tests(matrix, checked, parts, device, compute)
    results = _assemble(parts, grid, time.perf_counter() - start)
    if not results.converged.all():
        warnings.warn(
            f"{int((~results.converged).sum())} of {results.converged.size} probe fits did not reach "
            f"tol={tol} in max_iter={max_iter} iterations; raise max_iter or use dtype='float64'.",
            ConvergenceWarning, stacklevel=2)
    return results


def _fit_in_batches(matrix, checked, grid, select, device, compute, options, *, batches, n_jobs):
    """Fit the probes batch by batch (see :func:`_batches`), ``n_jobs`` batches at once.

    Returns ``{task index: fitted part}``.
    """

    def fit_batch(members):
        with torch.no_grad():  # grad mode is per thread
            return members, _fit_batch(matrix, [checked[i] for i in members], members, grid,
                                       select, device, compute, options)

    with ThreadPoolExecutor(n_jobs) as pool:
        fitted = list(pool.map(fit_batch, batches)) if n_jobs > 1 else map(fit_batch, batches)
        return {int(i): part for members, found in fitted for i, part in zip(members, found)}


def _check_budget(tol, max_iter, batch_size, n_jobs):
    if not (isinstance(tol, (int, float)) and np.isfinite(tol) and tol > 0):
        raise checks.ProbeInputError(f"tol must be a positive number, got {tol!r}.")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise checks.ProbeInputError(f"max_iter must be a positive integer, got {max_iter!r}.")
    if batch_size is not None and not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise checks.ProbeInputError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    if n_jobs is not None and not (isinstance(n_jobs, (int, np.integer)) and n_jobs >= 1):
        raise checks.ProbeInputError(f"n_jobs must be a positive integer or None, got {n_jobs!r}.")


def _check_tasks(tasks, n_rows, labels, test, *, n_cs, select):
    """Validate every task; returns a list of _Checked."""
    tasks = list(tasks) if not isinstance(tasks, ProbeTask) else [tasks]
    if not tasks:
        raise checks.ProbeInputError("tasks is empty; give at least one ProbeTask.")
    shared_labels = None if labels is None else checks.check_labels(labels, n_rows, what="labels")
    shared_test = checks.check_rows(test, n_rows, what="test", allow_empty=True)
    checked = []
    for number, task in enumerate(tasks):
        name = f"task {number}"
        if not isinstance(task, ProbeTask):
            raise checks.ProbeInputError(f"{name} is a {type(task).__name__}; build tasks with ProbeTask(train=..., val=...).")
        if task.labels is None and shared_labels is None:
            raise checks.ProbeInputError(f"{name} has no labels; pass labels= to fit_probes or set ProbeTask.labels.")
        task_labels = shared_labels if task.labels is None else checks.check_labels(
            task.labels, n_rows, what=f"{name} labels")
        train = checks.check_rows(task.train, n_rows, what=f"{name} train rows")
        val = checks.check_rows(task.val, n_rows, what=f"{name} val rows", allow_empty=n_cs == 1)
        task_test = shared_test if task.test is None else checks.check_rows(
            task.test, n_rows, what=f"{name} test rows", allow_empty=True)
        checked.append(_Checked(
            train=train,
            y_train=checks.binary_labels(task_labels, train, what=f"{name} train rows", need_both=True),
            val=val,
            y_val=checks.binary_labels(task_labels, val, what=f"{name} val rows",
                                       need_both=select == "auc" and n_cs > 1),
            test=task_test,
            shared_test=task.test is None,
        ))
    return checked


def _place(matrix, device):
    """Move the whole matrix to the GPU when it fits in half its free memory."""
    if device.type != "cuda" or matrix.device == device:
        return matrix
    free, _ = torch.cuda.mem_get_info(device)
    nbytes = matrix.element_size() * matrix.numel()
    return matrix.to(device) if nbytes < free / 2 else matrix


def _gather(matrix, rows, device, compute):
    """Rows (P, m) of int64 -> features (P, m, d) on ``device`` in ``compute`` dtype."""
    index = torch.from_numpy(rows).to(matrix.device)
    block = matrix.index_select(0, index.reshape(-1)).reshape(*rows.shape, matrix.shape[1])
    return block.to(device=device, dtype=compute)


def _padded(parts, fill):
    """Ragged 1-D arrays -> (P, m) array padded with ``fill``, and a (P, m) 0/1 mask."""
    width = max(1, max(len(part) for part in parts))
    out = np.full((len(parts), width), fill, dtype=np.result_type(*parts, np.asarray(fill)))
    mask = np.zeros((len(parts), width))
    for row, part in enumerate(parts):
        out[row, :len(part)] = part
        mask[row, :len(part)] = 1.0
    return out, mask


def _check_finite(block, mask, numbers):
    # One pass: a row sum is NaN or inf exactly when the row holds NaN or inf (barring overflow).
    bad = ~torch.isfinite(block.sum(-1)) & (torch.from_numpy(mask).to(block.device) > 0)
    if bool(bad.any()):
        task = int(numbers[int(bad.any(1).nonzero()[0, 0])])
        raise checks.ProbeInputError(
            f"features contain NaN or inf in training rows of task {task}; drop or impute those rows.")


def _batch_budget(device):
    """Bytes one batch may use: a share of free GPU memory, or ``CPU_BATCH_BYTES``."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] * GPU_BATCH_SHARE
    return CPU_BATCH_BYTES


def _batches(checked, batch_size, budget, width, compute, problems):
    """Task numbers in batches, smallest training sets first.

    With ``batch_size`` every batch holds that many probes. Otherwise each batch takes as
    many probes as fit in ``budget`` bytes: a probe costs its gathered rows plus the
    solver's state for its ``problems`` values of C (L-BFGS pairs and a few vectors), so a
    batch of small training sets holds more probes than one of large sets.
    """
    sizes = np.array([len(task.train) for task in checked])
    order = np.argsort(sizes, kind="stable")
    if batch_size is not None:
        return [order[first:first + batch_size] for first in range(0, len(order), batch_size)]
    itemsize = torch.finfo(compute).bits // 8
    state = problems * SOLVER_STATE_VECTORS * (width + 1) * itemsize
    batches, first = [], 0
    for stop in range(1, len(order) + 1):
        per_probe = int(sizes[order[stop - 1]]) * width * itemsize + state  # the largest so far
        if stop - first > 1 and ((stop - first) * per_probe > budget or stop - first > MAX_BATCH_SIZE):
            batches.append(order[first:stop - 1])
            first = stop - 1
    batches.append(order[first:])
    return batches


def _preconditioner(matrix, checked, device, compute):
    """Spectral preconditioner from evenly spaced rows of all training sets."""
    union = np.unique(np.concatenate([task.train for task in checked]))
    picks = union[np.linspace(0, len(union) - 1, min(len(union), PRECONDITIONER_ROWS)).astype(np.int64)]
    sample = _gather(matrix, picks[None], device, compute)[0]
    if not bool(torch.isfinite(sample).all()):
        return None  # the per-batch check names the task
    return SpectralPreconditioner.from_rows(sample)


def _fit_batch(matrix, tasks, numbers, grid, select, device, compute, options):
    """Fit and validate one batch; returns per-probe dicts (test rows are scored afterwards)."""
    rows, weights = _padded([task.train for task in tasks], 0)
    labels, _ = _padded([task.y_train for task in tasks], 0.0)
    block = _gather(matrix, rows, device, compute)
    _check_finite(block, weights, numbers)
    as_tensor = lambda values: torch.as_tensor(values, dtype=compute, device=device)  # noqa: E731
    fits = _solve_grid(block, as_tensor(labels), as_tensor(weights), as_tensor(grid), **options)
    del block

    def gather(source, padded):
        return _gather(source, padded, device, compute)

    val_scores = scoring.score_rows(matrix, [task.val for task in tasks], fits.coef, fits.intercept, gather)
    _check_scores(val_scores, numbers, "validation")
    loss, auc = scoring.validation_metrics(val_scores, [task.y_val for task in tasks])
    chosen = scoring.choose_c(loss, auc, select)
    pick, probes = torch.as_tensor(chosen, device=device), torch.arange(len(tasks), device=device)
    coef, intercept = fits.coef[probes, pick], fits.intercept[probes, pick]
    n_iter, converged = fits.n_iter.cpu().numpy(), fits.converged.cpu().numpy()
    coef, intercept = coef.cpu().numpy(), intercept.cpu().numpy()
    return [dict(C_index=chosen[p], coef=coef[p], intercept=intercept[p], val_loss=loss[p],
                 val_auc=auc[p], n_iter=n_iter[p], converged=converged[p], test_scores=None)
            for p in range(len(tasks))]


def _score_tests(matrix, checked, parts, device, compute):
    """Score every probe on its test rows (in place): one pass over each distinct test set.

    Probes whose test rows are the same rows (the shared ``test``, or equal own rows, as
    when every cell of a store is scored on its test split) are scored together: each
    chunk of those rows is gathered and converted once and scored for all of them with one
    matrix product, so the work and the memory do not grow with the number of probes
    times the test size.
    """
    groups = {}
    for i, task in enumerate(checked):
        key = (task.shared_test, len(task.test), hashlib.blake2b(task.test.tobytes(), digest_size=16).digest())
        groups.setdefault(key, []).append(i)
    gather = lambda source, padded: _gather(source, padded, device, compute)  # noqa: E731
    for (shared, width, _), members in groups.items():
        if width == 0:
            scores = np.zeros((len(members), 0), dtype=np.float32)
        else:
            coef = torch.as_tensor(np.stack([parts[i]["coef"] for i in members]), device=device)
            intercept = torch.as_tensor(np.array([parts[i]["intercept"] for i in members]), device=device)
            scores = scoring.score_shared_rows(matrix, checked[members[0]].test, coef, intercept, gather)
        bad = ~np.isfinite(scores).all(axis=1)
        if bad.any() and shared:
            raise checks.ProbeInputError("features contain NaN or inf in the shared test rows; drop or impute those rows.")
        if bad.any():
            raise checks.ProbeInputError(
                f"features contain NaN or inf in test rows of task {members[int(np.argmax(bad))]}; "
                "drop or impute those rows.")
        for position, i in enumerate(members):
            parts[i]["test_scores"] = scores[position] if shared else scores[position].astype(np.float32)


def _check_scores(scores, numbers, what):
    """Non-finite scores from finite coefficients mean NaN or inf in those feature rows."""
    for probe, score in enumerate(scores):
        if not np.all(np.isfinite(score)):
            raise checks.ProbeInputError(
                f"features contain NaN or inf in {what} rows of task {int(numbers[probe])}; "
                "drop or impute those rows.")


def _solve_grid(block, labels, weights, grid, *, path, **solver_options):
    """All C values of a batch: warm-started path (ascending C) or one joint solve."""
    n_probes = block.shape[0]
    if path == "joint":
        return solve_logistic(block, labels, weights, grid.expand(n_probes, -1).contiguous(), **solver_options)
    coef = intercept = None
    steps = []
    for value in grid:
        step = solve_logistic(block, labels, weights, value.expand(n_probes, 1).contiguous(),
                              coef=coef, intercept=intercept, **solver_options)
        coef, intercept = step.coef, step.intercept
        steps.append(step)
    return SolverResult(*(torch.cat([getattr(step, name) for step in steps], dim=1)
                          for name in ("coef", "intercept", "n_iter", "converged")))


def _assemble(parts, grid, seconds):
    """Per-probe dicts (keyed by task number) -> ProbeResults in task order."""
    ordered = [parts[i] for i in range(len(parts))]
    stack = lambda key: np.stack([part[key] for part in ordered])  # noqa: E731
    index = stack("C_index").astype(np.int64)
    return ProbeResults(
        Cs=grid, C=grid[index], C_index=index, coef=stack("coef"), intercept=stack("intercept"),
        val_loss=stack("val_loss"), val_auc=stack("val_auc"), n_iter=stack("n_iter"),
        converged=stack("converged"), test_scores=tuple(part["test_scores"] for part in ordered),
        seconds=seconds)
