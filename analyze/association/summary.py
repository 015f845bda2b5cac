"""Summary, verdict and Markdown of the association-change experiment [R].

:func:`summarize_experiment` folds the per-seed table of
:func:`analyze.association.experiment.run_experiment` into one row per (test, quantity):

=====================  ==========================================================================
quantity               what ``mean`` is, and its interval
=====================  ==========================================================================
``strong``             mean change (after - before) over the strong condition's seeds
``balanced``           the same for the balanced condition
``strong - balanced``  difference of the two means; ``se = sqrt(se_strong^2 + se_balanced^2)``
                       (unpaired: independent finetunes), t interval with Welch's df
``random-init null``   mean of the measure itself (not a change) over random-init networks
=====================  ==========================================================================

``ci_low, ci_high`` = ``mean +- z * se`` with ``z`` the normal quantile (1.96 at 95 %), the
issue's interval; ``t_ci_low, t_ci_high`` use the t quantile instead, wider with few seeds
(2.78 at 5 seeds). ``se = sd / sqrt(k)``. ``mean_before`` / ``mean_after``: the measure's
mean before and after finetuning (conditions only).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analyze.metrics.intervals import difference_from_summaries, replicate_ci

QUANTITIES = ("strong", "balanced", "strong - balanced", "random-init null")
SUMMARY_COLUMNS = ["test", "kind", "measure", "quantity", "level", "k", "mean", "sd", "se", "ci_low",
                   "ci_high", "t_ci_low", "t_ci_high", "mean_before", "mean_after", "confidence"]


def _spread(values: np.ndarray, confidence: float) -> dict:
    values = np.asarray(values, dtype=float)
    k = len(values)
    mean, sd = float(values.mean()), float(values.std(ddof=1)) if k > 1 else np.nan
    normal = replicate_ci(values, confidence=confidence, method="normal")
    t = replicate_ci(values, confidence=confidence, method="t")
    return {"k": k, "mean": mean, "sd": sd, "se": sd / np.sqrt(k), "ci_low": float(normal.low),
            "ci_high": float(normal.high), "t_ci_low": float(t.low), "t_ci_high": float(t.high)}


def _difference(first: dict, second: dict, confidence: float) -> dict:
    """Unpaired difference of two means with a normal and a Welch t interval."""
    sides = (first["mean"], first["sd"], first["k"], second["mean"], second["sd"], second["k"])
    mean, low, high = difference_from_summaries(*sides, confidence=confidence, method="normal")
    _, t_low, t_high = difference_from_summaries(*sides, confidence=confidence, method="t")
    se = float(np.sqrt(first["se"] ** 2 + second["se"] ** 2))
    return {"k": first["k"] + second["k"], "mean": mean, "sd": np.nan, "se": se, "ci_low": low,
            "ci_high": high, "t_ci_low": t_low, "t_ci_high": t_high}


def summarize_experiment(table: pd.DataFrame, null: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (test, quantity); see the module docstring.

    Parameters
    ----------
    table : DataFrame
        Per-seed rows (``condition``, ``level``, ``test``, ``before``, ``after``, ``change``).
    null : DataFrame
        Random-init rows (``test``, ``value``).
    confidence : float, default 0.95
    """
    rows = []
    for test, group in table.groupby("test", sort=False):
        identity = {"test": test, "kind": group["kind"].iloc[0], "measure": group["measure"].iloc[0]}
        found = {}
        for condition in ("strong", "balanced"):
            part = group[group["condition"] == condition]
            found[condition] = _spread(part["change"].to_numpy(), confidence)
            rows.append({**identity, "quantity": condition, "level": float(part["level"].iloc[0]),
                         **found[condition], "mean_before": float(part["before"].mean()),
                         "mean_after": float(part["after"].mean())})
        rows.append({**identity, "quantity": "strong - balanced",
                     **_difference(found["strong"], found["balanced"], confidence)})
        values = null.loc[null["test"] == test, "value"].to_numpy()
        rows.append({**identity, "quantity": "random-init null", **_spread(values, confidence)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).assign(confidence=confidence)


def verdict(summary: pd.DataFrame) -> pd.DataFrame:
    """The issue's three claims per test, as booleans.

    ``strong_raises``: the strong condition's interval lies above zero. ``balanced_less``: the
    interval of strong - balanced lies above zero. ``null_near_zero``: the random-init null's
    mean lies within one sd of zero (its offset is smaller than its spread).
    """
    rows = []
    for test, group in summary.groupby("test", sort=False):
        by = group.set_index("quantity")
        rows.append({"test": test, "strong_raises": bool(by.at["strong", "ci_low"] > 0),
                     "balanced_less": bool(by.at["strong - balanced", "ci_low"] > 0),
                     "null_near_zero": bool(abs(by.at["random-init null", "mean"])
                                            <= by.at["random-init null", "sd"])})
    return pd.DataFrame(rows, columns=["test", "strong_raises", "balanced_less", "null_near_zero"])


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.4g}"


def summary_markdown(summary: pd.DataFrame, *, config: dict, base: str, cache: str) -> str:
    """A short Markdown report: setup, the summary table, the verdict."""
    percent = f"{100 * summary['confidence'].iloc[0]:g}"
    lines = [
        "# Association change under correlated vs balanced finetuning",
        "",
        f"Base `{base}` finetuned (every layer) on `{cache}`: target `{config['target']}`, sensitive "
        f"`dark_skin`, strong level {config['strong_level']}, balanced level {config['balanced_level']}, "
        f"n = {config['n']} training rows, seeds {config['seeds']}; concept sets of {config['per_set']} "
        f"images from the `{config['concept_split']}` split (disjoint from every finetuning image); "
        f"{len(config['null_seeds'])} random-init networks in the null. Finetuning protocol: "
        f"`{json.dumps(config['finetune'], sort_keys=True)}`.",
        "",
        f"Change = after - before on the same images (positive: the target moved towards the dark group). "
        f"Interval: mean +- z se ({percent} %, normal), t interval beside it. The null row is the measure "
        "itself under random-init networks, not a change.",
        "",
        "| test | quantity | k | mean | sd | interval | t interval | before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(f"| {row.test} | {row.quantity} | {row.k} | {_fmt(row.mean)} | {_fmt(row.sd)} | "
                     f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}] | [{_fmt(row.t_ci_low)}, {_fmt(row.t_ci_high)}] "
                     f"| {_fmt(row.mean_before)} | {_fmt(row.mean_after)} |")
    lines += ["", "| test | strong raises (interval > 0) | balanced clearly less (difference > 0) | "
              "null near zero (abs(mean) <= sd) |", "|---|---|---|---|"]
    for row in verdict(summary).itertuples(index=False):
        yes = {True: "yes", False: "**no**"}
        lines.append(f"| {row.test} | {yes[row.strong_raises]} | {yes[row.balanced_less]} | "
                     f"{yes[row.null_near_zero]} |")
    return "\n".join(lines) + "\n"
