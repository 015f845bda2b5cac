"""LinearProbe: scikit-learn estimator contract and parity with LogisticRegression."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from analyze.probe import LinearProbe, ProbeInputError, make_probe_features
from extract.errors import UserError

torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """sklearn references run single-threaded: fast and steady on a shared machine."""
    with threadpool_limits(limits=1):
        yield


@parametrize_with_checks([LinearProbe(), LinearProbe(dtype="float64", fit_intercept=False)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def cnn_like():
    X, y = make_probe_features(2000, 256, kind="cnn", random_state=0)
    return X[:1200], y[:1200], X[1200:], y[1200:]


def _cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("C", [0.001, 0.1, 10.0])
def test_matches_sklearn_on_ill_conditioned_features(cnn_like, C):
    X, y, X_test, y_test = cnn_like
    reference = LogisticRegression(C=C, tol=1e-8, max_iter=10000).fit(X.astype(np.float64), y)
    probe = LinearProbe(C=C).fit(X, y)
    assert _cosine(probe.coef_[0], reference.coef_[0]) >= 0.999
    auc = roc_auc_score(y_test, probe.decision_function(X_test))
    reference_auc = roc_auc_score(y_test, reference.decision_function(X_test))
    assert abs(auc - reference_auc) <= 0.002
    assert probe.intercept_[0] == pytest.approx(reference.intercept_[0], abs=0.05 * max(1.0, abs(reference.intercept_[0])))


def test_matches_sklearn_in_float64_without_intercept(cnn_like):
    X, y, _, _ = cnn_like
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000, fit_intercept=False).fit(X.astype(np.float64), y)
    probe = LinearProbe(C=1.0, tol=1e-9, dtype="float64", fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(probe.coef_[0], reference.coef_[0], rtol=1e-4, atol=1e-6)
    assert probe.intercept_[0] == 0.0


def test_string_labels_and_probability_convention(cnn_like):
    X, y, X_test, _ = cnn_like
    names = np.array(["no", "yes"])[y]
    probe = LinearProbe(C=0.1).fit(X, names)
    assert list(probe.classes_) == ["no", "yes"]
    scores = probe.decision_function(X_test)
    proba = probe.predict_proba(X_test)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)))
    assert np.all(probe.predict(X_test)[scores > 0] == "yes")
    np.testing.assert_allclose(probe.predict_log_proba(X_test), np.log(proba), atol=1e-10)


def test_multiclass_is_refused_with_a_user_error(cnn_like):
    X, y, _, _ = cnn_like
    with pytest.raises(UserError, match="Only binary classification is supported"):
        LinearProbe().fit(X, y + (np.arange(len(y)) % 3 == 0))


def test_spent_budget_warns(cnn_like):
    X, y, _, _ = cnn_like
    with pytest.warns(ConvergenceWarning, match="did not reach"):
        probe = LinearProbe(C=10.0, max_iter=2).fit(X, y)
    assert probe.n_iter_[0] == 2


@pytest.mark.parametrize("params", [dict(C=0.0), dict(C=-1.0), dict(tol=0.0), dict(max_iter=0),
                                    dict(dtype="float16"), dict(device="tpu")])
def test_bad_parameters_raise_one_sentence(cnn_like, params):
    X, y, _, _ = cnn_like
    with pytest.raises(ProbeInputError) as caught:
        LinearProbe(**params).fit(X[:50], y[:50])
    message = str(caught.value)
    assert message.endswith(".") and message.count(". ") == 0


def test_nan_features_raise_user_error(cnn_like):
    X, y, _, _ = cnn_like
    X = X[:100].copy()
    X[3, 4] = np.nan
    with pytest.raises(UserError, match="NaN"):
        LinearProbe().fit(X, y[:100])
