"""W&R's findings 1-5 as the paper measured them, as pure functions of a collected table.

Every function takes the collected results (``biastransfer collect``: one row per cell with
``runner``, ``backbone``, ``base_kind``, ``spec_kind``, ``p``, ``target``, ``n``, ``seed``,
``auc``, ``fpr_gap``, ``tpr_gap``, ``natural_over_represented_group`` and the diagnosis flags)
and a per-target table (:func:`analyze.reproduce.measures.target_table`: ``orientation``,
``skew_natural``, ``skew_skewz``, ``saliency`` over all images) and returns rows of the
findings table (:data:`analyze.reproduce.findings.COLUMNS`), one set per runner:
``finetune`` rows test the claim, ``probe (proxy)`` rows run the same design as a fast proxy
and never count as reproducing it.

1. :func:`inheritance_claims` (R1): natural and skewz sets; the biased base's oriented FPR gap
   minus the control with the largest mean gap on each target, pooled over targets with
   between-target variation (t over targets, seeds nested); and the paper's per-target reading,
   the targets where the biased base exceeds every control, with a one-sided sign test.
2. :func:`value_claims` (R2): ``Value ~ Saliency + Skew``, a mixed model with a random intercept
   per target, on >= 16 (target, condition) rows; Value as ``regress.py`` clips it, the
   difference beside it (:func:`value_rows`).
3. finding 3 (R3) and 4 (R4) and 5 (R6) read their rules through
   :func:`analyze.reproduce.findings.size_finding`, :func:`~analyze.reproduce.findings.curation_findings`
   and :func:`~analyze.reproduce.findings.underrep_finding` with the runner given;
   :func:`paper_findings` assembles every row for both runners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze.report.findings import MIN_CLEAN_REPLICATES, clean_cells
from analyze.reproduce.findings import (
    COLUMNS,
    Estimate,
    curation_findings,
    finding_row,
    geography_finding,
    salience_finding,
    size_finding,
    underrep_finding,
)
from analyze.reproduce.inference import sign_test, target_pooled_ci
from analyze.reproduce.measures import competence_note, paper_condition, paper_gap_column, paper_value
from analyze.reproduce.verdicts import CONTRADICTED, REPRODUCED, Verdict, all_above_zero, inconclusive
from analyze.runners import RUNNERS
from extract.errors import UserError

PAPER_N = 1024          # findings 1 and 2: the paper's training size
MIN_VALUE_ROWS = 16     # finding 2: fewer (target, condition) rows decide nothing (the paper: 22)
SIGN_ALPHA = 0.05
CLAIM_RUNNERS = ("finetune", "probe")  # finetune rows test a claim; probe rows are its proxy

__all__ = ["MIN_VALUE_ROWS", "PAPER_N", "ClaimOptions", "build_findings", "inheritance_claims", "paper_findings", "value_claims",
           "value_rows"]


@dataclass(frozen=True)
class ClaimOptions:
    """Options every claim shares.

    runner : "finetune" or "probe" (rows of the other runner are left out)
    n : training size of findings 1 and 2 (the paper: 1024)
    auc_floor : a base whose mean test AUC is below it makes the finding inconclusive
    deviation : what this run changed from the paper's design (written in every row)
    pair_n : training size finding 5 is judged at (the paper: 10% at n = 128)
    """

    runner: str = "finetune"
    n: int = PAPER_N
    auc_floor: float = 0.70
    deviation: str = ""
    pair_n: int = 128


def _cells(table: pd.DataFrame, targets: pd.DataFrame, *, condition: str, options: ClaimOptions):
    """Clean cells of the biased and control bases in ``condition`` at ``options.n``, with the paper's
    oriented ``gap``; or the reason they cannot decide."""
    if table.empty or "runner" not in table.columns:
        return table, "no cells in the results"
    rows = table[(table["runner"] == options.runner) & table["base_kind"].isin(["biased", "control"])]
    rows = rows[(paper_condition(rows) == condition) & (pd.to_numeric(rows["n"], errors="coerce") == options.n)]
    if rows.empty:
        return rows, f"no {options.runner} cells of the {condition} sets at n = {options.n}"
    rows, note = clean_cells(rows)
    rows = rows.assign(gap=paper_gap_column(rows, targets["orientation"])).dropna(subset=["gap"])
    kinds = rows.groupby("base_kind")["backbone"].nunique()
    if kinds.get("biased", 0) != 1 or kinds.get("control", 0) < 1:
        return rows, (f"needs one biased base and a control with clean cells (found {kinds.get('biased', 0)} and "
                      f"{kinds.get('control', 0)})" + (f"; {note}" if note else ""))
    seeds = rows.groupby(["backbone", "target"])["seed"].nunique()
    if seeds.min() < MIN_CLEAN_REPLICATES:
        return rows, f"fewer than {MIN_CLEAN_REPLICATES} clean seeds for some base and target" + (
            f"; {note}" if note else "")
    auc = rows.groupby("backbone")["auc"].mean()
    if (auc < options.auc_floor).any():
        weak = ", ".join(f"{b} {v:.3f}" for b, v in auc[auc < options.auc_floor].items())
        return rows, f"models below the AUC floor {options.auc_floor:g}: {weak}"
    return rows, None


def _largest_control(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (target, seed): the biased gap minus the gap of the target's control with the largest mean gap."""
    means = rows.groupby(["target", "backbone", "base_kind"])["gap"].mean().reset_index()
    controls = means[means["base_kind"] == "control"]
    top = controls.loc[controls.groupby("target")["gap"].idxmax(), ["target", "backbone"]]
    per_seed = rows.groupby(["target", "backbone", "seed"])["gap"].mean().reset_index()
    biased = per_seed[per_seed["backbone"].isin(rows.loc[rows["base_kind"] == "biased", "backbone"])]
    control = per_seed.merge(top, on=["target", "backbone"])
    paired = biased.merge(control, on=["target", "seed"], suffixes=("_biased", "_control"))
    return paired.assign(difference=paired["gap_biased"] - paired["gap_control"])


def _count_verdict(exceed: int, total: int) -> tuple[Verdict, float]:
    rule = f"one-sided sign test of the targets where the biased base exceeds every control, at {SIGN_ALPHA:g}"
    p_up, p_down = sign_test(exceed, total), sign_test(total - exceed, total)
    words = f"{exceed} of {total} targets; sign test p = {p_up:.3g} (reverse p = {p_down:.3g})"
    if p_up < SIGN_ALPHA:
        return Verdict(REPRODUCED, rule, words), p_up
    if p_down < SIGN_ALPHA:
        return Verdict(CONTRADICTED, rule, words), p_up
    return inconclusive(rule, words + ": neither direction is significant"), p_up


def inheritance_claims(table: pd.DataFrame, targets: pd.DataFrame, *, condition: str,
                       options: ClaimOptions = ClaimOptions()) -> list[dict]:
    """Finding 1 (R1) in ``condition`` ("natural" or "skewz"): the pooled difference and the per-target count."""
    fid = {"natural": "1a", "skewz": "1b"}.get(condition)
    if fid is None:
        raise UserError(f"`condition` must be 'natural' or 'skewz', got {condition!r}.")
    name = f"{condition} sets: the biased base's oriented FPR gap > the largest control's"
    count_name = f"{condition} sets: targets where the biased base's gap exceeds every control's"
    rule = "the interval of biased - largest control (pooled over targets) lies above 0"
    rows, problem = _cells(table, targets, condition=condition, options=options)
    where = {"runner": options.runner, "deviation": options.deviation}
    if problem is not None:
        return [finding_row(fid, name, inconclusive(rule, problem), setting=f"{condition}, n = {options.n}", **where),
                finding_row(fid + "+", count_name, inconclusive("sign test over targets", problem), **where)]
    paired = _largest_control(rows)
    ci = target_pooled_ci(paired, value="difference")
    verdict = all_above_zero([("biased - largest control", ci.estimate, ci.low, ci.high)],
                             what="biased - largest control difference")
    auc = rows.groupby("base_kind")["auc"].mean()
    note = competence_note(float(auc["biased"]), float(rows[rows["backbone"].isin(paired["backbone_control"])]
                                                        ["auc"].mean()), name_a="biased", name_b="largest controls")
    found = [finding_row(fid, name, Verdict(verdict.verdict, rule, "; ".join(x for x in (verdict.reason, note) if x)),
                         setting=f"{condition}, n = {options.n}, {paired['target'].nunique()} targets",
                         estimate=Estimate(ci.estimate, ci.low, ci.high, ci.method), **where)]
    means = rows.groupby(["target", "base_kind", "backbone"])["gap"].mean().reset_index()
    exceed = [float(g.loc[g["base_kind"] == "biased", "gap"].max()) > float(g.loc[g["base_kind"] == "control",
                                                                                  "gap"].max())
              for _, g in means.groupby("target")]
    count, p_value = _count_verdict(int(sum(exceed)), len(exceed))
    found.append(finding_row(fid + "+", count_name, count, setting=f"{condition}, n = {options.n}",
                             estimate=Estimate(sum(exceed) / len(exceed), interval=f"share of targets; one-sided "
                                                                                      f"sign test p = {p_value:.3g}"),
                             **where))
    return found


def value_rows(table: pd.DataFrame, targets: pd.DataFrame, *, options: ClaimOptions = ClaimOptions()) -> pd.DataFrame:
    """The paper's regression rows: per (target, condition), ``v`` = mean oriented gap over seeds per base,
    ``Value`` (clipped), ``difference`` = v_biased - max control v, ``note``, ``Saliency`` and ``Skew``."""
    out = []
    for condition in ("natural", "skewz"):
        rows, problem = _cells(table, targets, condition=condition, options=options)
        if problem is not None:
            continue
        means = rows.groupby(["target", "base_kind", "backbone"])["gap"].mean().reset_index()
        for target, g in means.groupby("target"):
            value = paper_value(float(g.loc[g["base_kind"] == "biased", "gap"].iloc[0]),
                                g.loc[g["base_kind"] == "control", "gap"].to_numpy())
            out.append({"target": target, "condition": condition, "Value": value.value,
                        "difference": value.difference, "v_biased": value.difference + value.control_max,
                        "v_control_max": value.control_max, "note": value.note,
                        "Saliency": float(targets.loc[target, "saliency"]),
                        "Skew": float(targets.loc[target, f"skew_{condition}"])})
    return pd.DataFrame(out, columns=["target", "condition", "Value", "difference", "v_biased", "v_control_max",
                                      "note", "Saliency", "Skew"])


def _mixed_fit(rows: pd.DataFrame):
    import warnings

    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; a failed fit shows as NaN intervals
        return smf.mixedlm("Value ~ Saliency + Skew", rows, groups=rows["target"]).fit(reml=True)


def _fixed_r2(fit, rows: pd.DataFrame) -> float:
    """``r2_score(Value, fixed-effect predictions)``, as ``regress.py`` prints it."""
    predicted = np.asarray(fit.predict(rows), dtype=float)
    value = rows["Value"].to_numpy(dtype=float)
    return float(1 - ((value - predicted) ** 2).sum() / ((value - value.mean()) ** 2).sum())


def value_claims(rows: pd.DataFrame, *, options: ClaimOptions = ClaimOptions()) -> list[dict]:
    """Finding 2 (R2) on :func:`value_rows`: both coefficients' 95% intervals above 0 reproduce it."""
    where = {"runner": options.runner, "deviation": options.deviation}
    usable = rows.dropna(subset=["Value", "Saliency", "Skew"]) if len(rows) else rows
    problem = None
    if len(usable) < MIN_VALUE_ROWS:
        problem = f"only {len(usable)} (target, condition) rows with Value, Saliency and Skew (at least " \
                  f"{MIN_VALUE_ROWS} needed; the paper: 22)"
    elif usable["target"].nunique() == len(usable):
        problem = "one row per target: the random intercept is not identified (needs natural and skewz rows)"
    fit = None
    if problem is None:
        try:
            fit = _mixed_fit(usable)
        except (ValueError, np.linalg.LinAlgError) as exc:
            problem = f"the mixed model could not be fitted: {exc}"
    found = []
    for fid, term in (("2a", "Saliency"), ("2b", "Skew")):
        name = f"Value ~ Saliency + Skew (random intercept per target): Value grows with {term}"
        rule = f"the 95% interval of {term} lies above 0 (finding 2 holds when both rows are reproduced)"
        if problem is not None:
            found.append(finding_row(fid, name, inconclusive(rule, problem), **where))
            continue
        low, high = fit.conf_int().loc[term]
        verdict = all_above_zero([(term, float(fit.params[term]), float(low), float(high))], what=term)
        notes = int((usable["note"].fillna("") != "").sum())
        found.append(finding_row(
            fid, name, Verdict(verdict.verdict, rule, "; ".join(x for x in (verdict.reason, (
                f"{notes} row(s) with both gaps negative or |max control v| < 0.01 (their difference is in the rows "
                "table)" if notes else "")) if x)),
            setting=(f"MixedLM (REML), {len(usable)} rows, {usable['target'].nunique()} targets, n = {options.n}, "
                     f"R^2 of the fixed effects {_fixed_r2(fit, usable):.3f}"),
            estimate=Estimate(float(fit.params[term]), float(low), float(high), "95% Wald interval (MixedLM)"),
            **where))
    return found


def paper_findings(table: pd.DataFrame, targets: pd.DataFrame, *, underrep: pd.DataFrame | None = None,
                   options: ClaimOptions = ClaimOptions(), metric: str = "fpr_gap_stereotype") -> pd.DataFrame:
    """Findings 1-5 for both runners (finetune first, then the probe proxy), in :data:`COLUMNS`."""
    rows = []
    for runner in CLAIM_RUNNERS:
        opts = ClaimOptions(runner, options.n, options.auc_floor, options.deviation, options.pair_n)
        for condition in ("natural", "skewz"):
            rows += inheritance_claims(table, targets, condition=condition, options=opts)
        rows += value_claims(value_rows(table, targets, options=opts), options=opts)
        rows.append(size_finding(table, metric=metric, method="t", auc_floor=opts.auc_floor, runner=runner))
        for kind in ("imagenet", "scratch", "biased"):  # the paper's off-the-shelf bases, then the biased one
            rows += [{**row, "id": f"{row['id']}-{kind}"} for row in curation_findings(
                table, metric=metric, method="t", auc_floor=opts.auc_floor, runner=runner, base_kind=kind)]
        pairs = None if underrep is None else (
            underrep[underrep["runner"] == runner] if "runner" in underrep.columns  # a table without runner: probes
            else underrep if RUNNERS[runner].proxy else underrep.iloc[0:0])
        rows.append(underrep_finding(pairs, method="t", auc_floor=opts.auc_floor, runner=runner, n=opts.pair_n))
    found = pd.DataFrame(rows, columns=COLUMNS)
    if options.deviation:
        found["deviation"] = [options.deviation if not d else d if options.deviation in d
                              else f"{d}; {options.deviation}" for d in found["deviation"].fillna("")]
    return found


def build_findings(table: pd.DataFrame, targets: pd.DataFrame, *, salience: pd.DataFrame | None = None,
                   underrep: pd.DataFrame | None = None, geography=None, options=None) -> pd.DataFrame:
    """The findings table, one row per (finding, runner) in :data:`COLUMNS`.

    W&R's findings 1-5 for both runners from :func:`paper_findings`
    (ids ``1a``, ``1a+``, ``1b``, ``1b+``, ``2a``, ``2b``, ``3``, ``4a-<base>``, ``4b-<base>``,
    ``5``; ``finetune`` rows test the claim, ``probe (proxy)`` rows never do), then the toolkit's
    own rows: ``6``, the salience validation (not a paper claim), and ``7``, W&R's geographic
    finding from the geography experiment.

    Parameters
    ----------
    table : DataFrame
        Collected results (both runners), with ``base_kind``.
    targets : DataFrame
        :func:`analyze.reproduce.measures.target_table` (orientation, Skew and Saliency per target).
    salience : DataFrame, optional
        The salience table with the generator's truth (``true_log_ratio``).
    underrep : DataFrame, optional
        The pairs experiment, a ``runner`` column telling probe from finetune rows
        (:func:`analyze.reproduce.stages.underrep_table`, :func:`~analyze.reproduce.stages.finetune_pairs`).
    geography : path, optional
        The geography experiment's folder or its ``findings.csv``.
    options : ClaimOptions, optional
        Training size of findings 1-2, the pairs' size, the AUC floor and the run's deviation.
    """
    options = options or ClaimOptions()
    found = paper_findings(table, targets, underrep=underrep, options=options)
    toolkit = pd.DataFrame([salience_finding(salience), geography_finding(geography)], columns=COLUMNS)
    return pd.concat([found, toolkit], ignore_index=True)
