"""fit_probes: bad input raises one clear sentence (a UserError), never a deep traceback."""

import numpy as np
import pytest
import torch

from analyze.probe import ProbeConfig, ProbeInputError, ProbeTask, fit_probes, make_probe_features
from extract.errors import UserError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    X, y = make_probe_features(300, 16, kind="isotropic", random_state=3)
    return X, y


def _task(**overrides):
    fields = dict(train=np.arange(0, 100), val=np.arange(100, 150))
    fields.update(overrides)
    return ProbeTask(**fields)


def _raises(match, X, tasks, *, labels=None, test=None, **options):
    with pytest.raises(ProbeInputError, match=match) as caught:
        fit_probes(X, tasks, labels=labels, test=test, config=ProbeConfig(**options))
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    assert message.endswith(".") and ". " not in message  # one sentence
    return message


@pytest.mark.parametrize("where, what, task", [(5, "training", 0), (120, "validation", 0), (200, "test", 1)])
def test_nan_or_inf_features_name_the_task(data, where, what, task):
    X, y = data
    X = X.copy()
    X[where, 3] = np.inf if what == "validation" else np.nan
    tasks = [_task(), _task(test=np.arange(150, 300))]
    message = _raises("NaN or inf", X, tasks, labels=y, Cs=[0.1, 1.0])
    assert what in message and f"task {task}" in message


def test_nan_in_shared_test_rows(data):
    X, y = data
    X = X.copy()
    X[250, 0] = np.nan
    _raises("shared test rows", X, [_task()], labels=y, test=np.arange(200, 300))


def test_nan_outside_used_rows_is_ignored(data):
    X, y = data
    X = X.copy()
    X[299] = np.nan
    found = fit_probes(X, [_task()], labels=y, config=ProbeConfig(Cs=[1.0]))
    assert np.isfinite(found.coef).all()


def test_single_class_training_set(data):
    X, y = data
    only_positive = np.flatnonzero(y == 1)[:40]
    _raises("only one class", X, [_task(), _task(train=only_positive)], labels=y)


def test_single_class_validation_set_with_auc_selection(data):
    X, y = data
    negatives = np.flatnonzero(y == 0)[-20:]
    _raises("task 0 val rows has only one class", X, [_task(val=negatives)], labels=y, select="auc")


@pytest.mark.parametrize("task, match", [
    (dict(train=np.array([], dtype=int)), "train rows is empty"),
    (dict(val=np.array([], dtype=int)), "val rows is empty"),
    (dict(train=np.array([0, 1, 400])), "outside 0..299"),
    (dict(train=np.array([-1, 2, 3])), "outside"),
    (dict(train=np.arange(10, dtype=float)), "integer row positions"),
    (dict(train=np.ones((5, 2), dtype=int)), "1-D"),
    (dict(labels=np.zeros(10)), "one label per feature row"),
])
def test_bad_tasks(data, task, match):
    X, y = data
    _raises(match, X, [_task(**task)], labels=y, Cs=[0.1, 1.0])


def test_labels_must_be_binary(data):
    X, y = data
    _raises("other than 0 and 1", X, [_task()], labels=y * 2)


def test_missing_labels_and_empty_task_list(data):
    X, y = data
    _raises("has no labels", X, [_task()])
    _raises("tasks is empty", X, [], labels=y)


@pytest.mark.parametrize("kwargs, match", [
    (dict(Cs=[]), "`Cs` must be"), (dict(Cs=[1.0, -1.0]), "`Cs` must be"), (dict(Cs=[np.nan]), "`Cs` must be"),
    (dict(select="accuracy"), "`select` must be"), (dict(path="cold"), "`path` must be"),
    (dict(tol=0), "`tol` must be"), (dict(max_iter=0), "`max_iter` must be"), (dict(batch_size=0), "batch_size"),
    (dict(dtype="float16"), "dtype"), (dict(device="nonsense"), "device"), (dict(n_threads=0), "n_threads"),
    (dict(n_jobs=0), "n_jobs"),
])
def test_bad_options(data, kwargs, match):
    X, y = data
    _raises(match, X, [_task()], labels=y, **kwargs)


def test_cuda_requested_without_cuda(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    X, y = data
    _raises("CUDA is not available", X, [_task()], labels=y, device="cuda")


@pytest.mark.parametrize("features, match", [
    (np.zeros(10, dtype=np.float32), "2-D"),
    (np.zeros((0, 4), dtype=np.float32), "2-D"),
    (np.zeros((10, 4), dtype=np.int64), "dtype"),
    ([[0.0, 1.0]], "numpy array or torch tensor"),
])
def test_bad_feature_matrix(features, match):
    _raises(match, features, [ProbeTask(train=np.array([0]))], labels=np.zeros(1))


def test_mismatched_shared_labels(data):
    X, y = data
    _raises(r"one label per feature row \(300\)", X, [_task()], labels=y[:-1])
