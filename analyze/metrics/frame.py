"""A per-group report shaped like Fairlearn's ``MetricFrame``, without depending on fairlearn.

A *disaggregated metric* is a metric evaluated on the whole evaluation set (``overall``)
and separately on each group defined by one or more sensitive features (``by_group``).
Fairness summaries compare the groups: ``difference()`` (largest gap), ``ratio()``
(smallest ratio), ``group_min()``, ``group_max()``. Names, shapes and methods follow
``fairlearn.metrics.MetricFrame`` so code written against one reads the other.

Differences from fairlearn, on purpose: an undefined group value (NaN) makes
``difference``/``ratio``/``group_min``/``group_max`` NaN instead of being skipped (a gap
with an undefined side is undefined), and every NaN or warning raised while computing a
value is kept with its reason in :attr:`GroupReport.reasons`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import pandas as pd

from analyze.metrics.base import UndefinedMetricWarning
from extract.errors import UserError

Method = Literal["between_groups", "to_overall"]


def _sensitive_frame(sensitive_features, n_samples: int) -> pd.DataFrame:
    """One column per sensitive feature, named like fairlearn (``sensitive_feature_i``)."""
    if isinstance(sensitive_features, pd.DataFrame):
        frame = sensitive_features.reset_index(drop=True)
    elif isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name
        frame = sensitive_features.reset_index(drop=True).to_frame(
            "sensitive_feature_0" if name is None else name)
    elif isinstance(sensitive_features, Mapping):
        frame = pd.DataFrame({k: np.asarray(v) for k, v in sensitive_features.items()})
    elif isinstance(sensitive_features, (list, tuple)) and np.ndim(sensitive_features[0]) == 1:
        frame = pd.DataFrame(
            {f"sensitive_feature_{i}": np.asarray(c) for i, c in enumerate(sensitive_features)}
        )
    else:
        array = np.asarray(sensitive_features)
        if array.ndim not in (1, 2):
            raise UserError("sensitive_features must be one value per sample (or one column each).")
        columns = [array] if array.ndim == 1 else list(array.T)
        frame = pd.DataFrame({f"sensitive_feature_{i}": c for i, c in enumerate(columns)})
    if len(frame) != n_samples:
        raise UserError(
            f"sensitive_features has {len(frame)} rows but y_true has {n_samples}; pass one "
            "value per sample."
        )
    return frame


def _evaluate(function: Callable, y_true, y_pred, *, metric: str, where: str, reasons: list):
    """Call one metric, keeping any warning or ValueError as the reason for its value."""
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = function(y_true, y_pred)
        except (ValueError, ZeroDivisionError) as exc:  # e.g. sklearn on a one-class group
            value, error = np.nan, f"raised {type(exc).__name__}: {exc}"
    messages = [str(w.message) for w in caught] + ([error] if error else [])
    if not messages and np.isscalar(value) and pd.isna(value):
        messages = ["the metric returned NaN"]
    for message in messages:
        reasons.append({"metric": metric, "group": where, "reason": message})
        warnings.warn(f"{metric} for {where}: {message}", UndefinedMetricWarning, stacklevel=4)
    return value


def _disaggregate(functions, y_true, y_pred, frame: pd.DataFrame, reasons: list) -> pd.DataFrame:
    """Each metric on each group's rows: rows = groups (sorted), columns = metrics."""
    names = list(frame.columns)
    groups = frame.groupby(names if len(names) > 1 else names[0], sort=True).indices
    rows = {}
    for key, index in groups.items():
        if len(names) == 1:
            label = f"{names[0]}={key}"
        else:
            label = ", ".join(f"{n}={k}" for n, k in zip(names, key, strict=True))
        rows[key] = {name: _evaluate(f, y_true[index], y_pred[index], metric=name,
                                     where=label, reasons=reasons)
                     for name, f in functions.items()}
    by_group = pd.DataFrame.from_dict(rows, orient="index")
    by_group.index = (pd.MultiIndex.from_tuples(by_group.index, names=names)
                      if len(names) > 1 else pd.Index(by_group.index, name=names[0]))
    return by_group.reindex(columns=list(functions))


class GroupReport:
    """Metrics overall and per group, with group comparisons (Fairlearn ``MetricFrame`` shape).

    Parameters
    ----------
    metrics : callable or dict of str -> callable
        Each ``f(y_true, y_pred) -> float``, e.g. :func:`analyze.metrics.false_positive_rate`,
        :func:`analyze.metrics.roc_auc` (pass scores as ``y_pred``) or any sklearn metric.
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
        Hard predictions or scores, whatever the metrics expect.
    sensitive_features : array-like, Series, DataFrame or dict of arrays
        One value per sample, or several columns (groups are their combinations).

    Attributes
    ----------
    overall : pandas.Series (float for a single callable)
        Each metric on all samples.
    by_group : pandas.DataFrame (Series for a single callable)
        Rows = groups (sorted; a MultiIndex for several features), columns = metrics.
    reasons : pandas.DataFrame
        Columns ``metric``, ``group``, ``reason``: why a value is NaN or what warning it
        raised ("overall" for the overall value).
    """

    def __init__(self, *, metrics, y_true, y_pred, sensitive_features):
        single = callable(metrics)
        functions = {getattr(metrics, "__name__", "metric"): metrics} if single else dict(metrics)
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if y_true.shape[:1] != y_pred.shape[:1]:
            raise UserError(f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}; "
                            "pass one prediction per sample.")
        frame = _sensitive_frame(sensitive_features, len(y_true))
        reasons: list[dict] = []
        overall = {name: _evaluate(f, y_true, y_pred, metric=name, where="overall", reasons=reasons)
                   for name, f in functions.items()}
        by_group = _disaggregate(functions, y_true, y_pred, frame, reasons)
        self._overall = pd.Series(overall, dtype=float)
        self._by_group = by_group.astype(float)
        self._single = single
        self.reasons = pd.DataFrame(reasons, columns=["metric", "group", "reason"])

    def _shape(self, values: pd.Series):
        return values.iloc[0] if self._single else values

    @property
    def overall(self):
        return self._shape(self._overall)

    @property
    def by_group(self):
        return self._by_group.iloc[:, 0] if self._single else self._by_group

    def group_min(self):
        """Smallest group value per metric (NaN if any group is NaN)."""
        return self._shape(self._by_group.min(skipna=False))

    def group_max(self):
        """Largest group value per metric (NaN if any group is NaN)."""
        return self._shape(self._by_group.max(skipna=False))

    def difference(self, method: Method = "between_groups"):
        """Largest absolute gap: ``group_max - group_min`` or ``max |group - overall|``."""
        if method == "between_groups":
            gap = self._by_group.max(skipna=False) - self._by_group.min(skipna=False)
        elif method == "to_overall":
            gap = (self._by_group - self._overall).abs().max(skipna=False)
        else:
            raise UserError(f"method must be 'between_groups' or 'to_overall', got {method!r}.")
        return self._shape(gap)

    def ratio(self, method: Method = "between_groups"):
        """Smallest ratio (<= 1): ``group_min / group_max`` or ``min over groups of
        min(group/overall, overall/group)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == "between_groups":
                ratio = self._by_group.min(skipna=False) / self._by_group.max(skipna=False)
            elif method == "to_overall":
                raw = self._by_group / self._overall
                ratio = raw.where(raw <= 1, 1 / raw).min(skipna=False)
            else:
                raise UserError(f"method must be 'between_groups' or 'to_overall', got {method!r}.")
        return self._shape(ratio)

    def __repr__(self) -> str:
        return f"GroupReport(overall=\n{self.overall}\nby_group=\n{self.by_group})"
