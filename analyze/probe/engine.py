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
  2-4x on CNN features without changing the solutions (left out when the spectrum is
  nearly flat, where it costs more than it saves);
* CPU batches are sized to stay in cache (rows plus solver state, so batches of small
  training sets hold more probes); CUDA batches to a share of free memory;
* tasks with the same training and validation rows that differ only in their labels (the
  classes of a multi-label probe) share one gathered block: every pass over the rows
  serves all of them and all their values of C (``share_rows``);
* rows are gathered into buffers reused from batch to batch (a fresh 64 MB block costs
  its page faults: 43 ms against 7 ms), float16 rows converted to float32 in cached chunks;
* each distinct set of test rows (e.g. a store's test split, shared by every cell) is
  gathered and converted chunk by chunk once per call and scored for all its probes with
  one matrix product per chunk: memory does not grow with probes x test rows.

Features are used as given (no standardisation), as scikit-learn does, so coefficients and
C values are directly comparable with ``LogisticRegression`` fitted on the same matrix.
"""

from __future__ import annotations

import hashlib
import queue
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

import analyze.probe.checks as checks
import analyze.probe.scoring as scoring
from analyze.probe.config import DEFAULT_CS, PATHS, SELECTION_RULES, ProbeConfig  # noqa: F401 (re-exported)
from analyze.probe.precondition import PRECONDITIONER_ROWS, SpectralPreconditioner
from analyze.probe.solver import HISTORY_SIZE, SolverOptions, SolverResult, solve_logistic

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


def fit_probes(features, tasks, *, labels=None, test=None, config: ProbeConfig = ProbeConfig()):
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
    config : ProbeConfig, default=ProbeConfig()
        The C grid, selection rule, solver tolerances, device, precision, batching and
        parallelism (:class:`analyze.probe.ProbeConfig`, validated on construction).

    Returns
    -------
    ProbeResults
    """
    start = time.perf_counter()
    if not isinstance(config, ProbeConfig):
        raise checks.ProbeInputError(f"`config` must be a ProbeConfig, got {type(config).__name__}.")
    matrix = checks.as_feature_tensor(features)
    grid = checks.check_cs(config.Cs)
    checked = _check_tasks(tasks, matrix.shape[0], labels, test, n_cs=len(grid), select=config.select)
    device, compute = checks.resolve_device(config.device), checks.resolve_dtype(config.dtype)
    with checks.limited_threads(config.n_threads), torch.no_grad():
        matrix = _place(matrix, device)
        setup = _Setup(grid=grid, select=config.select, device=device, compute=compute, options=dict(
            path=config.path, solver=SolverOptions(fit_intercept=config.fit_intercept, tol=config.tol,
                                                   max_iter=config.max_iter),
            preconditioner=_preconditioner(matrix, checked, device, compute) if config.precondition else None))
        problems = len(grid) if config.path == "joint" else 1
        groups = _row_groups(checked) if config.share_rows else [[i] for i in range(len(checked))]
        batches = _batches(checked, groups, config.batch_size, _batch_budget(device), matrix.shape[1], compute,
                           problems)
        workspaces = [Workspace() for _ in range(config.n_jobs or 1)]
        parts = _fit_in_batches(matrix, checked, setup, batches=batches, workspaces=workspaces)
        _score_tests(matrix, checked, parts, device, compute, workspaces[0])
        del workspaces
    results = _assemble(parts, grid, time.perf_counter() - start)
    if not results.converged.all():
        warnings.warn(
            f"{int((~results.converged).sum())} of {results.converged.size} probe fits did not reach "
            f"tol={config.tol} in max_iter={config.max_iter} iterations; raise `max_iter` or use `dtype='float64'`.",
            ConvergenceWarning, stacklevel=2)
    return results


@dataclass(frozen=True)
class _Setup:
    """What every batch of one :func:`fit_probes` call shares: the C grid, the selection rule,
    the device and compute dtype, and the solver options of :func:`_solve_grid`."""

    grid: np.ndarray
    select: str
    device: torch.device
    compute: torch.dtype
    options: dict


def _fit_in_batches(matrix, checked, setup, *, batches, workspaces):
    """Fit the probes batch by batch (see :func:`_batches`), one batch per workspace at once.

    Returns ``{task index: fitted part}``.
    """
    spare = queue.SimpleQueue()
    for workspace in workspaces:
        spare.put(workspace)

    def fit_batch(groups):
        workspace = spare.get()
        try:
            with torch.no_grad():  # grad mode is per thread
                return groups, _fit_batch(matrix, checked, groups, setup, workspace)
        finally:
            spare.put(workspace)

    n_jobs = len(workspaces)
    with ThreadPoolExecutor(n_jobs) as pool:
        fitted = list(pool.map(fit_batch, batches)) if n_jobs > 1 else map(fit_batch, batches)
        return {int(i): part for groups, found in fitted
                for i, part in zip((i for group in groups for i in group), found)}


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


class Workspace:
    """Reusable gather buffers of one worker thread (CPU).

    A fresh 64 MB tensor costs its page faults on first touch: gathering a batch's rows into
    a new tensor measured 43 ms, into a reused one 7 ms (1 thread, d = 2048). Each buffer
    grows to the largest request and is reused by the next batch, so the memory held is
    about one batch's rows (``CPU_BATCH_BYTES``) plus one chunk of scoring rows.
    """

    def __init__(self):
        self._buffers = {}

    def take(self, name, shape, dtype):
        """A tensor of ``shape`` and ``dtype`` backed by the buffer ``name`` (contents undefined)."""
        numel = int(np.prod(shape))
        buffer = self._buffers.get((name, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[(name, dtype)] = torch.empty(numel, dtype=dtype)
        return buffer[:numel].view(*shape)


# float16 rows are gathered and converted to float32 this many rows at a time (stays in cache).
CONVERT_CHUNK_ROWS = 1024


def _gather(matrix, rows, device, compute, workspace=None, name="rows"):
    """Rows (P, m) of int64 -> features (P, m, d) on ``device`` in ``compute`` dtype.

    With a ``workspace`` (CPU only) the result is a view of its buffer ``name``, valid
    until the next gather into that buffer; float16 rows are converted chunk by chunk.
    """
    index = torch.from_numpy(np.ascontiguousarray(rows).reshape(-1)).to(matrix.device)
    width = matrix.shape[1]
    if workspace is None or device.type != "cpu" or matrix.device.type != "cpu":
        block = matrix.index_select(0, index).reshape(*rows.shape, width)
        return block.to(device=device, dtype=compute)
    out = workspace.take(name, (index.numel(), width), compute)
    if matrix.dtype == compute:
        torch.index_select(matrix, 0, index, out=out)
    else:
        staging = workspace.take("staging", (min(CONVERT_CHUNK_ROWS, index.numel()), width), matrix.dtype)
        for first in range(0, index.numel(), CONVERT_CHUNK_ROWS):
            part = index[first:first + CONVERT_CHUNK_ROWS]
            torch.index_select(matrix, 0, part, out=staging[:part.numel()])
            out[first:first + part.numel()].copy_(staging[:part.numel()])
    return out.view(*rows.shape, width)


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


def _row_groups(checked):
    """Task numbers grouped by identical training and validation rows (first-seen order).

    Tasks of one group differ only in their labels (e.g. the classes of a multi-label
    probe): their rows are gathered and converted once and every solver pass over them
    serves all the group's tasks and values of C.
    """
    groups = {}
    for number, task in enumerate(checked):
        key = (task.train.tobytes(), task.val.tobytes())
        groups.setdefault(key, []).append(number)
    return list(groups.values())


def _batches(checked, groups, batch_size, budget, width, compute, problems):
    """Groups of tasks (see :func:`_row_groups`) in batches, smallest training sets first.

    A batch holds groups of one size only (its solver problems form a rectangle). With
    ``batch_size`` every batch holds that many groups (row blocks). Otherwise each batch
    takes as many groups as fit in ``budget`` bytes: a group costs its gathered rows once
    plus the solver's state for its tasks x ``problems`` values of C (L-BFGS pairs and a
    few vectors), so a batch of small training sets holds more probes than one of large sets.
    """
    shared = np.array([len(group) for group in groups])
    sizes = np.array([len(checked[group[0]].train) for group in groups])
    order = np.lexsort((sizes, shared))
    itemsize = torch.finfo(compute).bits // 8
    batches, first = [], 0
    for stop in range(1, len(order) + 1):
        last = order[stop - 1]
        if stop - first > 1 and shared[last] != shared[order[first]]:
            batches.append(order[first:stop - 1])
            first = stop - 1
        elif batch_size is not None:
            if stop - first > batch_size:
                batches.append(order[first:stop - 1])
                first = stop - 1
        elif stop - first > 1:
            state = shared[last] * problems * SOLVER_STATE_VECTORS * (width + 1) * itemsize
            per_group = int(sizes[last]) * width * itemsize + state  # the largest so far
            if (stop - first) * per_group > budget or (stop - first) * shared[last] > MAX_BATCH_SIZE:
                batches.append(order[first:stop - 1])
                first = stop - 1
    batches.append(order[first:])
    return [[groups[g] for g in batch] for batch in batches]


def _preconditioner(matrix, checked, device, compute):
    """Spectral preconditioner from evenly spaced rows of all training sets."""
    union = np.unique(np.concatenate([task.train for task in checked]))
    picks = union[np.linspace(0, len(union) - 1, min(len(union), PRECONDITIONER_ROWS)).astype(np.int64)]
    sample = _gather(matrix, picks[None], device, compute)[0]
    if not bool(torch.isfinite(sample).all()):
        return None  # the per-batch check names the task
    return SpectralPreconditioner.from_rows(sample)


def _fit_batch(matrix, checked, groups, setup, workspace):
    """Fit and validate one batch of row groups; returns per-task dicts in group order.

    Test rows are scored afterwards (:func:`_score_tests`). A group of T tasks is one row
    block of the solver with T x K problems, column ``k * T + t`` for C ``k`` and task ``t``.
    """
    grid, device, compute = setup.grid, setup.device, setup.compute
    leads = [checked[group[0]] for group in groups]
    numbers = [group[0] for group in groups]
    shared = len(groups[0])
    rows, weights = _padded([lead.train for lead in leads], 0)
    if shared == 1:
        labels = _padded([lead.y_train for lead in leads], 0.0)[0]
    else:
        labels = np.zeros((len(groups), rows.shape[1], shared))
        for g, group in enumerate(groups):
            for t, i in enumerate(group):
                labels[g, :len(checked[i].y_train), t] = checked[i].y_train
    block = _gather(matrix, rows, device, compute, workspace)
    _check_finite(block, weights, numbers)
    as_tensor = lambda values: torch.as_tensor(values, dtype=compute, device=device)  # noqa: E731
    fits = _solve_grid(block, as_tensor(labels), as_tensor(weights), as_tensor(grid), **setup.options)
    del block

    def gather(source, padded):
        return _gather(source, padded, device, compute, workspace)

    val_scores = scoring.score_rows(matrix, [lead.val for lead in leads], fits.coef, fits.intercept, gather)
    _check_scores(val_scores, numbers, "validation")
    n_cs = len(grid)
    task_scores = [scores.reshape(len(scores), n_cs, shared)[:, :, t]
                   for scores in val_scores for t in range(shared)]
    loss, auc = scoring.validation_metrics(task_scores, [checked[i].y_val for group in groups for i in group])
    chosen = scoring.choose_c(loss, auc, setup.select)
    column = chosen * shared + np.tile(np.arange(shared), len(groups))
    owner = np.repeat(np.arange(len(groups)), shared)
    pick, probes = torch.as_tensor(column, device=device), torch.as_tensor(owner, device=device)
    coef, intercept = fits.coef[probes, pick].cpu().numpy(), fits.intercept[probes, pick].cpu().numpy()
    by_task = lambda values: values.reshape(len(groups), n_cs, shared).transpose(0, 2, 1).reshape(-1, n_cs)  # noqa: E731
    n_iter, converged = by_task(fits.n_iter.cpu().numpy()), by_task(fits.converged.cpu().numpy())
    return [dict(C_index=chosen[p], coef=coef[p], intercept=intercept[p], val_loss=loss[p],
                 val_auc=auc[p], n_iter=n_iter[p], converged=converged[p], test_scores=None)
            for p in range(len(owner))]


def _score_tests(matrix, checked, parts, device, compute, workspace):
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
    gather = lambda source, padded: _gather(source, padded, device, compute, workspace)  # noqa: E731
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


def _solve_grid(block, labels, weights, grid, *, path, solver, preconditioner):
    """All C values of a batch: warm-started path (ascending C) or one joint solve.

    ``labels`` (P, n) or, for row blocks shared by T tasks, (P, n, T); the problems come
    out C-major: column ``k * T + t``.
    """
    n_probes = block.shape[0]
    shared = labels.shape[2] if labels.ndim == 3 else 1
    if path == "joint":
        if labels.ndim == 3:
            labels = labels.repeat(1, 1, len(grid))
        C = grid.repeat_interleave(shared).expand(n_probes, -1).contiguous()
        return solve_logistic(block, labels, weights, C, options=solver, preconditioner=preconditioner,
                              overwrite_features=True)
    steps = []
    for number, value in enumerate(grid):
        step = solve_logistic(block, labels, weights, value.expand(n_probes, shared).contiguous(),
                              start=steps[-1] if steps else None, options=solver, preconditioner=preconditioner,
                              overwrite_features=number == len(grid) - 1)
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
