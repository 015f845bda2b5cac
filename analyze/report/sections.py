"""One runner's part of the report: bias per level, figures, effect tables and findings.

Probe and full-finetune results answer different questions (docs/science.md section 10), so each runner
gets its own section, tables, figures and fits; nothing here pools the two.

Effect models: the paper's (``Value ~ Saliency + Skew``, mixed by attribute) when the rows
have a biased and a control base and natural or skew cells (it also needs ``skew`` and
``salience``; without them the section says so); the
general model (``bias ~ base * (correlation_strength + salience + log2_n)``) whenever it can be
fitted; the moderation model (``bias ~ base * correlation_strength +
correlation_strength:salience``, :mod:`analyze.effects.models`) when targets differ in salience; and,
when the table has no salience, the general model without salience, labelled so.
A model that cannot be fitted on these rows is named with its reason instead of a table.

The section works on the runner's clean cells (:func:`analyze.report.findings.clean_cells`):
the cells the diagnosis flagged are left out of its findings, tables, figures and fits unless
``options.include_flagged``, and its first paragraph says how many and why.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analyze.effects.format import fit_summary, format_number, format_p, write_tables
from analyze.effects.models import EffectsModel, run_effects, with_derived_columns
from analyze.report.document import Figure, Heading, Paragraph, Table, slug
from analyze.report.findings import (
    DEFAULT_OPTIONS,
    FindingOptions,
    clean_cells,
    correlation_cells,
    correlation_findings,
    effect_findings,
    level_name,
    headline_size,
    natural_findings,
    per_size_table_rows,
    pooled_summary,
    strongest_and_balanced,
    with_interval,
)
from analyze.report.plots import (
    plot_coefficients,
    plot_correlation,
    plot_size,
    plot_tradeoff,
)
from extract.errors import OutputError, UserError

log = logging.getLogger(__name__)

RUNNER_LABELS = {"probe": "linear probes on frozen features", "finetune": "full finetuning"}
RUNNER_NOTES = {
    "probe": "A logistic-regression probe is trained on each base's frozen features: it can only re-weight "
             "what the base already encodes, so it shows how much of the base's bias a finetuned head can "
             "pick up without changing the features.",
    "finetune": "Every layer of the base is trained on the finetuning set: the features themselves change, "
                "which is the setting in which the paper reports bias being partly overwritten.",
}
# Above this many targets the per-target panels would be unreadable: plot the mean over targets.
MAX_TARGET_PANELS = 4
MEAN_COLUMNS = ("natural_level",)


def runner_label(runner: str) -> str:
    """A reader's name for a runner (``probe`` -> linear probes on frozen features)."""
    return RUNNER_LABELS.get(str(runner), str(runner))


@dataclass
class ModelResult:
    """One effect model fitted (``coefficients`` set) or not (``problem`` says why)."""

    key: str
    title: str
    coefficients: pd.DataFrame | None = None
    rows: pd.DataFrame | None = None
    problem: str | None = None


def _paper_applies(rows: pd.DataFrame) -> bool:
    kinds = set(rows["base_kind"].astype(str)) if "base_kind" in rows.columns else set()
    specs = set(rows["spec_kind"].astype(str)) if "spec_kind" in rows.columns else set()
    return {"biased", "control"} <= kinds and bool(specs & {"natural", "skew"})


def _no_salience_formula(rows: pd.DataFrame, metric: str) -> str:
    data = with_derived_columns(rows)
    predictors = [c for c in ("correlation_strength", "log2_n") if c in data.columns and data[c].nunique() > 1]
    if not predictors:
        raise UserError("correlation strength and n are constant in these rows, so there is nothing to fit")
    rhs = " + ".join(predictors)
    by_base = "base" in data.columns and data["base"].nunique() > 1
    return f"{metric} ~ base * ({rhs})" if by_base else f"{metric} ~ {rhs}"


def fit_models(rows: pd.DataFrame, *, metric: str) -> list[ModelResult]:
    """The effect models that apply to one runner's rows (module docstring)."""
    plans = []
    if _paper_applies(rows):
        plans.append(("paper", "The paper's model: Value = v_biased / max control v, ~ Saliency + Skew",
                      dict(model="paper")))
    if "salience" in rows.columns and rows["salience"].notna().any():
        plans.append(("general", "General model: bias ~ base × (correlation strength + salience + log2 n)",
                      dict(model="general")))
        if rows["salience"].nunique() > 1:
            plans.append(("moderation", "Salience as the moderator of correlation: bias ~ base × correlation "
                          "strength + correlation strength : salience", dict(model="moderation")))
    else:
        plans.append(("general-no-salience", "General model without salience (no salience in the table)", None))
    results = []
    for key, title, options in plans:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                if options is None:
                    options = dict(model="formula", formula=_no_salience_formula(rows, metric), groups="target",
                                   estimators=("ols", "mixed"))
                model = EffectsModel(name=options.pop("model"), **options)
                coefficients, model_rows = run_effects(rows, metric=metric, model=model)
            results.append(ModelResult(key, title, coefficients.assign(model=key), model_rows))
        except UserError as exc:
            results.append(ModelResult(key, title, problem=str(exc).rstrip(".")))
    return results


def coefficient_blocks(result: ModelResult) -> list:
    """Heading, fit line and a coefficient table per fit (estimator) of one model."""
    blocks = [Heading(result.title, 4)]
    if result.problem:
        return blocks + [Paragraph(f"Not fitted: {result.problem}.", note=True)]
    for estimator, fit in result.coefficients.groupby("estimator", sort=False):
        first = fit.iloc[0]
        rows = tuple((str(r["term"]), format_number(r["coef"]), format_number(r["se"]),
                      f"[{format_number(r['ci_low'])}, {format_number(r['ci_high'])}]", format_p(r["p_value"]))
                     for _, r in fit.iterrows())
        blocks.append(Table(("term", "coef", "SE", "95% CI", "p"), rows,
                            caption=f"{estimator}: {first['formula']} — {fit_summary(fit)}"))
        if first["note"]:
            blocks.append(Paragraph(f"Note: {first['note']}.", note=True))
    return blocks


def _headline_level(cells: pd.DataFrame, options: FindingOptions) -> float | None:
    if cells.empty:
        return None
    levels = sorted(cells["level"].dropna().unique())
    if options.level is not None:
        return next((float(v) for v in levels if abs(float(v) - options.level) < 1e-9), None)
    return strongest_and_balanced(levels)[0]


def bias_by_level_table(rows: pd.DataFrame, *, metric: str, options: FindingOptions = DEFAULT_OPTIONS) -> Table | None:
    """Mean bias [95% interval] per correlation level (rows) and base (columns), at the headline n."""
    cells = correlation_cells(rows)
    if cells.empty:
        return None
    n, _ = headline_size(cells, metric=metric, level=_headline_level(cells, options), options=options)
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    summary = pooled_summary(cells, by=["backbone", "level"], value=metric, method=options.method)
    if summary.empty:
        return None
    backbones = sorted(summary["backbone"].astype(str).unique())
    kinds = (cells.drop_duplicates("backbone").set_index("backbone")["base_kind"].astype(str).to_dict()
             if "base_kind" in cells.columns else {})
    header = ("stereotype level" if "level_s1" in cells.columns else "level",
              *[f"{b} ({kinds[b]})" if b in kinds else b for b in backbones])
    table_rows = []
    for level, part in summary.groupby("level", sort=True):
        by_base = {str(r["backbone"]): with_interval(r["mean"], r["ci_low"], r["ci_high"], k=r["k"])
                   for _, r in part.iterrows()}
        table_rows.append((f"{level:g}", *[by_base.get(b, "not run") for b in backbones]))
    targets, seeds = int(summary["n_targets"].max()), int(summary["k"].max())
    kind = "t" if options.method == "t" else "normal"
    caption = (f"{metric} per {level_name(cells)}, mean [95% {kind} interval] over up to {seeds} seeds"
               f"{f' at n = {n}' if n is not None else ''}, each seed averaged over {targets} target(s)")
    return Table(header, tuple(table_rows), caption=caption)


def per_size_table(rows: pd.DataFrame, *, metric: str, options: FindingOptions = DEFAULT_OPTIONS) -> Table | None:
    """Bias [95% interval] per training size n (rows) and base (columns) at the headline level, when several n ran."""
    cells = correlation_cells(rows)
    what = "correlation"
    level = _headline_level(cells, options)
    if cells.empty and "spec_kind" in rows.columns:
        cells, what, level = rows[rows["spec_kind"] == "natural"], "natural", None
    if cells.empty or "n" not in cells.columns or cells["n"].nunique() < 2:
        return None
    header, table_rows = per_size_table_rows(cells, metric=metric, level=level, options=options)
    where = f"at {level_name(cells)} {level:g}" if level is not None else "on the natural cells"
    kind = "t" if options.method == "t" else "normal"
    return Table(header, tuple(table_rows),
                 caption=f"{metric} per training size n {where} ({what} grid), mean [95% {kind} interval] over "
                         "seeds, each seed averaged over the targets feasible at that n")


def mean_over_targets(rows: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """One row per (base, level, n, seed, ...) with ``values`` averaged over targets (for the figures)."""
    keys = [c for c in ("runner", "dataset", "sensitive", "backbone", "base_kind", "spec_kind", "level", "p", "n",
                        "seed") if c in rows.columns]
    values = [v for v in (*values, *MEAN_COLUMNS) if v in rows.columns]
    return rows.groupby(keys, sort=True, dropna=False)[values].mean().reset_index()


def _figure(draw, path_prefix: Path, caption: str) -> list:
    try:
        png = next(p for p in draw(path_prefix) if p.suffix == ".png")
    except OutputError:
        raise  # a full disk or unwritable folder stops the report: nothing may read as complete
    except UserError as exc:
        return [Paragraph(f"Figure not drawn ({caption.split(':')[0]}): {exc}", note=True)]
    return [Figure(png, caption)]


def figure_blocks(rows: pd.DataFrame, *, runner: str, metric: str, figures: Path) -> list:
    """Bias vs correlation level, AUC-vs-bias trade-off, and bias and AUC vs n when several n were run."""
    blocks, cells, name = [], correlation_cells(rows), slug(runner)
    values = [metric] + (["auc"] if "auc" in rows.columns else [])
    pooled = "target" in rows.columns and rows["target"].nunique() > MAX_TARGET_PANELS
    where = (f" Each seed is first averaged over the {rows['target'].nunique()} targets." if pooled else "")
    if not cells.empty:
        data = mean_over_targets(cells, values) if pooled else cells
        label = level_name(cells)
        blocks += _figure(lambda out: plot_correlation(data, out, metric=metric, level_label=label),
                          figures / f"{name}-correlation",
                          f"Bias vs finetuning correlation level, one line per base, mean and 95% band over seeds "
                          f"({runner_label(runner)}).{where}")
        if "auc" in cells.columns:
            blocks += _figure(lambda out: plot_tradeoff(data, out, metric=metric), figures / f"{name}-tradeoff",
                              f"Trade-off: test AUC vs bias across correlation levels (labels: level; star: natural "
                              f"level, interpolated) ({runner_label(runner)}).{where}")
    natural = rows[rows["spec_kind"] == "natural"] if "spec_kind" in rows.columns else rows.iloc[0:0]
    if "auc" in rows.columns and not natural.empty and natural["n"].nunique() > 1:
        data = mean_over_targets(natural, values) if pooled else natural
        blocks += _figure(lambda out: plot_size(data, out, metric=metric), figures / f"{name}-size",
                          f"Bias and AUC vs finetuning size n on natural sets ({runner_label(runner)}).{where}")
    return blocks


def runner_section(rows: pd.DataFrame, *, runner: str, metric: str, out_dir: Path,
                   options: FindingOptions = DEFAULT_OPTIONS) -> tuple[list[str], list]:
    """Findings (sentences) and blocks for one runner; writes its figures and effect tables under ``out_dir``.

    ``rows`` are all the runner's cells; flagged ones are left out here (module docstring).
    """
    label = runner_label(runner)
    log.info("report: %s (%d cells)", label, len(rows))
    rows, left_out = clean_cells(rows, include_flagged=options.include_flagged)
    findings = [left_out] if left_out else []
    if rows.empty:
        return findings + ["Every cell of this runner is flagged, so no finding is stated."], \
            [Heading(f"Results: {label}", 2), Paragraph(left_out or "", note=True)]
    findings += (correlation_findings(rows, metric=metric, options=options)
                 + natural_findings(rows, metric=metric, options=options))
    blocks = [Heading(f"Results: {label}", 2)]
    blocks += [Paragraph(RUNNER_NOTES[str(runner)], note=True)] if str(runner) in RUNNER_NOTES else []
    blocks += [Paragraph(left_out, note=True)] if left_out else []
    table = bias_by_level_table(rows, metric=metric, options=options)
    blocks += [Heading("Bias per correlation level", 3), table] if table is not None else []
    sizes = per_size_table(rows, metric=metric, options=options)
    blocks += [Heading("Bias per training size", 3), sizes] if sizes is not None else []
    figures = figure_blocks(rows, runner=runner, metric=metric, figures=out_dir / "figures")
    blocks += [Heading("Figures", 3)] + (figures or [Paragraph("No correlation grid and no range of n: no figure "
                                                               "of bias against them applies.", note=True)])
    blocks.append(Heading("Effect sizes", 3))
    for result in fit_models(rows, metric=metric):
        blocks += coefficient_blocks(result)
        if result.coefficients is None:
            continue
        write_tables(result.coefficients, out_dir / "effects" / f"{slug(runner)}-{result.key}", title=result.title,
                     rows=result.rows)
        findings += effect_findings(result.coefficients, title=result.title)
        blocks += _figure(lambda out, c=result.coefficients: plot_coefficients(c, out),
                          out_dir / "figures" / f"{slug(runner)}-coef-{result.key}",
                          f"Coefficients with 95% CIs: {result.title} ({label}).")
    return findings, blocks

