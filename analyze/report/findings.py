"""Plain-language findings, with numbers and 95% intervals, computed from a collected table.

Every number here is a mean over replicates (seeds) with the interval
``mean ± 1.96 · sd / sqrt(k)`` (:func:`analyze.metrics.intervals.replicate_summary`). When a
table holds several targets, each seed's value is first averaged over the targets (the same
targets for every base), so that k counts seeds, not seeds x targets; the sentences say so.
A difference between two bases (or two runners) gets the unpaired interval
``d ± 1.96 · sqrt(sd_a² / k_a + sd_b² / k_b)``; every sentence about a difference says whether
that interval includes zero, and none claims a difference whose interval does.

Sign convention: the bias metric (default ``fpr_gap_stereotype``) is positive when the model's
false positives fall more on the group over-represented among the positives of the dataset's
training split, the target's natural direction (stereotype-consistent; one sign across a
correlation sweep, for probes and finetunes alike). Targets differ in which group they are naturally associated with,
so the pooled summaries read the finetuning correlation as the table's ``stereotype_level``,
``P(stereotypical group | y=1)`` (1 = every positive in the group the target is naturally
associated with, 0.5 = balance, 0 = the counter-stereotypical extreme), and
:func:`correlation_cells` puts it in the ``level`` column they group by. A table without it
(no direction recorded) keeps ``level = P(s=1 | y=1)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analyze.effects.format import format_number, format_p
from analyze.effects.models import DEFAULT_N
from analyze.metrics.intervals import difference_from_summaries, replicate_summary
from extract.errors import UserError

BALANCE = 0.5


def fmt(value: float) -> str:
    """A bias, AUC or difference: three decimals (``nan`` spelled out)."""
    return "nan" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


def with_interval(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``, or a note that one replicate gives no interval."""
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return f"{fmt(mean)} (no interval: fewer than 2 replicates)"
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def zero_verdict(low: float, high: float) -> str:
    """Whether an interval excludes zero, in words."""
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return "without an interval, so no claim is made"
    return "its interval includes zero" if low <= 0.0 <= high else "its interval excludes zero"


def choose_size(rows: pd.DataFrame) -> int | None:
    """The training size findings are reported at: 1024 when present, else the largest."""
    sizes = sorted(pd.to_numeric(rows["n"], errors="coerce").dropna().unique()) if "n" in rows.columns else []
    if not sizes:
        return None
    return int(DEFAULT_N if DEFAULT_N in sizes else sizes[-1])


def pooled_summary(rows: pd.DataFrame, *, by: list[str], value: str) -> pd.DataFrame:
    """Per ``by`` group: each seed's mean over targets, then the replicate interval over seeds.

    Returns
    -------
    DataFrame with ``by`` and ``mean, sd, k, ci_low, ci_high, n_targets`` (k = seeds).
    """
    for column in (*by, "seed", value):
        if column not in rows.columns:
            raise UserError(f"the table has no {column!r} column, which the report's summaries need; "
                            "pass the table `biastransfer collect` wrote.")
    rows = rows[np.isfinite(pd.to_numeric(rows[value], errors="coerce"))]
    targets = rows["target"] if "target" in rows.columns else pd.Series("all", index=rows.index)
    per_seed = (rows.assign(_target=targets).groupby([*by, "seed"], sort=True, dropna=False)
                .agg(value=(value, "mean"), n_targets=("_target", "nunique")).reset_index())
    summary = replicate_summary(per_seed, by, "value")
    n_targets = per_seed.groupby(by, sort=True, dropna=False)["n_targets"].max().reset_index(drop=True)
    return summary.assign(n_targets=n_targets.to_numpy())


def difference(a: pd.Series, b: pd.Series) -> tuple[float, float, float]:
    """``a.mean - b.mean`` with the unpaired interval (module docstring); NaN bounds when k < 2."""
    return difference_from_summaries(a["mean"], a["sd"], a["k"], b["mean"], b["sd"], b["k"])


def _interval(row: pd.Series) -> str:
    return with_interval(row["mean"], row["ci_low"], row["ci_high"])


def correlation_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells of the correlation grid (a ``level`` set; ``spec_kind`` correlation when present).

    ``level`` holds the stereotype level (module docstring) when every chosen cell has one,
    and ``natural_level`` then the natural set's share on the same axis, ``max(q, 1 - q)``; the
    original ``P(s=1 | y=1)`` values are kept in ``level_s1`` and ``natural_level_s1``.
    """
    if "level" not in rows.columns:
        return rows.iloc[0:0]
    chosen = rows[rows["level"].notna()]
    if "spec_kind" in chosen.columns:
        chosen = chosen[chosen["spec_kind"] == "correlation"]
    if "stereotype_level" in chosen.columns and len(chosen) and chosen["stereotype_level"].notna().all():
        chosen = chosen.assign(level_s1=chosen["level"], level=chosen["stereotype_level"].round(6))
        if "natural_level" in chosen.columns:
            natural = chosen["natural_level"]
            chosen = chosen.assign(natural_level_s1=natural, natural_level=np.maximum(natural, 1.0 - natural))
    return chosen


def strongest_and_balanced(levels) -> tuple[float, float]:
    """The level farthest from balance (the higher one on a tie) and the one nearest to it."""
    levels = sorted(float(v) for v in levels)
    return (max(levels, key=lambda v: (abs(v - BALANCE), v)), min(levels, key=lambda v: (abs(v - BALANCE), v)))


def level_name(cells: pd.DataFrame) -> str:
    """How the ``level`` column of :func:`correlation_cells` reads in a sentence."""
    return ("stereotype-consistent correlation level P(stereotypical group | y=1)" if "level_s1" in cells.columns
            else "correlation level")


def _context(summary: pd.DataFrame, n: int | None) -> str:
    seeds, targets = int(summary["k"].max()), int(summary["n_targets"].max())
    where = f"n = {n}, " if n is not None else ""
    return f"{where}mean over {targets} target{'s' * (targets != 1)}, 95% intervals over {seeds} seeds"


def compare_biased_with_controls(summary: pd.DataFrame, *, condition: str, metric: str, context: str) -> list[str]:
    """One sentence per biased base: its bias vs the control with the largest bias, and the difference."""
    if "base_kind" not in summary.columns:
        return []
    biased, controls = summary[summary["base_kind"] == "biased"], summary[summary["base_kind"] == "control"]
    if biased.empty or controls.empty:
        return []
    top = controls.loc[controls["mean"].idxmax()]
    sentences = []
    for _, row in biased.iterrows():
        d, low, high = difference(row, top)
        if math.isfinite(low) and low > 0:
            shows = ", so these data show the biased base transferring more bias than that control"
        elif math.isfinite(high) and high < 0:
            shows = ", so these data show the biased base transferring less bias than that control"
        else:
            shows = ", so these data do not show a difference" if math.isfinite(low) else ""
        sentences.append(
            f"{condition} ({context}), the biased base {row['backbone']} has a {metric} of {_interval(row)} vs "
            f"{_interval(top)} for {top['backbone']}, the control base with the largest mean; the difference is "
            f"{with_interval(d, low, high)} and {zero_verdict(low, high)}{shows}.")
    return sentences


def _base_order(summary: pd.DataFrame) -> list[str]:
    kinds = summary.drop_duplicates("backbone").set_index("backbone")
    rank = {"biased": 0, "control": 1}
    if "base_kind" not in kinds.columns:
        return sorted(kinds.index.astype(str))
    return sorted(kinds.index, key=lambda b: (rank.get(kinds.loc[b, "base_kind"], 2), str(b)))


def fall_toward_balance(summary: pd.DataFrame, *, strongest: float, balanced: float, metric: str) -> list[str]:
    """Per base: the bias at the strongest level vs at the level nearest balance, and the change."""
    sentences = []
    for backbone in _base_order(summary):
        part = summary[summary["backbone"] == backbone].set_index("level")
        if strongest not in part.index or balanced not in part.index:
            continue
        high, low_level = part.loc[strongest], part.loc[balanced]
        change, lo, hi = difference(low_level, high)
        verb = ("falls" if math.isfinite(hi) and hi < 0 else "rises" if math.isfinite(lo) and lo > 0
                else "does not change detectably")
        kind = f" ({high['base_kind']})" if "base_kind" in part.columns else ""
        sentences.append(f"{backbone}{kind}: the {metric} {verb} from {_interval(high)} at level {strongest:g} to "
                         f"{_interval(low_level)} at level {balanced:g} (change {with_interval(change, lo, hi)}; "
                         f"{zero_verdict(lo, hi)}).")
    return sentences


def correlation_findings(rows: pd.DataFrame, *, metric: str, performance: str = "auc") -> list[str]:
    """Findings from the correlation grid of one runner (rows of one runner only)."""
    cells = correlation_cells(rows)
    if cells.empty:
        return []
    n = choose_size(cells)
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    by = ["backbone", "base_kind", "level"] if "base_kind" in cells.columns else ["backbone", "level"]
    summary = pooled_summary(cells, by=by, value=metric)
    if summary.empty:
        return [f"No correlation cell has a finite {metric}, so nothing is said about correlation."]
    strongest, balanced = strongest_and_balanced(summary["level"].unique())
    context = _context(summary, n)
    found = compare_biased_with_controls(summary[summary["level"] == strongest], metric=metric, context=context,
                                         condition=f"At the strongest {level_name(cells)}, {strongest:g}")
    if strongest != balanced:
        falls = fall_toward_balance(summary, strongest=strongest, balanced=balanced, metric=metric)
        if falls:
            found += [f"Toward balance ({context}): {falls[0]}"] + [f"Toward balance: {s}" for s in falls[1:]]
        if performance in cells.columns:
            found += _auc_cost(cells, by, strongest=strongest, balanced=balanced, performance=performance)
    elif not found:
        found.append(f"Only level {strongest:g} was run, so nothing can be said about the trend with correlation.")
    return found


def _auc_cost(cells, by, *, strongest: float, balanced: float, performance: str) -> list[str]:
    auc = pooled_summary(cells, by=by, value=performance)
    if "base_kind" in auc.columns and (auc["base_kind"] == "biased").any():
        auc = auc[auc["base_kind"] == "biased"]
    sentences = []
    for backbone, part in auc.groupby("backbone", sort=True):
        part = part.set_index("level")
        if strongest in part.index and balanced in part.index:
            d, lo, hi = difference(part.loc[balanced], part.loc[strongest])
            sentences.append(f"{backbone}: {performance} {_interval(part.loc[strongest])} at level {strongest:g} vs "
                             f"{_interval(part.loc[balanced])} at level {balanced:g} (change "
                             f"{with_interval(d, lo, hi)}; {zero_verdict(lo, hi)}).")
    return [f"Test {performance} across the same move: " + " ".join(sentences)] if sentences else []


def natural_findings(rows: pd.DataFrame, *, metric: str) -> list[str]:
    """The biased base vs the controls on the natural finetuning distribution (``spec_kind`` natural)."""
    if "spec_kind" not in rows.columns or "base_kind" not in rows.columns:
        return []
    cells = rows[rows["spec_kind"] == "natural"]
    if cells.empty:
        return []
    n = choose_size(cells)
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    summary = pooled_summary(cells, by=["backbone", "base_kind"], value=metric)
    if summary.empty:
        return []
    return compare_biased_with_controls(summary, metric=metric, context=_context(summary, n),
                                        condition="At the natural level (finetuning sets drawn as the data come)")


def p_words(pvalue: float) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    text = format_p(pvalue)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _term_phrase(row: pd.Series) -> str:
    low, high = row["ci_low"], row["ci_high"]
    if low > 0 or high < 0:
        direction = ("positive" if low > 0 else "negative") + ", its interval excludes zero"
    else:
        direction = "its interval includes zero" if low <= 0 <= high else "no interval (degenerate fit)"
    return (f"{row['term']} {format_number(row['coef'], 3)} [{format_number(low, 3)}, {format_number(high, 3)}] "
            f"({p_words(row['p_value'])}; {direction})")


def effect_findings(coefficients: pd.DataFrame, *, title: str) -> list[str]:
    """One sentence per fit (estimator) of a model's coefficient table, in table order: every
    non-intercept term with its CI. Estimators can disagree (e.g. errors cluster-robust over a
    few targets vs a random-intercept model), so each is stated."""
    if coefficients is None or coefficients.empty:
        return []
    model = coefficients.iloc[0]["model"]
    coefficients = coefficients[coefficients["model"] == model]
    sentences = []
    for _, fit in coefficients.groupby("estimator", sort=False):
        terms = fit[fit["term"] != "Intercept"]
        first = fit.iloc[0]
        groups = f", {int(first['n_groups'])} groups" if not pd.isna(first["n_groups"]) else ""
        caveat = f" Note: {first['note']}." if first["note"] else ""
        sentences.append(f"{title} ({first['errors']}; {int(first['n_obs'])} rows{groups}): "
                         + "; ".join(_term_phrase(r) for _, r in terms.iterrows()) + "." + caveat)
    return sentences


def salience_findings(salience: pd.DataFrame, *, truth: str | None) -> list[str]:
    """The most and least salient targets with their intervals, and the rank agreement with the truth."""
    table = salience.dropna(subset=["salience"]).sort_values("salience")
    if table.empty:
        return []
    top, bottom = table.iloc[-1], table.iloc[0]
    found = [f"Salience ranges from {with_interval(bottom['salience'], bottom['ci_low'], bottom['ci_high'])} "
             f"({bottom['target']}) to {with_interval(top['salience'], top['ci_low'], top['ci_high'])} "
             f"({top['target']}) over {len(table)} targets."]
    if truth is not None and truth in table.columns and table[truth].notna().sum() >= 3:
        known = table.dropna(subset=[truth])
        rho, pvalue = spearmanr(known[truth], known["salience"])
        found.append(f"Estimated salience and the generator's {truth} agree in rank with Spearman ρ = {rho:.2f} "
                     f"({'p < 0.001' if pvalue < 0.001 else f'p = {pvalue:.2g}'}, {len(known)} targets).")
    return found
