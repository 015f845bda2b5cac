"""The findings table: one row per finding of the papers, with its number, interval, rule and verdict.

:func:`build_findings` reads the collected results table (``biastransfer collect``; both
runners), the salience table, the pairs experiment's table (:func:`analyze.reproduce.run.underrep_table`)
and, optionally, the geography experiment's ``findings.csv``, and computes:

1. the biased base's stereotype-direction FPR gap minus every control's, at the natural level
   and at the strongest stereotype level, for probes and full finetunes (``1a`` ... ``1d``);
2. the interactions of the effect model ``bias ~ base * (correlation_strength + salience +
   log2_n)`` on probes (biased vs controls; positive, positive, negative), with W&R's mixed
   model ``Value ~ Saliency + Skew`` beside it (``2a`` ... ``2e``);
3. the difference at the largest n of the natural n-sweep (its interval should include 0);
4. curation: 20% -> 30% counter-stereotypical positives, by correlation level and by
   sub-selection (cut >= 40% of the gap at an AUC cost whose interval includes 0 or stays
   under 0.02);
5. underrepresentation: AUC on A-positives at the smallest share of A-only positives, base
   pretrained on A minus base pretrained on B;
6. salience estimates vs the generator's truth (Spearman with a Fisher-z interval);
7. W&R's geographic finding, from the geography experiment's results when given.

Intervals come from :mod:`analyze.metrics.intervals` through the report's pooled summaries
(each seed's mean over targets, then Student's t over seeds; differences paired by seed
where the rows match, Welch's otherwise). Cells the diagnosis flags (``EXCLUDING_FLAGS``)
are left out; a finding whose models have a mean test AUC below the floor, or that has fewer
than :data:`~analyze.report.findings.MIN_CLEAN_REPLICATES` clean seeds, is inconclusive.
The verdict rules are in :mod:`analyze.reproduce.verdicts`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analyze.effects.fit import coefficient_table
from analyze.effects.models import DEFAULT_METRIC, fit_general, fit_paper, paper_rows
from analyze.metrics.diagnosis import DEFAULT_AUC_FLOOR
from analyze.metrics.intervals import DEFAULT_METHOD, difference_ci
from analyze.report.findings import (
    MIN_CLEAN_REPLICATES,
    clean_cells,
    correlation_cells,
    difference_interval,
    pooled_summary,
)
from analyze.reproduce.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Verdict,
    all_above_zero,
    at_least,
    includes_zero,
    inconclusive,
    reduction_rule,
    sign_rule,
)
from analyze.runners import RUNNERS
from extract.errors import UserError
from extract.io import write_text

COLUMNS = ["id", "finding", "runner", "setting", "number", "ci_low", "ci_high", "interval", "rule", "verdict",
           "reason"]
CURATION_BEFORE = 0.8  # stereotype level: 20% of positives counter-stereotypical
CURATION_AFTER = 0.7   # 30%
CURATION_MIN_CUT = 0.4
CURATION_MAX_COST = 0.02
SALIENCE_FLOOR = 0.9
COMPARED = ("biased", "control")  # the base kinds the findings compare
INTERACTIONS = (("correlation_strength", 1, "grows with the finetuning correlation strength"),
                ("salience", 1, "grows with salience"),
                ("log2_n", -1, "shrinks as n grows"))
__all__ = ["COLUMNS", "build_findings", "findings_markdown", "spearman_interval", "write_findings"]


def _row(fid: str, finding: str, verdict: Verdict, *, runner: str = "", setting: str = "", number=np.nan,
         low=np.nan, high=np.nan, interval: str = "") -> dict:
    return {"id": fid, "finding": finding, "runner": runner, "setting": setting, "number": _float(number),
            "ci_low": _float(low), "ci_high": _float(high), "interval": interval, "rule": verdict.rule,
            "verdict": verdict.verdict, "reason": verdict.reason}


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
    rows = table[table["runner"] == runner] if "runner" in table.columns else table.iloc[0:0]
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


def transfer_findings(table: pd.DataFrame, *, metric: str, method: str, auc_floor: float, n=None) -> list[dict]:
    """Finding 1: the biased base's gap exceeds every control's (per runner and setting)."""
    found = []
    name = "biased base's stereotype-direction FPR gap > every control's"
    for fid, runner, setting in (("1a", "probe", "natural"), ("1b", "probe", "strongest"),
                                 ("1c", "finetune", "natural"), ("1d", "finetune", "strongest")):
        rows, where = _setting_rows(table, runner, setting, n.get(runner) if isinstance(n, dict) else n)
        rule = "every biased - control difference's interval lies above 0"
        rows, problem = _prepare(rows, metric=metric, auc_floor=auc_floor)
        if problem is None:
            diffs, problem = _differences(rows, metric=metric, method=method)
        if problem is not None:
            found.append(_row(fid, name, inconclusive(rule, problem), runner=runner, setting=where))
            continue
        verdict = all_above_zero([d[:4] for d in diffs], what="biased - control difference")
        label, est, low, high, words = min(diffs, key=lambda d: d[1])
        found.append(_row(fid, name, verdict, runner=runner, setting=f"{where}; smallest: {label}", number=est,
                          low=low, high=high, interval=words))
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
            found.append(_row(fid, name, inconclusive(rule_words, problem), runner="probe"))
            continue
        hit = coefs[coefs["term"] == full]
        if hit.empty:
            found.append(_row(fid, name, inconclusive(rule_words, f"{full} is not in the model ({term} is constant "
                                                                   "in the cells or a base kind is missing)"),
                              runner="probe", setting=str(coefs["formula"].iloc[0])))
            continue
        r = hit.iloc[0]
        found.append(_row(fid, name, sign_rule(r["coef"], r["ci_low"], r["ci_high"], expected=sign, term=full),
                          runner="probe", setting=f"{r['formula']}, OLS, errors cluster-robust by target",
                          number=r["coef"], low=r["ci_low"], high=r["ci_high"],
                          interval="95% interval of the coefficient (cluster-robust by target)"))
    found += _paper_findings(rows, metric=metric, problem=problem, n=n)
    return found


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
            found.append(_row(fid, name, inconclusive(rule, problem or f"{term} is not in the fitted model"),
                              runner="probe"))
            continue
        r = coefs[coefs["term"] == term].iloc[0]
        found.append(_row(fid, name, sign_rule(r["coef"], r["ci_low"], r["ci_high"], expected=1, term=term),
                          runner="probe", setting=f"{r['formula']}, mixed model, {int(r['n_obs'])} rows",
                          number=r["coef"], low=r["ci_low"], high=r["ci_high"],
                          interval="95% Wald interval of the coefficient"))
    return found


# -- finding 3 -----------------------------------------------------------------------------------


def size_finding(table: pd.DataFrame, *, metric: str, method: str, auc_floor: float) -> dict:
    """Finding 3: at the largest n of the natural n-sweep every biased - control interval includes 0."""
    name = "with enough finetuning data the base stops mattering"
    rule = "every biased - control difference's interval at the largest n includes 0"
    rows = table[RUNNERS.rows(table, "probe") & (table["spec_kind"] == "natural")] \
        if {"runner", "spec_kind"} <= set(table.columns) else table.iloc[0:0]
    sizes = sorted(pd.to_numeric(rows["n"], errors="coerce").dropna().unique()) if len(rows) else []
    if len(sizes) < 2:
        return _row("3", name, inconclusive(rule, f"no n-sweep (natural probe cells at {len(sizes)} size(s))"),
                    runner="probe")
    largest = int(sizes[-1])
    rows, problem = _prepare(rows[pd.to_numeric(rows["n"], errors="coerce") == largest], metric=metric,
                             auc_floor=auc_floor)
    diffs = None
    if problem is None:
        diffs, problem = _differences(rows, metric=metric, method=method)
    setting = f"natural level, n = {largest} (sizes {', '.join(str(int(s)) for s in sizes)})"
    if problem is not None:
        return _row("3", name, inconclusive(rule, problem), runner="probe", setting=setting)
    verdicts = [includes_zero(est, low, high, what=label) for label, est, low, high, _ in diffs]
    worst = max(diffs, key=lambda d: abs(d[1]))
    if any(v.verdict == INCONCLUSIVE for v in verdicts):
        verdict = inconclusive(rule, "; ".join(v.reason for v in verdicts if v.verdict == INCONCLUSIVE))
    elif any(v.verdict == NOT_REPRODUCED for v in verdicts):
        verdict = Verdict(NOT_REPRODUCED, rule, "; ".join(v.reason for v in verdicts if v.verdict == NOT_REPRODUCED))
    else:
        verdict = Verdict(REPRODUCED, rule)
    return _row("3", name, verdict, runner="probe", setting=f"{setting}; largest |difference|: {worst[0]}",
                number=worst[1], low=worst[2], high=worst[3], interval=worst[4])


# -- finding 4 -----------------------------------------------------------------------------------


def curation_findings(table: pd.DataFrame, *, metric: str, method: str, auc_floor: float, n=None) -> list[dict]:
    """Finding 4: 20% -> 30% counter-stereotypical positives cuts the biased base's gap by >= 40% cheaply."""
    found = []
    rule_words = reduction_rule((1, 1, 1), (1, 1, 1), (0, 0, 0)).rule
    for fid, kind, words in (("4a", "correlation", "by correlation level"), ("4b", "subselection", "by sub-selection")):
        name = f"curation {words}: 20% -> 30% counter-stereotypical positives"
        rows = table[RUNNERS.rows(table, "probe") & (table["spec_kind"] == kind)] \
            if {"runner", "spec_kind", "base_kind"} <= set(table.columns) else table.iloc[0:0]
        rows = rows[rows["base_kind"] == "biased"] if len(rows) else rows
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
        problems = []
        for lvl, part in parts.items():
            part, problem = _prepare(part, metric=metric, auc_floor=auc_floor)
            parts[lvl] = part
            if problem:
                problems.append(f"at stereotype level {lvl:g}: {problem}")
        if problems:
            found.append(_row(fid, name, inconclusive(rule_words, "; ".join(problems)), runner="probe",
                              setting="biased base"))
            continue
        before = pooled_summary(parts[CURATION_BEFORE], by=["backbone"], value=metric, method=method).iloc[0]
        after = pooled_summary(parts[CURATION_AFTER], by=["backbone"], value=metric, method=method).iloc[0]
        cut = difference_interval(before, after, method=method)
        auc_before = pooled_summary(parts[CURATION_BEFORE], by=["backbone"], value="auc", method=method).iloc[0]
        auc_after = pooled_summary(parts[CURATION_AFTER], by=["backbone"], value="auc", method=method).iloc[0]
        cost = difference_interval(auc_before, auc_after, method=method)
        verdict = reduction_rule((before["mean"], before["ci_low"], before["ci_high"]),
                                 (cut.estimate, cut.low, cut.high), (cost.estimate, cost.low, cost.high),
                                 min_share=CURATION_MIN_CUT, max_cost=CURATION_MAX_COST)
        gap = float(before["mean"])
        share = float(cut.estimate) / gap if gap else float("nan")
        scale = gap if gap > 0 else float("nan")
        detail = (f"gap {gap:.3f} [{before['ci_low']:.3f}, {before['ci_high']:.3f}] -> {after['mean']:.3f} "
                  f"[{after['ci_low']:.3f}, {after['ci_high']:.3f}]; AUC cost {float(cost.estimate):.3f} "
                  f"[{float(cost.low):.3f}, {float(cost.high):.3f}]")
        found.append(_row(fid, name, Verdict(verdict.verdict, verdict.rule,
                                             "; ".join(x for x in (verdict.reason, detail) if x)),
                          runner="probe", setting=f"biased base {before['backbone']}", number=share,
                          low=float(cut.low) / scale, high=float(cut.high) / scale,
                          interval=f"share of the gap cut: the cut's {cut.method}, divided by the gap before"))
    return found


# -- finding 5 -----------------------------------------------------------------------------------


def underrep_finding(underrep: pd.DataFrame | None, *, method: str, auc_floor: float) -> dict:
    """Finding 5: at the smallest share of A-only positives, AUC on A-positives, base on A minus base on B."""
    name = "underrepresentation: a base pretrained on A keeps A recognisable when A-only positives are scarce"
    rule = "the interval of AUC_A(base on A) - AUC_A(base on B) at the smallest share lies above 0"
    if underrep is None or underrep.empty:
        return _row("5", name, inconclusive(rule, "no pairs-experiment results"))
    found = underrep[np.isfinite(underrep["auc_a"])]
    shares = sorted(s for s in found["share_a"].unique() if s > 0)
    if not shares:
        return _row("5", name, inconclusive(rule, "no share of A-only positives above 0 has a result"))
    low_share = shares[0]
    at = found[np.isclose(found["share_a"], low_share)]
    on_a, on_b = at[at["role"] == "A"], at[at["role"] == "B"]
    pair = f"A = {at['attr_a'].iloc[0]}, B = {at['attr_b'].iloc[0]}" if len(at) else ""
    if on_a["seed"].nunique() < MIN_CLEAN_REPLICATES or on_b["seed"].nunique() < MIN_CLEAN_REPLICATES:
        return _row("5", name, inconclusive(rule, f"fewer than {MIN_CLEAN_REPLICATES} seeds per base"), setting=pair)
    full = found[np.isclose(found["share_a"], max(found["share_a"]))]
    weak = full.groupby("role")["auc_a"].mean()
    if (weak < auc_floor).any():
        return _row("5", name, inconclusive(rule, "the probes did not learn A even with every positive A-only: "
                                                  + ", ".join(f"base on {r}: AUC {v:.3f}" for r, v in weak.items())
                                                  + f" below {auc_floor:g}"), setting=pair)
    merged = on_a.merge(on_b, on="seed", suffixes=("_a", "_b"))
    paired = len(merged) == len(on_a) == len(on_b) and (merged["rows_digest_a"] == merged["rows_digest_b"]).all()
    if paired:
        ci = difference_ci(merged["auc_a_a"], merged["auc_a_b"], paired=True, method=method)
    else:
        ci = difference_ci(on_a["auc_a"], on_b["auc_a"], paired=False, method=method)
    verdict = all_above_zero([("AUC_A(on A) - AUC_A(on B)", float(ci.estimate), float(ci.low), float(ci.high))],
                             what="AUC_A(on A) - AUC_A(on B)")
    return _row("5", name, Verdict(verdict.verdict, rule, verdict.reason), runner="probe",
                setting=f"{pair}; share of A-only positives {low_share:g}", number=ci.estimate, low=ci.low,
                high=ci.high, interval=ci.method)


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
    """Finding 6: salience estimates agree in rank with the generator's truth."""
    name = "salience estimates vs the generator's truth (Spearman)"
    rule = f"Spearman rho >= {SALIENCE_FLOOR:g} and its interval lies above 0"
    if salience is None or salience.empty:
        return _row("6", name, inconclusive(rule, "no salience table"))
    if truth not in salience.columns or salience[truth].notna().sum() < 4:
        return _row("6", name, inconclusive(rule, f"fewer than four targets with the generator's {truth}"))
    rows, left = salience, ""
    if "flagged" in salience.columns or "diagnosis" in salience.columns:
        flagged = (salience["flagged"].fillna(False).astype(bool) if "flagged" in salience.columns
                   else salience["diagnosis"].fillna("").astype(str).str.len() > 0)
        rows = salience[~flagged]
        if flagged.any():
            left = f"left out {int(flagged.sum())} flagged target(s): " + ", ".join(salience.loc[flagged, "target"])
        if len(rows) < 4:
            return _row("6", name, inconclusive(rule, f"fewer than four unflagged targets ({left})"))
    rho, low, high = spearman_interval(rows["salience"], rows[truth])
    verdict = at_least(rho, low, high, floor=SALIENCE_FLOOR, what="Spearman rho")
    return _row("6", name, Verdict(verdict.verdict, verdict.rule, "; ".join(x for x in (verdict.reason, left) if x)),
                setting=f"{len(rows)} targets, truth = {truth}", number=rho, low=low, high=high,
                interval="95% Fisher-z interval (Bonett-Wright variance)")


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
        return _row("7", name, inconclusive(rule, "no geography results: run `biastransfer geography-avatars`, or "
                                                  "`biastransfer sweep wr-geography` on Dollar Street, COCO and GeoDE "
                                                  f"stores (results in work/results/wr-geography), and pass its folder{where}"))
    try:
        rows = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return _row("7", name, inconclusive(rule, f"{path} is empty (no finding)"))
    if rows.empty or "status" not in rows.columns:
        return _row("7", name, inconclusive(rule, f"{path} holds no finding"))
    details = []
    for r in rows.itertuples(index=False):
        details.append(f"{r.metric}: {r.base} at share {r.at_share:g}: {r.reference:.3f} [{r.reference_low:.3f}, "
                       f"{r.reference_high:.3f}]; {r.other}: {_float(r.other_at_same_share):.3f} "
                       f"[{_float(r.other_low):.3f}, {_float(r.other_high):.3f}]: {r.status}")
    held = (rows["status"].astype(str) == "holds").all()  # every part of the finding (e.g. each source)
    first = rows.iloc[0]
    return _row("7", name, Verdict(REPRODUCED if held else NOT_REPRODUCED, rule, "; ".join(details)),
                runner="probe", setting=f"{len(rows)} part(s), first: {first['metric']}",
                number=_float(first["reference"]) - _float(first.get("other_at_same_share")),
                interval="difference of the two bases' means at the small share (each mean's t interval over "
                         "seeds in the reason)")


# -- the table ------------------------------------------------------------------------------------


def build_findings(table: pd.DataFrame, *, salience: pd.DataFrame | None = None,
                   underrep: pd.DataFrame | None = None, geography=None, metric: str = DEFAULT_METRIC,
                   method: str = DEFAULT_METHOD, auc_floor: float = DEFAULT_AUC_FLOOR, n=None) -> pd.DataFrame:
    """The findings table (module docstring), one row per finding in :data:`COLUMNS`.

    Parameters
    ----------
    table : DataFrame
        Collected results (both runners), with ``base_kind`` and, for finding 2, ``salience``.
    salience : DataFrame, optional
        The salience table with the generator's truth (``true_log_ratio``).
    underrep : DataFrame, optional
        The pairs experiment (:func:`analyze.reproduce.run.underrep_table`).
    geography : path, optional
        The geography experiment's folder or its ``findings.csv``.
    metric : str
        Bias column, positive = stereotype-consistent.
    method : {"t", "normal"}
        Replicate intervals.
    auc_floor : float
        Findings whose models' mean test AUC is below it are inconclusive.
    n : int or {runner: int}, optional
        Training size of findings 1, 2 (W&R's model) and 4; default the most frequent one.
    """
    if "salience" not in table.columns and salience is not None and "salience" in salience.columns:
        from analyze.effects.models import attach_salience

        table = attach_salience(table, salience)
    rows = transfer_findings(table, metric=metric, method=method, auc_floor=auc_floor, n=n)
    rows += effect_findings(table, metric=metric, auc_floor=auc_floor,
                            n=n.get("probe") if isinstance(n, dict) else n)
    rows.append(size_finding(table, metric=metric, method=method, auc_floor=auc_floor))
    rows += curation_findings(table, metric=metric, method=method, auc_floor=auc_floor,
                              n=n.get("probe") if isinstance(n, dict) else n)
    rows.append(underrep_finding(underrep, method=method, auc_floor=auc_floor))
    rows.append(salience_finding(salience))
    rows.append(geography_finding(geography))
    return pd.DataFrame(rows, columns=COLUMNS)


def _cell(v) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else str(v).replace("|", "\\|")


def findings_markdown(findings: pd.DataFrame) -> str:
    """The findings table as Markdown: number with interval, rule, verdict and reason per finding."""
    lines = ["| # | finding | runner | setting | number [95% CI] | rule | verdict | reason |",
             "|---|---|---|---|---|---|---|---|"]
    for r in findings.itertuples(index=False):
        number = "" if not math.isfinite(r.number) else f"{r.number:.3f}"
        if math.isfinite(r.number) and math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
            number += f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        lines.append("| " + " | ".join(_cell(v) for v in (r.id, r.finding, r.runner, r.setting, number, r.rule,
                                                            f"**{r.verdict}**", r.reason)) + " |")
    counts = findings["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE))
    return "\n".join(lines) + f"\n\n{len(findings)} findings: {summary}. Intervals: the `interval` column of the CSV.\n"


def write_findings(findings: pd.DataFrame, out_dir) -> tuple[Path, Path]:
    """Write ``findings.csv`` and ``findings.md`` into ``out_dir`` (atomically); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = write_text(out_dir / "findings.csv", findings.to_csv(index=False))
    md = write_text(out_dir / "findings.md", "# Findings of the papers, reproduced on the avatars\n\n"
                    + findings_markdown(findings))
    return csv, md
