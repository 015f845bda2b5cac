"""fit_probes: tasks with the same rows and different labels share one gathered row block."""

import numpy as np
import pytest
import torch

from analyze.probe import ProbeConfig, ProbeTask, engine, fit_probes, make_probe_features

torch.set_num_threads(1)
CS = (0.01, 0.1, 1.0, 10.0)


@pytest.fixture(scope="module")
def problem():
    """Two row sets shared by 4 and 3 label columns (a multi-label probe), plus two lone tasks."""
    X, y = make_probe_features(1600, 64, kind="cnn", random_state=2)
    X = X.astype(np.float16)  # a store's dtype: the shared block is converted once
    rng = np.random.default_rng(3)
    direction = rng.standard_normal((7, 64))
    columns = (((X.astype(np.float64) - X.mean(0)) @ direction.T + rng.standard_normal((1600, 7))) > 0).astype(int)
    tasks = []
    for size, classes in ((300, range(4)), (700, range(4, 7))):
        rows = rng.permutation(1200)
        train, val = rows[:size], rows[size:size + 250]
        tasks += [ProbeTask(train=train, val=val, labels=columns[:, c]) for c in classes]
    tasks += [ProbeTask(train=rng.choice(1200, 400, replace=False), val=np.arange(1200, 1400), labels=y),
              ProbeTask(train=rng.choice(1200, 150, replace=False), val=np.arange(1200, 1400), labels=columns[:, 0])]
    return X, tasks, np.arange(1400, 1600)


def _gathered_rows(monkeypatch):
    """Count the training rows the engine gathers for solving (the first gather of each batch)."""
    counts = []
    original = engine._fit_batch

    def counting_fit_batch(matrix, checked, groups, *args):
        counts.append(sum(len(checked[group[0]].train) for group in groups))
        return original(matrix, checked, groups, *args)

    monkeypatch.setattr(engine, "_fit_batch", counting_fit_batch)
    return counts


@pytest.mark.parametrize("path", ["joint", "warm"])
def test_shared_rows_give_the_probes_of_separate_fits(problem, path, monkeypatch):
    X, tasks, test = problem
    counts = _gathered_rows(monkeypatch)
    shared = fit_probes(X, tasks, test=test, config=ProbeConfig(Cs=CS, path=path, tol=1e-7, batch_size=2))
    assert sum(counts) == 300 + 700 + 400 + 150  # each row set gathered once, not once per task
    counts.clear()
    separate = fit_probes(X, tasks, test=test, config=ProbeConfig(Cs=CS, path=path, tol=1e-7, batch_size=2, share_rows=False))
    assert sum(counts) == 4 * 300 + 3 * 700 + 400 + 150
    np.testing.assert_array_equal(shared.C_index, separate.C_index)
    scale = np.abs(separate.coef).max()
    np.testing.assert_allclose(shared.coef, separate.coef, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(shared.intercept, separate.intercept, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(shared.test_score_matrix(), separate.test_score_matrix(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(shared.val_loss, separate.val_loss, rtol=0, atol=1e-5)
    assert shared.converged.all() and separate.converged.all()


def test_lone_tasks_are_unchanged_by_sharing(problem):
    """Tasks with rows of their own are fitted exactly as before (same batches, same numbers).

    No preconditioner: it is estimated from the rows of all tasks of a call.
    """
    X, tasks, test = problem
    alone = tasks[7:]
    with_others = fit_probes(X, tasks, test=test, config=ProbeConfig(Cs=CS, batch_size=1, precondition=False))
    by_themselves = fit_probes(X, alone, test=test, config=ProbeConfig(Cs=CS, batch_size=1, precondition=False, share_rows=False))
    np.testing.assert_array_equal(with_others.coef[7:], by_themselves.coef)
    # test rows are scored for all probes of a call by one product: round-off only
    np.testing.assert_allclose(with_others.test_score_matrix()[7:], by_themselves.test_score_matrix(), rtol=0, atol=1e-5)


def test_labels_are_not_mixed_between_tasks_of_a_group(problem):
    """Swapping two label columns of a group swaps their probes."""
    X, tasks, test = problem
    swapped = [tasks[1], tasks[0]] + tasks[2:4]
    first = fit_probes(X, tasks[:4], test=test, config=ProbeConfig(Cs=CS))
    second = fit_probes(X, swapped, test=test, config=ProbeConfig(Cs=CS))
    scale = np.abs(first.coef).max()
    np.testing.assert_allclose(first.coef[[1, 0, 2, 3]], second.coef, rtol=0, atol=1e-4 * scale)
    assert np.abs(first.coef[0] - first.coef[1]).max() > 0.1 * scale
