"""Linear probes: L2 logistic regression on frozen features, one or thousands at a time.

Two entry points, both with the objective of ``sklearn.linear_model.LogisticRegression``
(``C * sum_i logloss_i + ||w||^2 / 2``, intercept not penalised, features used as given):

* :class:`LinearProbe`, a scikit-learn estimator for one binary probe;
* :func:`fit_probes`, a batched engine that fits many probes, each on its own rows of one
  feature matrix, chooses C per probe on its validation rows and scores test rows; its
  options (C grid, selection rule, tolerances, device, parallelism) are one
  :class:`ProbeConfig`, passed whole.

Sign convention: ``decision_function`` and ``ProbeResults.test_scores`` are log-odds of
the positive class (``classes_[1]``, label 1); positive means "predict positive".

Example
-------
>>> import numpy as np
>>> from analyze.probe import ProbeConfig, ProbeTask, fit_probes, make_probe_features
>>> X, y = make_probe_features(600, 32, random_state=0)
>>> tasks = [ProbeTask(train=np.arange(0, 200), val=np.arange(200, 300)),
...          ProbeTask(train=np.arange(300, 500), val=np.arange(500, 600))]
>>> results = fit_probes(X, tasks, labels=y, test=np.arange(600), config=ProbeConfig(Cs=[0.01, 0.1, 1.0]))
>>> results.coef.shape, results.test_score_matrix().shape
((2, 32), (2, 600))
"""

from __future__ import annotations

from analyze.probe.checks import ProbeInputError
from analyze.probe.config import DEFAULT_CS, ProbeConfig
from analyze.probe.engine import ProbeResults, ProbeTask, fit_probes
from analyze.probe.estimator import LinearProbe
from analyze.probe.synthetic import make_probe_features

__all__ = ["DEFAULT_CS", "LinearProbe", "ProbeConfig", "ProbeInputError", "ProbeResults", "ProbeTask",
           "fit_probes", "make_probe_features"]
