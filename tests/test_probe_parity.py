"""fit_probes: every probe equals its own sklearn fit, and C is chosen as a grid search would."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from analyze.probe import ProbeConfig, ProbeTask, fit_probes, make_probe_features

torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """sklearn references run single-threaded: fast and steady on a shared machine."""
    with threadpool_limits(limits=1):
        yield
CS = (0.001, 0.01, 0.1, 1.0, 10.0)
TIE = 1e-4  # validation losses closer than this are a tie, either choice is right


@pytest.fixture(scope="module")
def problem():
    X, y = make_probe_features(2400, 192, kind="cnn", random_state=1)
    rng = np.random.default_rng(7)
    pool, test = np.arange(1800), np.arange(1800, 2400)
    tasks = []
    for size in (150, 400, 800, 600):  # different n per probe: padding and compaction
        rows = rng.permutation(pool)
        tasks.append(ProbeTask(train=rows[:size], val=rows[size:size + 300]))
    return X, y, tasks, test


def _sklearn_path(X, y, task):
    """Reference: one LogisticRegression per C, validation log-loss, test decision function."""
    fits = [LogisticRegression(C=C, tol=1e-8, max_iter=20000).fit(X[task.train].astype(np.float64), y[task.train])
            for C in CS]
    scores = [fit.decision_function(X[task.val].astype(np.float64)) for fit in fits]
    losses = np.array([np.mean(np.logaddexp(0, s) - y[task.val] * s) for s in scores])
    return fits, losses


@pytest.fixture(scope="module")
def references(problem):
    X, y, tasks, _ = problem
    return [_sklearn_path(X, y, task) for task in tasks]


@pytest.fixture(scope="module")
def results(problem):
    X, y, tasks, test = problem
    return fit_probes(X, tasks, labels=y, test=test, config=ProbeConfig(Cs=CS, batch_size=3))


def test_each_probe_matches_its_own_sklearn_fit(problem, references, results):
    X, y, tasks, test = problem
    for probe, (fits, _) in enumerate(references):
        reference = fits[results.C_index[probe]]
        cosine = np.dot(results.coef[probe], reference.coef_[0]) / (
            np.linalg.norm(results.coef[probe]) * np.linalg.norm(reference.coef_[0]))
        assert cosine >= 0.999
        auc = roc_auc_score(y[test], results.test_scores[probe])
        assert abs(auc - roc_auc_score(y[test], reference.decision_function(X[test]))) <= 0.002
        np.testing.assert_allclose(results.test_scores[probe],
                                   X[test] @ results.coef[probe] + results.intercept[probe], rtol=1e-4, atol=1e-4)


def test_validation_losses_and_choice_match_a_sklearn_grid_search(references, results):
    for probe, (_, losses) in enumerate(references):
        np.testing.assert_allclose(results.val_loss[probe], losses, rtol=2e-3, atol=2e-4)
        sklearn_choice = int(np.argmin(losses))
        ours = int(results.C_index[probe])
        assert ours == sklearn_choice or abs(losses[ours] - losses[sklearn_choice]) < TIE
        assert results.C[probe] == CS[ours]
    assert results.converged.all()
    interior = (results.C_index > 0) & (results.C_index < len(CS) - 1)
    assert interior.any()  # the data make the choice non-trivial


def test_auc_selection_matches_grid_search_on_auc(problem):
    X, y, tasks, _ = problem
    found = fit_probes(X, tasks[:2], labels=y, config=ProbeConfig(Cs=CS, select="auc"))
    for probe, task in enumerate(tasks[:2]):
        fits, _ = _sklearn_path(X, y, task)
        aucs = np.array([roc_auc_score(y[task.val], fit.decision_function(X[task.val])) for fit in fits])
        np.testing.assert_allclose(found.val_auc[probe], aucs, atol=2e-3)
        assert aucs[found.C_index[probe]] >= aucs.max() - 2e-3


def test_warm_path_and_unpreconditioned_solver_give_the_same_probes(problem, results):
    X, y, tasks, test = problem
    for other in (fit_probes(X, tasks, labels=y, test=test, config=ProbeConfig(Cs=CS, path="warm")),
                  fit_probes(X, tasks, labels=y, test=test, config=ProbeConfig(Cs=CS, precondition=False))):
        np.testing.assert_array_equal(other.C_index, results.C_index)
        np.testing.assert_allclose(other.coef, results.coef, rtol=0, atol=2e-3 * np.abs(results.coef).max())
        np.testing.assert_allclose(other.val_loss, results.val_loss, rtol=1e-3, atol=1e-4)


def test_per_task_labels_and_test_rows(problem):
    X, y, tasks, _ = problem
    flipped = 1 - y
    own = [ProbeTask(train=tasks[0].train, val=tasks[0].val, labels=flipped, test=np.arange(100)),
           ProbeTask(train=tasks[1].train, val=tasks[1].val, test=np.arange(50, 60))]
    found = fit_probes(X, own, labels=y, config=ProbeConfig(Cs=(0.1,)))
    reference = LogisticRegression(C=0.1, tol=1e-8, max_iter=20000).fit(X[tasks[0].train].astype(np.float64),
                                                                        flipped[tasks[0].train])
    assert np.dot(found.coef[0], reference.coef_[0]) / (
        np.linalg.norm(found.coef[0]) * np.linalg.norm(reference.coef_[0])) >= 0.999
    assert [len(s) for s in found.test_scores] == [100, 10]
    np.testing.assert_allclose(found.test_scores[1], X[50:60] @ found.coef[1] + found.intercept[1], atol=1e-4)


def test_single_c_needs_no_validation_rows(problem):
    X, y, tasks, test = problem
    found = fit_probes(X, [ProbeTask(train=tasks[0].train)], labels=y, test=test, config=ProbeConfig(Cs=[1.0]))
    assert found.C.tolist() == [1.0] and np.isnan(found.val_loss).all()
    assert found.test_score_matrix().shape == (1, len(test))
