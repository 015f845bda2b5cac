"""Batched solver: determinism, batching, compaction, warm starts, weights, threads."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from analyze.probe import ProbeConfig, ProbeTask, fit_probes, make_probe_features
from analyze.probe.precondition import SpectralPreconditioner
from analyze.probe.solver import SolverOptions, solve_logistic

torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """sklearn references run single-threaded: fast and steady on a shared machine."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data():
    X, y = make_probe_features(1500, 96, kind="cnn", random_state=4)
    rng = np.random.default_rng(0)
    tasks = [ProbeTask(train=rng.choice(1200, size, replace=False), val=np.arange(1200, 1400))
             for size in (60, 300, 700, 1000, 200)]
    return X, y, tasks


def test_same_call_gives_identical_results(data):
    X, y, tasks = data
    first = fit_probes(X, tasks, labels=y, test=np.arange(1400, 1500))
    second = fit_probes(X, tasks, labels=y, test=np.arange(1400, 1500))
    np.testing.assert_array_equal(first.coef, second.coef)
    np.testing.assert_array_equal(first.test_score_matrix(), second.test_score_matrix())
    np.testing.assert_array_equal(first.n_iter, second.n_iter)


def test_batch_size_does_not_change_the_probes(data):
    X, y, tasks = data
    one_batch = fit_probes(X, tasks, labels=y, config=ProbeConfig(batch_size=16))
    singles = fit_probes(X, tasks, labels=y, config=ProbeConfig(batch_size=1))
    np.testing.assert_array_equal(one_batch.C_index, singles.C_index)
    np.testing.assert_allclose(one_batch.coef, singles.coef, atol=1e-4 * np.abs(singles.coef).max())


def test_compaction_keeps_every_probe_right(data):
    """Easy (strongly regularised) and hard probes in one batch: the easy ones leave early."""
    X, y, tasks = data
    rows = torch.as_tensor(X[tasks[3].train])
    labels = torch.as_tensor(y[tasks[3].train], dtype=torch.float32)
    Cs = torch.tensor([[1e-4], [1e-2], [1.0], [100.0]])
    batch = solve_logistic(rows.expand(4, -1, -1).contiguous(), labels.expand(4, -1).contiguous(),
                           torch.ones(4, len(labels)), Cs)
    assert batch.n_iter.min() < batch.n_iter.max() / 3  # compaction had something to do
    for k, C in enumerate(Cs[:, 0].tolist()):
        alone = solve_logistic(rows[None], labels[None], torch.ones(1, len(labels)), torch.tensor([[C]]))
        np.testing.assert_allclose(batch.coef[k, 0], alone.coef[0, 0], atol=1e-3 * float(alone.coef.abs().max()))
        # the batched and the single solve sum in different orders (BLAS kernels differ by batch
        # shape and torch build), so the stopping test may trip one iteration apart and the
        # coefficients then agree to the solver tolerance rather than to the last digits
        assert abs(int(batch.n_iter[k, 0]) - int(alone.n_iter[0, 0])) <= 1


def test_warm_start_at_the_solution_stops_at_once(data):
    X, y, tasks = data
    rows, labels = torch.as_tensor(X[tasks[1].train])[None], torch.as_tensor(y[tasks[1].train], dtype=torch.float32)[None]
    weights, C = torch.ones_like(labels), torch.tensor([[0.5]])
    cold = solve_logistic(rows, labels, weights, C)
    warm = solve_logistic(rows, labels, weights, C, start=cold)
    assert cold.n_iter.item() > 5 and warm.n_iter.item() <= 1
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-5)


def test_weights_follow_sklearn_sample_weight_semantics(data):
    X, y, tasks = data
    rows = X[tasks[2].train].astype(np.float64)
    labels = y[tasks[2].train]
    weights = np.random.default_rng(1).integers(0, 4, size=len(labels)).astype(np.float64)
    reference = LogisticRegression(C=0.3, tol=1e-10, max_iter=10000).fit(rows, labels, sample_weight=weights)
    fit = solve_logistic(torch.as_tensor(rows)[None], torch.as_tensor(labels, dtype=torch.float64)[None],
                         torch.as_tensor(weights)[None], torch.tensor([[0.3]], dtype=torch.float64), options=SolverOptions(tol=1e-10))
    np.testing.assert_allclose(fit.coef[0, 0].numpy(), reference.coef_[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.intercept[0, 0].item(), reference.intercept_[0], rtol=1e-4, atol=1e-5)


def test_preconditioner_changes_speed_not_the_answer(data):
    X, y, tasks = data
    rows = torch.as_tensor(X[tasks[3].train], dtype=torch.float64)[None]
    labels = torch.as_tensor(y[tasks[3].train], dtype=torch.float64)[None]
    weights, C = torch.ones_like(labels), torch.tensor([[10.0]], dtype=torch.float64)
    preconditioner = SpectralPreconditioner.from_rows(torch.as_tensor(X[:1200], dtype=torch.float64))
    plain = solve_logistic(rows, labels, weights, C, options=SolverOptions(tol=1e-9))
    fast = solve_logistic(rows, labels, weights, C, options=SolverOptions(tol=1e-9), preconditioner=preconditioner)
    np.testing.assert_allclose(fast.coef, plain.coef, rtol=1e-5, atol=1e-7)
    assert fast.n_iter.item() < plain.n_iter.item()


def test_parallel_batches_give_identical_results(data):
    X, y, tasks = data
    serial = fit_probes(X, tasks, labels=y, config=ProbeConfig(batch_size=2, n_threads=1))
    parallel = fit_probes(X, tasks, labels=y, config=ProbeConfig(batch_size=2, n_jobs=2))
    np.testing.assert_array_equal(parallel.coef, serial.coef)
    np.testing.assert_array_equal(parallel.n_iter, serial.n_iter)


def test_auto_device_runs_where_it_can(data):
    X, y, tasks = data
    auto = fit_probes(X, tasks[:2], labels=y, config=ProbeConfig(Cs=[1.0], device="auto"))
    cpu = fit_probes(X, tasks[:2], labels=y, config=ProbeConfig(Cs=[1.0], device="cpu"))
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(auto.coef, cpu.coef)
    else:
        np.testing.assert_allclose(auto.coef, cpu.coef, atol=1e-3 * np.abs(cpu.coef).max())


def test_threads_are_restored(data):
    X, y, tasks = data
    before = torch.get_num_threads()
    fit_probes(X, tasks[:1], labels=y, config=ProbeConfig(Cs=[1.0], n_threads=2))
    assert torch.get_num_threads() == before


def test_torch_float16_features_are_accepted(data):
    X, y, tasks = data
    half = fit_probes(torch.as_tensor(X).half(), tasks[:2], labels=y, config=ProbeConfig(Cs=[1.0]))
    full = fit_probes(X.astype(np.float16).astype(np.float32), tasks[:2], labels=y, config=ProbeConfig(Cs=[1.0]))
    np.testing.assert_allclose(half.coef, full.coef, atol=1e-6)


def test_synthetic_features_are_seeded():
    first = make_probe_features(50, 8, random_state=9)
    second = make_probe_features(50, 8, random_state=9)
    other = make_probe_features(50, 8, random_state=10)
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], other[0])
    assert first[0].dtype == np.float32 and (first[0] >= 0).all() and set(np.unique(first[1])) <= {0, 1}
