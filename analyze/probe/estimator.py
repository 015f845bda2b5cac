"""One binary linear probe as a scikit-learn estimator: :class:`LinearProbe`."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from analyze.probe.checks import (
    ProbeInputError,
    limited_threads,
    resolve_device,
    resolve_dtype,
)
from analyze.probe.solver import SolverOptions, solve_logistic


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Binary L2-regularised logistic regression, solved by (batched) L-BFGS in torch.

    Same objective and stopping rule as ``LogisticRegression(C=C, tol=tol)`` with the
    lbfgs solver; coefficients agree with it to the tolerance. Binary targets only.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength: minimise ``C * sum_i logloss_i + ||w||^2 / 2``.
    tol : float, default=1e-6
        Stop when max |gradient| of ``mean logloss + ||w||^2 / (2 C n)`` is <= ``tol``.
    max_iter : int, default=1000
        L-BFGS iteration budget; a ``ConvergenceWarning`` is raised when spent.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to fit; predictions are computed in numpy.
    dtype : {"float32", "float64"}, default="float32"
        Compute precision of the fit.
    n_threads : int or None, default=1
        Torch/BLAS threads during ``fit`` (restored afterwards); None keeps the current
        setting. One thread avoids oversubscription when fits run in parallel.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Class labels; ``classes_[1]`` is the positive class.
    coef_ : ndarray of shape (1, n_features)
    intercept_ : ndarray of shape (1,)
    n_iter_ : ndarray of shape (1,)
        Iterations used.
    n_features_in_ : int
    """

    def __init__(self, C=1.0, *, tol=1e-6, max_iter=1000, fit_intercept=True, device="cpu",
                 dtype="float32", n_threads=1):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.fit_intercept = fit_intercept
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y):
        """Fit on ``X`` (n_samples, n_features) and binary ``y`` (n_samples,)."""
        self._check_params()
        X, y = _sklearn_checked(lambda: validate_data(self, X, y, dtype=[np.float64, np.float32],
                                                      ensure_all_finite=False))
        _check_finite(X, doing="fitting")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) == 1:
            raise ProbeInputError(f"y has only one class ({self.classes_[0]!r}); a probe needs two classes.")
        target = type_of_target(y, input_name="y")
        if target != "binary":
            raise ProbeInputError(f"Only binary classification is supported; y is {target} "
                                  f"with {len(self.classes_)} classes, so fit one probe per class.")
        device, compute = resolve_device(self.device), resolve_dtype(self.dtype)
        copied = np.array(X, dtype=np.float64 if compute == torch.float64 else np.float32)  # writable
        features = torch.from_numpy(copied).to(device)[None]
        labels = torch.as_tensor(y == self.classes_[1], dtype=compute, device=device)[None]
        C = torch.full((1, 1), float(self.C), dtype=compute, device=device)
        with limited_threads(self.n_threads), torch.no_grad():
            result = solve_logistic(features, labels, torch.ones_like(labels), C, options=SolverOptions(
                fit_intercept=self.fit_intercept, tol=self.tol, max_iter=self.max_iter))
        self.coef_ = result.coef[0].double().cpu().numpy()
        self.intercept_ = result.intercept[0].double().cpu().numpy()
        self.n_iter_ = result.n_iter[0].cpu().numpy().astype(np.int32)
        if not bool(result.converged.all()):
            warnings.warn(f"LinearProbe did not reach tol={self.tol} in {self.n_iter_[0]} iterations; "
                          "raise max_iter or use dtype='float64'.", ConvergenceWarning, stacklevel=2)
        return self

    def decision_function(self, X):
        """Log-odds of ``classes_[1]``, shape (n_samples,)."""
        check_is_fitted(self)
        X = _sklearn_checked(lambda: validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                                                   ensure_all_finite=False))
        _check_finite(X, doing="predicting")
        return X.astype(np.float64, copy=False) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X):
        """Probabilities of ``classes_``, shape (n_samples, 2)."""
        positive = expit(self.decision_function(X))
        return np.column_stack([1.0 - positive, positive])

    def predict_log_proba(self, X):
        """Log-probabilities of ``classes_``, shape (n_samples, 2)."""
        scores = self.decision_function(X)
        return np.column_stack([-np.logaddexp(0.0, scores), -np.logaddexp(0.0, -scores)])

    def predict(self, X):
        """``classes_[1]`` where the decision function is positive, else ``classes_[0]``."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def _check_params(self):
        if not (isinstance(self.C, (int, float, np.number)) and np.isfinite(self.C) and self.C > 0):
            raise ProbeInputError(f"C must be a positive number, got {self.C!r}.")
        if not (isinstance(self.tol, (int, float, np.number)) and self.tol > 0):
            raise ProbeInputError(f"tol must be a positive number, got {self.tol!r}.")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ProbeInputError(f"max_iter must be a positive integer, got {self.max_iter!r}.")


def _check_finite(X, *, doing):
    """Refuse NaN or infinite features with one sentence naming the first bad entry."""
    bad = ~np.isfinite(X)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ProbeInputError(f"X contains NaN or infinite values (first at row {row}, column {column}: {X[row, column]}); "
                              f"drop or impute those values before {doing}.")


def _sklearn_checked(validate):
    """Run sklearn's input validation, re-raising its ValueError as a ProbeInputError."""
    try:
        return validate()
    except ProbeInputError:
        raise
    except ValueError as error:
        raise ProbeInputError(str(error)) from error
