"""Ranjit et al.'s three findings as decision rules over before / after tables [R].

Each rule is a pure function of tables the association stage already writes and returns one
:class:`FindingRow`: a number, its interval, a verdict in :data:`VERDICTS` and the reason in one
sentence (docs/science.md section 11). The rules, as issue 27 states them:

1. :func:`retention_rule` — supervised models pretrained on large data retain their biases more
   than self-supervised ones: per finetuning set, the supervised rho minus the mean
   self-supervised rho of the *object* group (one paired bootstrap over images); its interval
   above 0 on every finetuning set (at least two): reproduced; below 0 on any: contradicted.
2. :func:`new_bias_rule` — finetuning on a larger set introduces more new biases: over at least
   12 iEAT tests, a test is *new* after a finetune when its effect-size interval includes 0
   before and excludes it after; an exact one-sided McNemar test on the tests new in one set
   only (:func:`mcnemar_one_sided`): p < alpha toward the larger set: reproduced; toward the
   smaller: contradicted.
3. :func:`transfer_rule` — biases transfer: for tests whose d-before interval excludes 0, on
   balanced or natural finetunes (the caller leaves out correlated ones, which teach the
   association directly), some d after keeps its sign with its interval (Bonferroni level
   ``1 - alpha / k`` over the ``k`` tests) outside the 2.5-97.5 percentiles of at least 5
   random-init finetunes: reproduced; every interval inside that band: contradicted.
3b. :func:`amplification_rule` — biases are amplified: ``|d after| - |d before|`` with a paired
   bootstrap interval (:func:`analyze.association.bootstrap.paired_amplification`, Bonferroni
   level) above 0 and above the random-init finetunes' 97.5th percentile for some test:
   reproduced; every interval below 0: contradicted.

Anything else is inconclusive, and so is a rule whose inputs are too few (the reason says what
is missing), so the rules can run on any stage's output, the reproduce stage's included.
:func:`retention_estimate` turns a :func:`analyze.association.retention.retention` result
into the input of rule 1; :func:`stage_rows` picks the ``before`` / ``after`` tables of rules
2 and 3 out of an association table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from extract.errors import UserError

VERDICTS = ("reproduced", "contradicted", "inconclusive")
#: Percentiles of the random-init finetunes that bound "inside the null".
NULL_BAND = (2.5, 97.5)
MIN_NULL_FINETUNES = 5
MIN_NEW_BIAS_TESTS = 12
MIN_FINETUNE_SETS = 2
_NAN = float("nan")


@dataclass(frozen=True)
class FindingRow:
    """One finding's outcome: ``number`` with its interval, the verdict and why."""

    finding: str
    number: float
    ci_low: float
    ci_high: float
    verdict: str
    reason: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise UserError(f"verdict {self.verdict!r} is not one of {VERDICTS}.")

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


@dataclass(frozen=True)
class RetentionEstimate:
    """One model's retention rho of a group and its bootstrap replicates (paired: same seed and images)."""

    model: str
    objective: str
    rho: float
    replicates: np.ndarray


def retention_estimate(result, *, model: str, objective: str,
                       group: str = "object") -> RetentionEstimate:
    """One model's :class:`RetentionEstimate` of a plot group from its
    :func:`analyze.association.retention.retention` result (the input of :func:`retention_rule`).

    Parameters
    ----------
    result : RetentionResult
    model : str
        The model's name, for the reason.
    objective : {"supervised", "self_supervised"}
        Its pretraining objective.
    group : str, default "object"
        A plot group of the result.
    """
    if objective not in ("supervised", "self_supervised"):
        raise UserError(f"`objective` {objective!r} is unknown; pass supervised or "
                        "self_supervised.")
    key = ("plot_group", group)
    if key not in result.replicates:
        raise UserError(f"the retention result has no plot group {group!r}; pass one of "
                        f"{[name for scope, name in result.replicates if scope == 'plot_group']}.")
    table = result.table
    rho = table.loc[(table["scope"] == "plot_group") & (table["group"] == group), "rho"]
    return RetentionEstimate(model=model, objective=objective, rho=float(rho.iloc[0]),
                             replicates=np.asarray(result.replicates[key]))


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return _NAN, _NAN
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _retention_difference(estimates: Sequence[RetentionEstimate], confidence: float):
    """Mean supervised minus mean self-supervised rho and its paired interval; None if one side lacks."""
    sides = {objective: [e for e in estimates if e.objective == objective]
             for objective in ("supervised", "self_supervised")}
    if not all(sides.values()):
        return None
    lengths = {len(e.replicates) for e in estimates}
    if len(lengths) != 1:
        raise UserError("the retention replicates differ in length; compute every model's "
                        "retention with the same `options` (same seed, same images).")
    value = np.mean([e.rho for e in sides["supervised"]]) \
        - np.mean([e.rho for e in sides["self_supervised"]])
    replicates = np.mean([e.replicates for e in sides["supervised"]], axis=0) \
        - np.mean([e.replicates for e in sides["self_supervised"]], axis=0)
    return (float(value), *_interval(replicates, confidence))


def retention_rule(by_set: Mapping[str, Sequence[RetentionEstimate]], *,
                   confidence: float = 0.95, group: str = "object") -> FindingRow:
    """Finding 1: supervised large-data models retain more than self-supervised ones.

    Parameters
    ----------
    by_set : mapping of finetuning set -> sequence of RetentionEstimate
        Each model's retention of ``group`` after finetuning on that set; ``objective`` is
        ``"supervised"`` or ``"self_supervised"``.
    confidence : float, default 0.95
    group : str, default "object"
        The comparison group read (named in the reason).

    Returns
    -------
    FindingRow
        ``number``: the difference on the set whose interval reaches lowest, with its interval.
    """
    differences = {name: _retention_difference(estimates, confidence)
                   for name, estimates in by_set.items()}
    missing = [name for name, value in differences.items() if value is None]
    finding = "ranjit-1 retention: supervised minus self-supervised rho"
    described = "; ".join(f"{name}: {value[0]:+.3f} [{value[1]:+.3f}, {value[2]:+.3f}]"
                          for name, value in differences.items() if value is not None)
    if missing or len(differences) < MIN_FINETUNE_SETS:
        why = f"finetuning set {missing[0]!r} lacks a supervised or a self-supervised model" \
            if missing else f"{len(differences)} finetuning set(s), {MIN_FINETUNE_SETS} needed"
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive",
                          f"the {group} group cannot be compared: {why}.")
    binding = min(differences, key=lambda name: differences[name][1])
    value, low, high = differences[binding]
    if all(v[1] > 0 for v in differences.values()):
        verdict, why = "reproduced", "the interval lies above 0 on every finetuning set"
    elif any(v[2] < 0 for v in differences.values()):
        verdict, why = "contradicted", "the interval lies below 0 on some finetuning set"
    else:
        verdict, why = "inconclusive", "some interval includes 0 and none lies below it"
    return FindingRow(finding, value, low, high, verdict,
                      f"{group} group, {why} ({described}).")


def mcnemar_one_sided(toward: int, against: int) -> float:
    """Exact one-sided McNemar p: ``P(Binomial(toward + against, 1/2) >= toward)``.

    ``toward`` and ``against`` are the discordant counts (tests new in one set only). It is
    half of ``statsmodels``' exact two-sided p (``mcnemar(exact=True)``) when ``toward >
    against``, and 1 when there is no discordant pair.
    """
    for name, count in (("toward", toward), ("against", against)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise UserError(f"`{name}` {count!r} is not a count; pass a non-negative integer.")
    if toward + against == 0:
        return 1.0
    return float(stats.binom.sf(toward - 1, toward + against, 0.5))


def _check_table(name: str, table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise UserError(f"`{name}` is not a DataFrame; pass a table indexed by test.")
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise UserError(f"`{name}` lacks the column {missing[0]!r}; pass a table indexed by test "
                        f"with the columns {list(columns)}.")
    if not table.index.is_unique:
        raise UserError(f"`{name}` repeats a test in its index; pass one row per test.")
    return table


def _excludes_zero(table: pd.DataFrame) -> pd.Series:
    return (table["ci_low"] > 0) | (table["ci_high"] < 0)


def new_bias_rule(before: pd.DataFrame, larger: pd.DataFrame, smaller: pd.DataFrame, *,
                  alpha: float = 0.05, steps: tuple[int, int] | None = None) -> FindingRow:
    """Finding 2: finetuning on a larger set introduces more new biases.

    Parameters
    ----------
    before, larger, smaller : DataFrame indexed by test, columns ``ci_low``, ``ci_high``
        Effect-size intervals before finetuning and after finetuning on the larger and on the
        smaller set; the tests common to the three are read.
    alpha : float, default 0.05
    steps : (int, int), optional
        Optimiser steps of the larger and smaller finetunes; unequal steps make it inconclusive.

    Returns
    -------
    FindingRow
        ``number``: the share of discordant new biases that are new in the larger set, with its
        exact (Clopper-Pearson) interval at ``1 - alpha``.
    """
    tables = {name: _check_table(name, table, ("ci_low", "ci_high"))
              for name, table in (("before", before), ("larger", larger), ("smaller", smaller))}
    tests = tables["before"].index.intersection(tables["larger"].index) \
        .intersection(tables["smaller"].index)
    finding = "ranjit-2 new biases: larger vs smaller finetuning set"
    if steps is not None and steps[0] != steps[1]:
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive",
                          f"the finetunes ran {steps[0]} and {steps[1]} optimiser steps; match "
                          "them.")
    if len(tests) < MIN_NEW_BIAS_TESTS:
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive",
                          f"{len(tests)} common test(s), {MIN_NEW_BIAS_TESTS} needed.")
    unbiased = ~_excludes_zero(tables["before"].loc[tests])
    new_larger = unbiased & _excludes_zero(tables["larger"].loc[tests])
    new_smaller = unbiased & _excludes_zero(tables["smaller"].loc[tests])
    toward = int((new_larger & ~new_smaller).sum())
    against = int((new_smaller & ~new_larger).sum())
    p_larger, p_smaller = mcnemar_one_sided(toward, against), mcnemar_one_sided(against, toward)
    counts = (f"{toward} test(s) new only after the larger set, {against} only after the "
              f"smaller, {int((new_larger & new_smaller).sum())} after both, of {len(tests)}")
    if toward + against == 0:
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive",
                          f"no discordant test ({counts}).")
    share = stats.binomtest(toward, toward + against).proportion_ci(1 - alpha, "exact")
    if p_larger < alpha:
        verdict = "reproduced"
    elif p_smaller < alpha:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return FindingRow(finding, toward / (toward + against), float(share.low), float(share.high),
                      verdict, f"exact one-sided McNemar p = {p_larger:.3g} toward the larger "
                      f"set, {p_smaller:.3g} toward the smaller ({counts}).")


def _null_bands(null: pd.DataFrame, tests, column: str) -> dict:
    """Per test: the NULL_BAND percentiles of its random-init finetunes, or None if too few."""
    _check_table("null", null.reset_index(drop=True), ("test", column))
    bands = {}
    for test in tests:
        values = null.loc[null["test"] == test, column].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        bands[test] = tuple(np.percentile(values, NULL_BAND)) \
            if len(values) >= MIN_NULL_FINETUNES else None
    return bands


def _check_bonferroni(table: pd.DataFrame, name: str, alpha: float, k: int) -> None:
    needed = 1 - alpha / k
    level = float(table["confidence"].min())
    if level < needed - 1e-9:
        raise UserError(f"the `{name}` intervals have confidence {level:g} but Bonferroni over "
                        f"{k} test(s) needs {needed:g}; recompute them with `confidence` = "
                        f"{needed:g} or higher.")


def transfer_rule(before: pd.DataFrame, after: pd.DataFrame, null: pd.DataFrame, *,
                  alpha: float = 0.05) -> FindingRow:
    """Finding 3: biases transfer through balanced or natural finetuning.

    Parameters
    ----------
    before : DataFrame indexed by test, columns ``effect_size``, ``ci_low``, ``ci_high``
        d before finetuning.
    after : DataFrame indexed by test, columns ``effect_size``, ``ci_low``, ``ci_high``,
        ``confidence``
        d after a balanced or natural finetune, intervals at ``1 - alpha / k`` or higher.
    null : DataFrame with columns ``test``, ``effect_size``
        d after each random-init finetune (at least 5 per test).
    alpha : float, default 0.05

    Returns
    -------
    FindingRow
        ``number``: d after of the test furthest beyond its null band (the largest |d after|
        when none is beyond), with its interval.
    """
    columns = ("effect_size", "ci_low", "ci_high")
    before = _check_table("before", before, columns)
    after = _check_table("after", after, (*columns, "confidence"))
    finding = "ranjit-3 transfer: d after beyond random-init finetunes"
    tests = [t for t in before.index[_excludes_zero(before)] if t in after.index]
    if not tests:
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive",
                          "no test's d-before interval excludes 0 (nothing to transfer).")
    _check_bonferroni(after.loc[tests], "after", alpha, len(tests))
    bands = _null_bands(null, tests, "effect_size")
    margins, inside = {}, {}
    for test in tests:
        if bands[test] is None:
            continue
        sign, (low, high) = np.sign(before.at[test, "effect_size"]), bands[test]
        row = after.loc[test]
        margins[test] = row["ci_low"] - high if sign > 0 else low - row["ci_high"]
        margins[test] = margins[test] if np.sign(row["effect_size"]) == sign else -np.inf
        inside[test] = low <= row["ci_low"] and row["ci_high"] <= high
    return _transfer_verdict(finding, after, tests, margins, inside)


def _transfer_verdict(finding, after, tests, margins, inside) -> FindingRow:
    scope = f"{len(tests)} test(s) with d before away from 0"
    if not margins:
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive",
                          f"{scope}, but none has {MIN_NULL_FINETUNES} random-init finetunes.")
    best = max(margins, key=margins.get) if max(margins.values()) > 0 \
        else max(tests, key=lambda t: abs(after.at[t, "effect_size"]))
    number = (float(after.at[best, "effect_size"]), float(after.at[best, "ci_low"]),
              float(after.at[best, "ci_high"]))
    transferred = [test for test, margin in margins.items() if margin > 0]
    if transferred:
        return FindingRow(finding, *number, "reproduced",
                          f"{scope}; {len(transferred)} keep their sign beyond the random-init "
                          f"finetunes' {NULL_BAND[0]}-{NULL_BAND[1]} percentiles "
                          f"({', '.join(map(str, transferred))}).")
    if len(inside) == len(tests) and all(inside.values()):
        return FindingRow(finding, *number, "contradicted",
                          f"{scope}; every d-after interval lies inside the random-init band.")
    return FindingRow(finding, *number, "inconclusive",
                      f"{scope}; none is beyond the random-init band, not all lie inside it.")


def amplification_rule(amplification: pd.DataFrame, null: pd.DataFrame, *,
                       alpha: float = 0.05) -> FindingRow:
    """Finding 3b: biases are amplified by finetuning.

    Parameters
    ----------
    amplification : DataFrame indexed by test, columns ``estimate``, ``ci_low``, ``ci_high``,
        ``confidence``
        ``|d after| - |d before|`` with its paired bootstrap interval, at ``1 - alpha / k``.
    null : DataFrame with columns ``test``, ``estimate``
        The same quantity for each random-init finetune (at least 5 per test).
    alpha : float, default 0.05

    Returns
    -------
    FindingRow
        ``number``: the amplification with the highest interval lower end, and its interval.
    """
    table = _check_table("amplification", amplification,
                         ("estimate", "ci_low", "ci_high", "confidence"))
    finding = "ranjit-3b amplification: |d after| - |d before|"
    if table.empty:
        return FindingRow(finding, _NAN, _NAN, _NAN, "inconclusive", "no test was given.")
    _check_bonferroni(table, "amplification", alpha, len(table))
    bands = _null_bands(null, table.index, "estimate")
    best = table["ci_low"].idxmax()
    number = tuple(float(table.at[best, key]) for key in ("estimate", "ci_low", "ci_high"))
    beyond = [t for t in table.index if table.at[t, "ci_low"] > 0 and bands[t] is not None
              and table.at[t, "ci_low"] > bands[t][1]]
    if beyond:
        return FindingRow(finding, *number, "reproduced",
                          f"{len(beyond)} of {len(table)} test(s) amplified above 0 and beyond "
                          f"the random-init finetunes ({', '.join(map(str, beyond))}).")
    if (table["ci_high"] < 0).all():
        return FindingRow(finding, *number, "contradicted",
                          f"every one of {len(table)} test(s) lost strength (interval below 0).")
    return FindingRow(finding, *number, "inconclusive",
                      f"no test of {len(table)} is amplified beyond the random-init finetunes "
                      "and not all lost strength.")


def stage_rows(table: pd.DataFrame, *, stage: str, model: str | None = None) -> pd.DataFrame:
    """The rows of one stage (and model) of a :func:`analyze.association.run.run_association`
    table, indexed by test: the ``before`` / ``after`` inputs of the rules above.

    Parameters
    ----------
    table : DataFrame
        An association table (columns ``test``, ``stage``, ``model``, ``effect_size``,
        ``ci_low``, ``ci_high``, ``confidence``, ...).
    stage : {"before", "after", "change"}
    model : str, optional
        Keep this model's rows only (needed when the stage holds several models).

    Returns
    -------
    DataFrame indexed by test.
    """
    _check_table("table", table.reset_index(drop=True), ("test", "stage", "model"))
    rows = table[table["stage"] == stage]
    if model is not None:
        rows = rows[rows["model"] == model]
    if rows.empty:
        raise UserError(f"the table has no {stage!r} row" + (f" of model {model!r}" if model
                        else "") + "; pass a `stage` and `model` the table holds.")
    if rows["test"].duplicated().any():
        raise UserError(f"the {stage!r} rows repeat a test over several models; pass `model`.")
    return rows.set_index("test")
