"""The findings table: one row per finding of the papers, with its number, interval, rule and verdict.

:func:`analyze.reproduce.claims.build_findings` (``analyze.reproduce.build_findings``) reads the collected results table (``biastransfer collect``; both
runners), the per-target table (:func:`analyze.reproduce.measures.target_table`), the salience
table, the pairs experiment's table and, optionally, the geography experiment's
``findings.csv``; its rows are W&R's findings 1-5 for both runners
(:func:`analyze.reproduce.claims.paper_findings`, which reads finding 3's rule through
:func:`size_finding`, finding 4's through :func:`curation_findings` and finding 5's through
:func:`underrep_finding`), then the toolkit's own rows: 6, the salience estimates against the
generator's truth (Spearman with a Fisher-z interval), the toolkit's validation and not a claim
of the paper; 7, W&R's geographic finding from the geography experiment's results when given.

:func:`transfer_findings` and :func:`effect_findings` (the toolkit's ``bias ~ base * (...)``
model on a correlation grid) stay as library functions for tables of the demo's design; they
are not rows of the reproduce table.

Every row carries its ``runner`` (``finetune`` or ``probe (proxy)``: probe rows never count as
reproducing a finetune claim) and a ``deviation`` from the paper's design. Intervals come from
:mod:`analyze.metrics.intervals` through the report's pooled summaries (each seed's mean over
targets, then Student's t over seeds; differences paired by seed where the rows match, Welch's
otherwise), and from :mod:`analyze.reproduce.inference` where a claim pools over targets or a
ratio needs a bootstrap. Cells the diagnosis flags (``EXCLUDING_FLAGS``) are left out; a
finding whose models have a mean test AUC below the floor, or that has fewer than
:data:`~analyze.report.findings.MIN_CLEAN_REPLICATES` clean seeds, is inconclusive. The verdict
rules are in :mod:`analyze.reproduce.verdicts`; W&R's findings as the paper measured them, for
both runners, in :mod:`analyze.reproduce.claims`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analyze.effects.fit import coefficient_table, fit_model
from analyze.effects.models import fit_general, fit_paper, paper_rows, with_derived_columns
from analyze.metrics.intervals import ConfidenceInterval, difference_ci, replicate_ci
from analyze.report.findings import (
    MIN_CLEAN_REPLICATES,
    clean_cells,
    correlation_cells,
    difference_interval,
    pooled_summary,
)
from analyze.reproduce.inference import FEW_CLUSTERS, bootstrap_cut, target_pooled_ci, wild_cluster_bootstrap
from analyze.reproduce.measures import competence_note, oriented_column
from analyze.reproduce.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Verdict,
    all_above_zero,
    at_least,
    cut_rule,
    inconclusive,
    shrink_rule,
    sign_rule,
)
from analyze.runners import RUNNERS
from extract.errors import UserError
from extract.io import write_text

COLUMNS = ["id", "finding", "runner", "setting", "number", "ci_low", "ci_high", "interval", "rule", "verdict",
           "reason", "deviation"]
FINETUNE = "finetune"
PROBE = "probe (proxy)"  # a fast proxy: never counted as reproducing a finetune claim
RUNNER_LABELS = {"finetune": FINETUNE, "probe": PROBE}
PROBE_DEVIATION = "linear probe on frozen features (paper: full finetuning)"
CURATION_BEFORE = 0.8  # stereotype level: 20% of positives counter-stereotypical
CURATION_AFTER = 0.7   # 30%
SALIENCE_FLOOR = 0.9
SALIENCE_OWN = "toolkit's own validation, not a paper claim (of its salience estimate against the generator)"
MIN_PAPER_ROWS = 16  # W&R's model on fewer rows (the paper: 22) decides nothing
COMPARED = ("biased", "control")  # the base kinds the findings compare
INTERACTIONS = (("correlation_strength", 1, "grows with the finetuning correlation strength"),
                ("salience", 1, "grows with salience"),
                ("log2_n", -1, "shrinks as n grows"))
__all__ = ["COLUMNS", "FINETUNE", "PROBE", "Estimate", "finding_row", "findings_markdown",
           "spearman_interval", "verdict_counts", "write_findings"]


@dataclass(frozen=True)
class Estimate:
    """A finding's number with its interval and the words naming how the interval was made."""

    number: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    interval: str = ""


def finding_row(fid: str, finding: str, verdict: Verdict, *, runner: str = "", setting: str = "",
                estimate: Estimate = Estimate(), deviation: str = "") -> dict:
    """One row of the findings table (:data:`COLUMNS`); a probe row's deviation says it is a proxy."""
    runner = RUNNER_LABELS.get(runner, runner)
    if runner == PROBE and PROBE_DEVIATION not in deviation:
        deviation = "; ".join(x for x in (PROBE_DEVIATION, deviation) if x)
    return {"id": fid, "finding": finding, "runner": runner, "setting": setting, "number": _float(estimate.number),
            "ci_low": _float(estimate.low), "ci_high": _float(estimate.high), "interval": estimate.interval,
            "rule": verdict.rule, "verdict": verdict.verdict, "reason": verdict.reason, "deviation": deviation}


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _prepare(rows: pd.DataFrame, *, metric: str, auc_floor: float) -> tuple[pd.DataFrame, str | None]:
    """Clean rows, or the reason they cannot decide (nothing left, too few seeds, below the AUC floor)."""
    if rows.empty:
        return rows, "no cells for it in the results"
    rows, note = clean_cells(rows)
    if rows.empty:
        return rows, f"every cell was left out by the diagnosis ({note})"
    rows = rows[np.isfinite(pd.to_numeric(rows[metric], errors="coerce"))]
    if "base_kind" in rows.columns and rows["base_kind"].isin(COMPARED).any():
        rows = rows[rows["base_kind"].isin(COMPARED)]  # scratch and ImageNet are not part of these rules
    seeds = rows.groupby("backbone")["seed"].nunique()
    if seeds.empty or seeds.min() < MIN_CLEAN_REPLICATES:
        return rows, (f"fewer than {MIN_CLEAN_REPLICATES} clean seeds per base "
                      f"({', '.join(f'{b}: {k}' for b, k in seeds.items()) or 'none'})"
                      + (f"; {note}" if note else ""))
    if "auc" in rows.columns:
        auc = rows.groupby("backbone")["auc"].mean()
        weak = auc[auc < auc_floor]
        if len(weak):
            return rows, ("the models did not learn the target: mean test AUC "
                          + ", ".join(f"{v:.3f} ({b})" for b, v in weak.items()) + f" below the floor {auc_floor:g}")
    return rows, None


def _kinds(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    kinds = rows.drop_duplicates("backbone").set_index("backbone")["base_kind"].astype(str)
    return sorted(kinds[kinds == "biased"].index), sorted(kinds[kinds == "control"].index)


def _differences(rows: pd.DataFrame, *, metric: str, method: str):
    """Per control: (label, estimate, low, high, method words) of biased minus that control."""
    biased, controls = _kinds(rows)
    if len(biased) != 1 or not controls:
        return None, f"needs one biased base and at least one control (found {len(biased)} and {len(controls)})"
    summary = pooled_summary(rows, by=["backbone"], value=metric, method=method).set_index("backbone")
    out = []
    for control in controls:
        if control not in summary.index:
            continue
        ci = difference_interval(summary.loc[biased[0]], summary.loc[control], method=method)
        out.append((f"biased - {control}", float(ci.estimate), float(ci.low), float(ci.high), ci.method))
    return out, None


def _most_common_n(rows: pd.DataFrame):
    n = pd.to_numeric(rows["n"], errors="coerce").dropna()
    return None if n.empty else int(n.value_counts().sort_index(ascending=False).idxmax())


# -- finding 1 -----------------------------------------------------------------------------------


def _setting_rows(table: pd.DataFrame, runner: str, setting: str, n) -> tuple[pd.DataFrame, str]:
    rows = table[RUNNERS.rows(table, runner)] if "runner" in table.columns else table.iloc[0:0]
    if setting == "natural":
        rows = rows[rows["spec_kind"] == "natural"] if "spec_kind" in rows.columns else rows.iloc[0:0]
        chosen = n if n is not None else _most_common_n(rows)
        rows = rows[pd.to_numeric(rows["n"], errors="coerce") == chosen] if chosen is not None else rows
        return rows, f"natural level, n = {chosen}"
    cells = correlation_cells(rows)
    if cells.empty:
        return cells, "strongest stereotype level"
    chosen = n if n is not None else _most_common_n(cells)
    cells = cells[pd.to_numeric(cells["n"], errors="coerce") == chosen]
    if cells.empty:
        return cells, "strongest stereotype level"
    strongest = float(cells["level"].max())
    return cells[cells["level"] == strongest], f"stereotype level {strongest:g}, n = {chosen}"


def _competence(rows: pd.DataFrame, biased_label: str) -> str:
    """Both AUCs of a biased - control comparison (``biased - <control>``), with the competence caveat."""
    if "auc" not in rows.columns:
        return ""
    auc = rows.groupby("backbone")["auc"].mean()
    biased, _ = _kinds(rows)
    control = biased_label.split(" - ", 1)[-1]
    if len(biased) != 1 or control not in auc.index:
        return ""
    return competence_note(float(auc[biased[0]]), float(auc[control]), name_a="biased", name_b=control)


def transfer_findings(table: pd.DataFrame, *, metric: str, method: str, auc_floor: float, n=None) -> list[dict]:
    """Finding 1: the biased base's gap exceeds the largest of the controls' mean gaps (per runner and setting)."""
    found = []
    name = "biased base's stereotype-direction FPR gap > the largest control's"
    for fid, runner, setting in (("1a", "probe", "natural"), ("1b", "probe", "strongest"),
                                 ("1c", "finetune", "natural"), ("1d", "finetune", "strongest")):
        rows, where = _setting_rows(table, runner, setting, n.get(runner) if isinstance(n, dict) else n)
        rule = "the interval of biased - (the control with the largest mean gap) lies above 0"
        rows, problem = _prepare(rows, metric=metric, auc_floor=auc_floor)
        if problem is None:
            diffs, problem = _differences(rows, metric=metric, method=method)
        deviation = "" if setting == "natural" else ("strongest stereotype level of the correlation grid "
                                                     "(paper: skewz sets, 80%)")
        if problem is not None:
            found.append(finding_row(fid, name, inconclusive(rule, problem), runner=runner, setting=where,
                                     deviation=deviation))
            continue
        label, est, low, high, words = min(diffs, key=lambda d: d[1])  # the control with the largest mean gap
        verdict = all_above_zero([(label, est, low, high)], what="biased - largest control difference")
        reason = "; ".join(x for x in (verdict.reason, _competence(rows, label)) if x)
        found.append(finding_row(fid, name, Verdict(verdict.verdict, rule, reason), runner=runner,
                          setting=f"{where}; largest control: {label.split(' - ', 1)[-1]}",
                          estimate=Estimate(est, low, high, words),
                          deviation=deviation))
    return found


# -- finding 2 -----------------------------------------------------------------------------------


def effect_findings(table: pd.DataFrame, *, metric: str, auc_floor: float, n=None) -> list[dict]:
    """Finding 2: interaction signs of the effect model (probes), and W&R's mixed model beside them."""
    found = []
    rows = table[RUNNERS.rows(table, "probe") & table["base_kind"].isin(["biased", "control"])] \
        if {"runner", "base_kind"} <= set(table.columns) else table.iloc[0:0]
    rows, _note = clean_cells(rows) if len(rows) else (rows, None)
    problem = None
    if rows.empty:
        problem = "no clean probe cells of the biased and control bases"
    elif "salience" not in rows.columns or rows["salience"].isna().all():
        problem = "no salience estimates attached to the results"
    elif "auc" in rows.columns and rows["auc"].mean() < auc_floor:
        problem = f"the models did not learn the targets: mean test AUC {rows['auc'].mean():.3f} below {auc_floor:g}"
    coefs = None
    if problem is None:
        try:
            coefs = coefficient_table(fit_general(rows, metric=metric, estimators=("ols",)))
        except UserError as exc:
            problem = f"the effect model could not be fitted: {exc}"
    for i, (term, sign, words) in enumerate(INTERACTIONS):
        name = f"biased - control difference {words}"
        full = f"base[T.biased]:{term}"
        rule_words = f"the interval of {full} lies {'above' if sign > 0 else 'below'} 0"
        fid = f"2{'abc'[i]}"
        if problem is not None:
            found.append(finding_row(fid, name, inconclusive(rule_words, problem), runner="probe"))
            continue
        hit = coefs[coefs["term"] == full]
        if hit.empty:
            missing = f"{full} is not in the model ({term} is constant in the cells or a base kind is missing)"
            found.append(finding_row(fid, name, inconclusive(rule_words, missing), runner="probe",
                                     setting=str(coefs["formula"].iloc[0])))
            continue
        if term == "salience" and _straddles_balance(rows):
            found.append(_salience_row(rows, metric=metric, fid=fid, name=name))
            continue
        est = _cluster_interval(rows, str(hit.iloc[0]["formula"]), full, hit.iloc[0])
        found.append(finding_row(fid, name, sign_rule(est.number, est.low, est.high, expected=sign, term=full),
                                 runner="probe", setting=f"{hit.iloc[0]['formula']}, OLS, clustered by target",
                                 estimate=est))
    found += _paper_findings(rows, metric=metric, problem=problem, n=n)
    return found


def _straddles_balance(rows: pd.DataFrame) -> bool:
    """Whether the cells' correlation strength lies on both sides of balance (stereotype level 0.5)."""
    strength = with_derived_columns(rows)["correlation_strength"].astype(float)
    return bool(strength.min() < 0 < strength.max())


def _salience_row(rows: pd.DataFrame, *, metric: str, fid: str, name: str) -> dict:
    """Finding 2b where the grid spans balance: the additive ``base:salience`` term averages a positive
    effect above balance and a negative one below it, so the salience test reads the term the design
    identifies, ``base[T.biased]:correlation_strength:salience`` (bias per unit of correlation strength
    grows with salience)."""
    full = "base[T.biased]:correlation_strength:salience"
    rule = f"the interval of {full} lies above 0 (the additive base:salience term is not identified over a grid " \
           "on both sides of balance)"
    formula = f"{metric} ~ base * correlation_strength * salience"
    try:
        coefs = coefficient_table([fit_model(with_derived_columns(rows), formula, estimator="ols", groups="target",
                                             name="three-way")])
    except UserError as exc:
        return finding_row(fid, name, inconclusive(rule, f"the model could not be fitted: {exc}"), runner="probe")
    hit = coefs[coefs["term"] == full]
    if hit.empty:
        return finding_row(fid, name, inconclusive(rule, f"{full} is not in the model (a base kind or a predictor is "
                                                         "constant)"), runner="probe", setting=formula)
    est = _cluster_interval(rows, formula, full, hit.iloc[0])
    verdict = sign_rule(est.number, est.low, est.high, expected=1, term=full)
    return finding_row(fid, name, Verdict(verdict.verdict, rule, verdict.reason), runner="probe",
                       setting=f"{formula}, OLS, clustered by target", estimate=est)


def _cluster_interval(rows: pd.DataFrame, formula: str, term: str, coef: pd.Series) -> Estimate:
    """The OLS coefficient's interval clustered by target: the wild cluster bootstrap with fewer than
    :data:`~analyze.reproduce.inference.FEW_CLUSTERS` targets, the cluster-robust Wald interval otherwise."""
    import statsmodels.formula.api as smf

    data = with_derived_columns(rows)
    model = smf.ols(formula, data=data)
    clusters = data.loc[model.data.row_labels, "target"].astype(str).to_numpy()
    if len(set(clusters)) >= FEW_CLUSTERS:
        return Estimate(coef["coef"], coef["ci_low"], coef["ci_high"],
                        "95% interval of the coefficient (cluster-robust by target)")
    if len(set(clusters)) < 2:
        return Estimate(coef["coef"], interval="one target: no clustered interval")
    ci = wild_cluster_bootstrap(model.exog, model.endog, clusters, term=model.exog_names.index(term),
                                weights="webb", n_boot=999, seed=0)
    return Estimate(ci.estimate, ci.low, ci.high, f"95% {ci.method}")


def _paper_findings(rows: pd.DataFrame, *, metric: str, problem: str | None, n=None) -> list[dict]:
    found, coefs = [], None
    if problem is None:
        try:
            data = paper_rows(rows, n=n, metric=metric)
            coefs = coefficient_table(fit_paper(data, model="paper", estimators=("mixed",)))
        except UserError as exc:
            problem = f"W&R's model could not be fitted: {exc}"
    for fid, term, words in (("2d", "Saliency", "grows with salience"), ("2e", "Skew", "grows with skew")):
        name = f"W&R's Value ~ Saliency + Skew (mixed by attribute): Value {words}"
        rule = f"the interval of {term} lies above 0"
        if problem is not None or coefs is None or coefs[coefs["term"] == term].empty:
            found.append(finding_row(fid, name, inconclusive(rule, problem or f"{term} is not in the fitted model"),
                              runner="probe"))
            continue
        r = coefs[coefs["term"] == term].iloc[0]
        few = int(r["n_obs"]) < MIN_PAPER_ROWS
        verdict = (inconclusive(f"the interval of {term} lies above 0 on >= {MIN_PAPER_ROWS} rows",
                                f"only {int(r['n_obs'])} rows (the paper: 22; at least {MIN_PAPER_ROWS} needed)")
                   if few else sign_rule(r["coef"], r["ci_low"], r["ci_high"], expected=1, term=term))
        found.append(finding_row(fid, name, verdict, runner="probe",
                          setting=f"{r['formula']}, mixed model, {int(r['n_obs'])} rows",
                          estimate=Estimate(r["coef"], r["ci_low"], r["ci_high"],
                                            "95% Wald interval of the coefficient"),
                          deviation="probe-estimated salience and Skew of the training rows (paper: salience from "
                                    "scratch models, Skew over the whole dataset)"))
    return found


# -- finding 3 -----------------------------------------------------------------------------------


def _size_rows(table: pd.DataFrame, runner: str) -> tuple[pd.DataFrame, list]:
    rows = table[RUNNERS.rows(table, runner) & (table["spec_kind"] == "natural")] \
        if {"runner", "spec_kind"} <= set(table.columns) else table.iloc[0:0]
    return rows, sorted(pd.to_numeric(rows["n"], errors="coerce").dropna().unique()) if len(rows) else []


def _cell_differences(rows: pd.DataFrame, biased: str, control: str, *, metric: str) -> pd.DataFrame:
    """Per (target, seed): biased minus control, on the cells both hold."""
    means = rows.groupby(["backbone", "target", "seed"])[metric].mean()
    both = means.loc[biased].to_frame("biased").join(means.loc[control].rename("control"), how="inner")
    return (both["biased"] - both["control"]).rename("difference").reset_index()


def _shrink(d_min: pd.DataFrame, d_max: pd.DataFrame, *, method: str):
    """diff(n_min) - diff(n_max): t over targets of each target's shrink, or Welch over seeds with one target."""
    per_target = (d_min.groupby("target")["difference"].mean() - d_max.groupby("target")["difference"].mean()).dropna()
    if len(per_target) >= 2:
        ci = replicate_ci(per_target.to_numpy(dtype=float), method=method)
        return ConfidenceInterval(ci.estimate, ci.low, ci.high, f"{ci.method} over {len(per_target)} targets")
    return difference_ci(d_min["difference"], d_max["difference"], paired=False, method=method)


def _sweep_notes(rows: pd.DataFrame, sizes: list, biased: str, control: str) -> str:
    """AUC rising with n per base, whether scratch is lowest at the smallest n, and the raw gap at the largest."""
    if "auc" not in rows.columns:
        return ""
    n = pd.to_numeric(rows["n"], errors="coerce")
    auc = rows.assign(_n=n).groupby(["backbone", "_n"])["auc"].mean()
    kinds = rows.drop_duplicates("backbone").set_index("backbone")["base_kind"].astype(str)
    shown = [b for b in (biased, control, *kinds[kinds == "scratch"].index) if b in auc.index.get_level_values(0)]
    words = ["AUC by n: " + "; ".join(f"{b} " + " -> ".join(f"{auc[b].get(s, np.nan):.3f}" for s in sizes)
                                      for b in shown)]
    first = auc.xs(sizes[0], level="_n") if sizes[0] in auc.index.get_level_values(1) else pd.Series(dtype=float)
    scratch = [b for b in kinds[kinds == "scratch"].index if b in first.index]
    if scratch and len(first):
        words.append(f"scratch {'is' if first.idxmin() in scratch else 'is not'} lowest at n = {int(sizes[0])}")
    if "fpr_gap" in rows.columns:
        last = rows[n == sizes[-1]].groupby("backbone")["fpr_gap"].mean()
        words.append("raw FPR(s=1) - FPR(s=0) at the largest n: "
                     + ", ".join(f"{b} {last[b]:.3f}" for b in (biased, control) if b in last.index))
    return "; ".join(words)


def size_finding(table: pd.DataFrame, *, metric: str, method: str, auc_floor: float, runner: str = "probe") -> dict:
    """Finding 3 (R3): the biased - control difference shrinks with n toward equivalence (:func:`shrink_rule`).

    The control is the one with the best AUC at the size nearest 1024 (chosen once); the margin is
    the spread of the controls' mean gaps at the largest n. Differences are pooled over targets
    with between-target variation (t over targets, seeds nested; over seeds with one target).
    """
    name = "with enough finetuning data the base stops mattering (the difference shrinks with n)"
    rule = shrink_rule((1, 1, 1), (1, 1, 1), (0, 0, 0), margin=1).rule
    rows, sizes = _size_rows(table, runner)
    if len(sizes) < 2:
        return finding_row("3", name, inconclusive(rule, f"no n-sweep (natural {runner} cells at {len(sizes)} "
                                                         "size(s))"), runner=runner)
    parts = {}
    for size in (sizes[0], sizes[-1]):
        parts[size], problem = _prepare(rows[pd.to_numeric(rows["n"], errors="coerce") == size], metric=metric,
                                        auc_floor=auc_floor if size == sizes[-1] else 0.0)
        biased, controls = _kinds(parts[size]) if problem is None else ([], [])
        if problem is None and (len(biased) != 1 or not controls):
            problem = f"needs one biased base and a control (found {len(biased)} and {len(controls)})"
        if problem is not None:
            return finding_row("3", name, inconclusive(rule, f"at n = {int(size)}: {problem}"), runner=runner)
    reference = min(sizes, key=lambda s: (abs(np.log2(s / 1024)), -s))
    at_reference = rows[pd.to_numeric(rows["n"], errors="coerce") == reference]
    control = at_reference[at_reference["backbone"].isin(controls)].groupby("backbone")["auc"].mean().idxmax()
    d_min, d_max = (_cell_differences(parts[s], biased[0], control, metric=metric) for s in (sizes[0], sizes[-1]))
    first = target_pooled_ci(d_min, value="difference")
    last90 = target_pooled_ci(d_max, value="difference", confidence=0.90)
    shrink = _shrink(d_min, d_max, method=method)
    gaps = parts[sizes[-1]][parts[sizes[-1]]["backbone"].isin(controls)].groupby("backbone")[metric].mean()
    margin = float(gaps.max() - gaps.min()) if len(gaps) >= 2 else float("nan")
    verdict = shrink_rule((first.estimate, first.low, first.high), (shrink.estimate, shrink.low, shrink.high),
                          (last90.estimate, last90.low, last90.high), margin=margin)
    if len(gaps) < 2:
        verdict = inconclusive(rule, "one control: no spread of the controls' gaps to set the equivalence margin")
    auc = parts[sizes[-1]].groupby("backbone")["auc"].mean() if "auc" in rows.columns else {}
    note = competence_note(float(auc[biased[0]]), float(auc[control]), name_a="biased", name_b=control) \
        if len(auc) else ""
    note = "; ".join(x for x in (verdict.reason, note, _sweep_notes(rows, sizes, biased[0], control)) if x)
    return finding_row("3", name, Verdict(verdict.verdict, rule, note),
                runner=runner, setting=(f"natural level, n = {int(sizes[0])} -> {int(sizes[-1])} (sizes "
                                        f"{', '.join(str(int(s)) for s in sizes)}); control {control} (best AUC at "
                                        f"n = {int(reference)}); margin {margin:.3f}"),
                estimate=Estimate(shrink.estimate, shrink.low, shrink.high, f"shrink diff(n_min) - diff(n_max): "
                                                                           f"{shrink.method}"),
                deviation=f"largest n {int(sizes[-1])} (paper: up to 130,216)")


# -- finding 4 -----------------------------------------------------------------------------------


def _curation_rows(table: pd.DataFrame, kind: str, *, runner: str, n, base_kind: str) -> dict:
    """One base kind's cells at stereotype levels 0.8 and 0.7, on the targets both levels hold."""
    rows = table[RUNNERS.rows(table, runner) & (table["spec_kind"] == kind)] \
        if {"runner", "spec_kind", "base_kind"} <= set(table.columns) else table.iloc[0:0]
    rows = rows[rows["base_kind"] == base_kind] if len(rows) else rows
    if len(rows) and "stereotype_level" in rows.columns:
        rows = rows.assign(level=pd.to_numeric(rows["stereotype_level"], errors="coerce").round(2))
    if kind == "correlation" and len(rows):
        chosen = n if n is not None else _most_common_n(rows)
        rows = rows[pd.to_numeric(rows["n"], errors="coerce") == chosen]
    parts = {lvl: rows[np.isclose(rows["level"], lvl)] if len(rows) else rows
             for lvl in (CURATION_BEFORE, CURATION_AFTER)}
    if all(len(part) for part in parts.values()):  # the same targets on both sides of the move
        shared = set(parts[CURATION_BEFORE]["target"]) & set(parts[CURATION_AFTER]["target"])
        parts = {lvl: part[part["target"].isin(shared)] for lvl, part in parts.items()}
    return parts


R4_COLUMNS = ("r4_tpr_gap", "r4_fpr_gap", "r4_auc")  # finding 4 as vary_corr.py measures it (records carry them)
R4_SOURCE = "threshold and test set of the cells (paper: top-P on the run's validation set, test resampled to " \
            "the natural level)"


def _has_r4(rows: pd.DataFrame) -> bool:
    return set(R4_COLUMNS) <= set(rows.columns) and rows["r4_tpr_gap"].notna().all() and len(rows) > 0


def _gap_column(rows: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str, str]:
    """Finding 4's gap: ``r4_tpr_gap`` (the paper's measurement: validation threshold, test set
    resampled to the natural level, TPR gap oriented by the dataset) where every cell carries it;
    else the cells' TPR gap, stereotype-signed; else ``metric`` (each fallback a deviation)."""
    if _has_r4(rows):
        return rows, "r4_tpr_gap", ""
    if {"tpr_gap", "natural_over_represented_group"} <= set(rows.columns) and rows["tpr_gap"].notna().any():
        return rows.assign(tpr_gap_stereotype=oriented_column(rows, "tpr_gap")), "tpr_gap_stereotype", R4_SOURCE
    return rows, metric, f"{metric} (paper: the TPR gap vary_corr.py computes); {R4_SOURCE}"


def _cut_estimate(parts: dict, *, gap: str, method: str) -> tuple[Verdict, Estimate, str]:
    before, after = parts[CURATION_BEFORE], parts[CURATION_AFTER]
    keys = ["target", "seed"]
    cells = before.groupby(keys)[gap].mean().rename("before").to_frame().join(
        after.groupby(keys)[gap].mean().rename("after"), how="inner").reset_index()
    gap20 = pooled_summary(before, by=["backbone"], value=gap, method=method).iloc[0]
    cut = bootstrap_cut(cells, before="before", after="after")
    auc = "r4_auc" if gap == "r4_tpr_gap" else "auc"
    auc_before = pooled_summary(before, by=["backbone"], value=auc, method=method).iloc[0]
    auc_after = pooled_summary(after, by=["backbone"], value=auc, method=method).iloc[0]
    change = difference_interval(auc_after, auc_before, method=method)
    verdict = cut_rule((gap20["mean"], gap20["ci_low"], gap20["ci_high"]), (cut.estimate, cut.low, cut.high),
                       (change.estimate, change.low, change.high))
    detail = (f"gap20 {gap20['mean']:.3f} [{gap20['ci_low']:.3f}, {gap20['ci_high']:.3f}]; AUC change "
              f"{float(change.estimate):.3f} ({change.method})")
    if gap == "r4_tpr_gap":  # the FPR gap beside the primary TPR gap, as the paper's plots
        fpr = {lvl: float(part["r4_fpr_gap"].mean()) for lvl, part in parts.items()}
        detail += f"; FPR gap {fpr[CURATION_BEFORE]:.3f} -> {fpr[CURATION_AFTER]:.3f}"
    return (Verdict(verdict.verdict, verdict.rule, "; ".join(x for x in (verdict.reason, detail) if x)),
            Estimate(cut.estimate, cut.low, cut.high, f"cut 1 - gap30/gap20: {cut.method}"), str(gap20["backbone"]))


def curation_findings(table: pd.DataFrame, *, metric: str, method: str, auc_floor: float, n=None,
                      runner: str = "probe", base_kind: str = "biased") -> list[dict]:
    """Finding 4 (R4): 20% -> 30% minority share among positives cuts the gap at little AUC cost (:func:`cut_rule`).

    The paper ran it on its off-the-shelf bases (``base_kind`` "imagenet", "scratch"); the biased
    base's rows say so in ``deviation``.
    """
    found = []
    rule = cut_rule((1, 1, 1), (1, 1, 1), (0, 0, 0)).rule
    for fid, kind, words in (("4a", "correlation", "by correlation level"), ("4b", "subselection", "by sub-selection")):
        name = f"curation {words}: 20% -> 30% counter-stereotypical positives"
        parts, problems = _curation_rows(table, kind, runner=runner, n=n, base_kind=base_kind), []
        for lvl, part in parts.items():
            parts[lvl], problem = _prepare(part, metric=metric, auc_floor=auc_floor)
            if problem:
                problems.append(f"at stereotype level {lvl:g}: {problem}")
        deviation = "the biased base, an extra row (paper: the off-the-shelf bases)" if base_kind == "biased" else ""
        if problems:
            found.append(finding_row(fid, name, inconclusive(rule, "; ".join(problems)), runner=runner,
                                     setting=f"{base_kind} base", deviation=deviation))
            continue
        gap_rows = {lvl: _gap_column(part, metric) for lvl, part in parts.items()}
        gap, gap_note = gap_rows[CURATION_BEFORE][1], gap_rows[CURATION_BEFORE][2]
        verdict, estimate, backbone = _cut_estimate({lvl: r[0] for lvl, r in gap_rows.items()}, gap=gap,
                                                    method=method)
        found.append(finding_row(fid, name, verdict, runner=runner, setting=f"{base_kind} base {backbone}, gap {gap}",
                          estimate=estimate, deviation="; ".join(x for x in (deviation, gap_note) if x)))
    return found


# -- finding 5 -----------------------------------------------------------------------------------


def underrep_finding(underrep: pd.DataFrame | None, *, method: str, auc_floor: float, runner: str = "probe",
                     n: int | None = None) -> dict:
    """Finding 5: at the smallest share of A-only positives, AUC on A-positives, base on A minus base on B.

    ``n`` keeps the pairs cells of that training size (the paper's verdict: 10% at n = 128).
    """
    name = "underrepresentation: a base pretrained on A keeps A recognisable when A-only positives are scarce"
    rule = "the interval of AUC_A(base on A) - AUC_A(base on B) at the smallest share lies above 0"
    if underrep is not None and n is not None and "n" in underrep.columns:
        underrep = underrep[pd.to_numeric(underrep["n"], errors="coerce") == n]
    if underrep is None or underrep.empty:
        return finding_row("5", name, inconclusive(rule, "no pairs-experiment results"), runner=runner)
    found = underrep[np.isfinite(underrep["auc_a"])]
    shares = sorted(s for s in found["share_a"].unique() if s > 0)
    if not shares:
        return finding_row("5", name, inconclusive(rule, "no share of A-only positives above 0 has a result"),
                           runner=runner)
    low_share = shares[0]
    at = found[np.isclose(found["share_a"], low_share)]
    on_a, on_b = at[at["role"] == "A"], at[at["role"] == "B"]
    pair = f"A = {at['attr_a'].iloc[0]}, B = {at['attr_b'].iloc[0]}" if len(at) else ""
    if on_a["seed"].nunique() < MIN_CLEAN_REPLICATES or on_b["seed"].nunique() < MIN_CLEAN_REPLICATES:
        return finding_row("5", name, inconclusive(rule, f"fewer than {MIN_CLEAN_REPLICATES} seeds per base"),
                           setting=pair, runner=runner)
    full = found[np.isclose(found["share_a"], max(found["share_a"]))]
    weak = full.groupby("role")["auc_a"].mean()
    if (weak < auc_floor).any():
        return finding_row("5", name, inconclusive(rule, "the models did not learn A even with every positive A-only: "
                                                  + ", ".join(f"base on {r}: AUC {v:.3f}" for r, v in weak.items())
                                                  + f" below {auc_floor:g}"), setting=pair, runner=runner)
    merged = on_a.merge(on_b, on="seed", suffixes=("_a", "_b"))
    paired = len(merged) == len(on_a) == len(on_b) and (merged["rows_digest_a"] == merged["rows_digest_b"]).all()
    if paired:
        ci = difference_ci(merged["auc_a_a"], merged["auc_a_b"], paired=True, method=method)
    else:
        ci = difference_ci(on_a["auc_a"], on_b["auc_a"], paired=False, method=method)
    verdict = all_above_zero([("AUC_A(on A) - AUC_A(on B)", float(ci.estimate), float(ci.low), float(ci.high))],
                             what="AUC_A(on A) - AUC_A(on B)")
    aucs = f"AUC_A with every positive A-only: on A {weak.get('A', np.nan):.3f}, on B {weak.get('B', np.nan):.3f}"
    return finding_row("5", name, Verdict(verdict.verdict, rule, "; ".join(x for x in (verdict.reason, aucs) if x)),
                       runner=runner, setting=f"{pair}; share of A-only positives {low_share:g}"
                                              + (f", n = {n}" if n is not None else ""),
                       estimate=Estimate(ci.estimate, ci.low, ci.high, ci.method),
                       deviation="control bases' probes (paper: finetunes of bases pretrained on A and on B)"
                       if RUNNERS[runner].proxy else "")


# -- finding 6 -----------------------------------------------------------------------------------


def spearman_interval(x, y, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rho with a Fisher-z interval (Bonett & Wright's variance ``(1 + rho^2 / 2) / (m - 3)``).

    NaN bounds with fewer than four pairs.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    m = int(keep.sum())
    if m < 3:
        return float("nan"), float("nan"), float("nan")
    rho = float(stats.spearmanr(x[keep], y[keep]).statistic)
    if m < 4 or not math.isfinite(rho):
        return rho, float("nan"), float("nan")
    z, c = np.arctanh(np.clip(rho, -0.999999, 0.999999)), stats.norm.ppf(0.5 + confidence / 2)
    se = math.sqrt((1 + rho ** 2 / 2) / (m - 3))
    return rho, float(np.tanh(z - c * se)), float(np.tanh(z + c * se))


def salience_finding(salience: pd.DataFrame | None, *, truth: str = "true_log_ratio") -> dict:
    """Finding 6: salience estimates agree in rank with the generator's truth (the toolkit's own
    validation, not a paper claim: every row says so in ``deviation``)."""
    name = "salience estimates vs the generator's truth (Spearman)"
    rule = f"Spearman rho >= {SALIENCE_FLOOR:g} and its interval lies above 0"
    if salience is None or salience.empty:
        return finding_row("6", name, inconclusive(rule, "no salience table"), deviation=SALIENCE_OWN)
    if truth not in salience.columns:  # a given dataset (analyze.reproduce.sources): no generator, no truth
        return finding_row("6", name, inconclusive(rule, f"skipped: the dataset has no generator's {truth} (only the "
                                                         "rendered avatars do), so the estimates cannot be checked"),
                           deviation=SALIENCE_OWN)
    if truth not in salience.columns or salience[truth].notna().sum() < 4:
        return finding_row("6", name, inconclusive(rule, f"fewer than four targets with the generator's {truth}"),
                           deviation=SALIENCE_OWN)
    rows, left = salience, ""
    if "flagged" in salience.columns or "diagnosis" in salience.columns:
        flagged = (salience["flagged"].fillna(False).astype(bool) if "flagged" in salience.columns
                   else salience["diagnosis"].fillna("").astype(str).str.len() > 0)
        rows = salience[~flagged]
        if flagged.any():
            left = f"left out {int(flagged.sum())} flagged target(s): " + ", ".join(salience.loc[flagged, "target"])
        if len(rows) < 4:
            return finding_row("6", name, inconclusive(rule, f"fewer than four unflagged targets ({left})"),
                               deviation=SALIENCE_OWN)
    rho, low, high = spearman_interval(rows["salience"], rows[truth])
    verdict = at_least(rho, low, high, floor=SALIENCE_FLOOR, what="Spearman rho")
    reason = "; ".join(x for x in (verdict.reason, left) if x)
    return finding_row("6", name, Verdict(verdict.verdict, verdict.rule, reason),
                setting=f"{len(rows)} targets, truth = {truth}",
                estimate=Estimate(rho, low, high, "95% Fisher-z interval (Bonett-Wright variance)"),
                deviation=SALIENCE_OWN)


# -- finding 7 -----------------------------------------------------------------------------------


def geography_finding(geography) -> dict:
    """W&R's geographic finding, from the ``findings.csv`` the geography experiment writes."""
    name = "geography: a geographically diverse base needs less in-domain data (W&R R8)"
    rule = "the reference base's interval at the small share lies above the other base's at the same share"
    path = None if geography is None else Path(geography)
    if path is not None and path.is_dir():
        path = path / "findings.csv"
    if path is None or not path.is_file():
        where = "" if path is None else f" ({path} does not exist)"
        return finding_row("7", name, inconclusive(
            rule, "no geography results: run `biastransfer geography-avatars`, or `biastransfer sweep wr-geography` on "
                  "Dollar Street, COCO and GeoDE stores (results in work/results/wr-geography), and pass its folder"
                  f"{where}"))
    try:
        rows = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return finding_row("7", name, inconclusive(rule, f"{path} is empty (no finding)"))
    if rows.empty or "status" not in rows.columns:
        return finding_row("7", name, inconclusive(rule, f"{path} holds no finding"))
    details = []
    for r in rows.itertuples(index=False):
        details.append(f"{r.metric}: {r.base} at share {r.at_share:g}: {r.reference:.3f} [{r.reference_low:.3f}, "
                       f"{r.reference_high:.3f}]; {r.other}: {_float(r.other_at_same_share):.3f} "
                       f"[{_float(r.other_low):.3f}, {_float(r.other_high):.3f}]: {r.status}")
    status = rows["status"].astype(str)
    if (status == "does not hold").any():  # some part (a source) shows the other base needs no larger share
        verdict = CONTRADICTED
    else:
        verdict = REPRODUCED if (status == "holds").all() else INCONCLUSIVE  # overlapping intervals decide nothing
    first = rows.iloc[0]
    return finding_row("7", name, Verdict(verdict, rule, "; ".join(details)),
                runner="probe", setting=f"{len(rows)} part(s), first: {first['metric']}",
                estimate=Estimate(_float(first["reference"]) - _float(first.get("other_at_same_share")),
                                  interval="difference of the two bases' means at the small share (each mean's t "
                                           "interval over seeds in the reason)"))


# -- the table ------------------------------------------------------------------------------------


def _cell(v) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else str(v).replace("|", "\\|")


def verdict_counts(findings: pd.DataFrame) -> str:
    """The verdicts counted per runner: probe (proxy) rows never count as reproducing a finetune claim."""
    parts = []
    runners = findings["runner"].fillna("").astype(str) if "runner" in findings.columns else \
        pd.Series("", index=findings.index)
    for label, keep in ((FINETUNE, runners == FINETUNE), (PROBE, runners == PROBE),
                        ("other", ~runners.isin([FINETUNE, PROBE]))):
        if keep.any():
            counts = findings.loc[keep, "verdict"].value_counts()
            words = ", ".join(f"{counts.get(v, 0)} {v}" for v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE))
            parts.append(f"{label} rows: {words}")
    return "; ".join(parts) + (" (probe rows are a fast proxy and never count as reproducing a finetune claim)"
                               if (runners == PROBE).any() else "")


def findings_markdown(findings: pd.DataFrame) -> str:
    """The findings table as Markdown: number with interval, rule, verdict, reason and deviation per finding."""
    lines = ["| # | finding | runner | setting | number [95% CI] | rule | verdict | reason | deviation |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in findings.itertuples(index=False):
        number = "" if not math.isfinite(r.number) else f"{r.number:.3f}"
        if math.isfinite(r.number) and math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
            number += f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        lines.append("| " + " | ".join(_cell(v) for v in (r.id, r.finding, r.runner, r.setting, number, r.rule,
                                                            f"**{r.verdict}**", r.reason,
                                                            getattr(r, "deviation", ""))) + " |")
    return ("\n".join(lines) + f"\n\n{len(findings)} findings: {verdict_counts(findings)}. Intervals: the "
            "`interval` column of the CSV.\n")


def write_findings(findings: pd.DataFrame, out_dir) -> tuple[Path, Path]:
    """Write ``findings.csv`` and ``findings.md`` into ``out_dir`` (atomically); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = write_text(out_dir / "findings.csv", findings.to_csv(index=False))
    md = write_text(out_dir / "findings.md", "# Findings of the papers, reproduced on the avatars\n\n"
                    + findings_markdown(findings))
    return csv, md
