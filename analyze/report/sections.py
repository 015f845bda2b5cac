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
from analyze.metrics.diagnosis import excluded_cells
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
    natural_headline,
    correlation_headline,
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
    data: pd.DataFrame | None = None  # the rows the fit read (for the "barely varies" check)


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
            results.append(ModelResult(key, title, coefficients.assign(model=key), model_rows,
                                       data=model_rows if model_rows is not None else with_derived_columns(rows)))
        except UserError as exc:
            results.append(ModelResult(key, title, problem=str(exc).rstrip(".")))
    return results


MIN_CLUSTERS = 6  # fewer clusters (targets) than this: no term's interval is trusted
MIN_SPREAD = 0.1  # a predictor whose range is below this share of its largest magnitude barely varies
PREDICTOR_WORDS = {"correlation_strength": "correlation strength", "salience": "salience", "log2_n": "log2 n",
                   "Saliency": "salience", "Skew": "skew"}


def term_meaning(term: str, response: str) -> str:
    """What a positive coefficient of ``term`` means, in words."""
    if term == "Intercept":
        return f"{response} at the reference base with every predictor at 0"
    parts = term.split(":")
    bases = [p[len("base[T."):-1] for p in parts if p.startswith("base[T.")]
    slopes = [PREDICTOR_WORDS.get(p, p) for p in parts if not p.startswith("base[T.")]
    if bases and not slopes:
        return f"the {bases[0]} base has a higher {response} than the reference base"
    if bases:
        return f"{response} rises faster with {' × '.join(slopes)} for the {bases[0]} base than for the reference"
    if len(slopes) > 1:
        return f"the rise of {response} with {slopes[0]} is steeper where {slopes[1]} is higher"
    return f"{response} rises with {slopes[0]}"


def _between_clusters_only(names: list[str], rows: pd.DataFrame | None, groups: str) -> bool:
    """Whether every predictor in ``names`` is constant within each cluster (so only the clusters inform it)."""
    if rows is None or groups not in rows.columns or not names:
        return False
    return all(name in rows.columns and int(rows.groupby(groups)[name].nunique().max()) <= 1 for name in names)


def unidentifiable(term: str, fit: pd.DataFrame, rows: pd.DataFrame | None) -> str | None:
    """Why ``term`` cannot be read from this fit (None when it can).

    With fewer than :data:`MIN_CLUSTERS` clusters: every term of a fit with cluster-robust errors
    (its standard errors rest on the clusters), and a term whose predictors are constant within
    each cluster (only the clusters inform it) in any fit. Also a predictor whose range is under
    :data:`MIN_SPREAD` of its largest magnitude (it barely varies).
    """
    if term == "Intercept":
        return None
    first = fit.iloc[0]
    groups, name = first.get("n_groups"), str(first.get("groups", "groups"))
    predictors = [p for p in term.split(":") if not p.startswith("base[T.")]
    if groups is not None and not pd.isna(groups) and int(groups) < MIN_CLUSTERS:
        why = f"only {int(groups)} clusters ({name}); at least {MIN_CLUSTERS} are needed"
        if "cluster-robust" in str(first.get("errors", "")):
            return f"{why} for cluster-robust errors"
        if _between_clusters_only(predictors, rows, name):
            return f"{why}: {', '.join(PREDICTOR_WORDS.get(p, p) for p in predictors)} varies only between them"
    for predictor in predictors:
        if rows is None or predictor not in rows.columns:
            continue
        values = pd.to_numeric(rows[predictor], errors="coerce").dropna()
        if len(values) and values.max() - values.min() <= MIN_SPREAD * max(values.abs().max(), 1e-12):
            return f"{PREDICTOR_WORDS.get(predictor, predictor)} barely varies ({values.min():.3g} to {values.max():.3g})"
    return _read_outside_the_data(term, fit, rows)


def _read_outside_the_data(term: str, fit: pd.DataFrame, rows: pd.DataFrame | None) -> str | None:
    """A lower-order term of an interaction is its effect where the partner predictor is 0; when 0 lies
    farther than the data's own range beyond them, that is an extrapolation, not a finding."""
    if rows is None:
        return None
    parts = set(term.split(":"))
    for other in fit["term"].astype(str):
        extra = set(other.split(":")) - parts
        if other == term or not parts < set(other.split(":")):
            continue
        for predictor in (p for p in extra if not p.startswith("base[T.") and p in rows.columns):
            values = pd.to_numeric(rows[predictor], errors="coerce").dropna()
            low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
            if not low - (high - low) <= 0.0 <= high + (high - low):
                return (f"it is the effect at {PREDICTOR_WORDS.get(predictor, predictor)} = 0, far outside the data "
                        f"({low:.3g} to {high:.3g})")
    return None


def coefficient_rows(fit: pd.DataFrame, rows: pd.DataFrame | None) -> tuple[tuple[str, ...], ...]:
    """(term, estimate, 95% interval, p, what a positive value means) per term of one fit."""
    response = str(fit.iloc[0].get("response", "the response"))
    out = []
    for _, r in fit.iterrows():
        reason = unidentifiable(str(r["term"]), fit, rows)
        if reason:
            out.append((str(r["term"]), "not identifiable here", "", "", f"({reason})"))
            continue
        out.append((str(r["term"]), format_number(r["coef"]),
                    f"[{format_number(r['ci_low'])}, {format_number(r['ci_high'])}]", format_p(r["p_value"]),
                    term_meaning(str(r["term"]), response)))
    return tuple(out)


def coefficient_blocks(result: ModelResult, *, salience_flags: str = "") -> list:
    """Heading, and per fit (estimator): its formula, estimator, rows and groups, then its coefficient table."""
    blocks = [Heading(result.title, 4)]
    if result.problem:
        return blocks + [Paragraph(f"Not fitted: {result.problem}.", note=True)]
    for estimator, fit in result.coefficients.groupby("estimator", sort=False):
        first = fit.iloc[0]
        groups = "" if pd.isna(first["n_groups"]) else f"; {int(first['n_groups'])} groups ({first.get('groups', '')})"
        blocks.append(Paragraph(f"{first['formula']} — estimator {estimator}, errors {first['errors']}; "
                                f"{int(first['n_obs'])} rows{groups}.", note=True))
        blocks.append(Table(("term", "estimate", "95% interval", "p", "a positive value means"),
                            coefficient_rows(fit, result.data), caption=f"{result.title}: {estimator}"))
        if first["note"]:
            blocks.append(Paragraph(f"Note: {first['note']}.", note=True))
    if salience_flags and any(t in str(result.coefficients["term"].tolist()) for t in ("salience", "Saliency")):
        blocks.append(Paragraph(f"Salience estimates flagged by their diagnosis: {salience_flags}.", note=True))
    return blocks


def _headline_level(cells: pd.DataFrame, options: FindingOptions) -> float | None:
    if cells.empty:
        return None
    levels = sorted(cells["level"].dropna().unique())
    if options.level is not None:
        return next((float(v) for v in levels if abs(float(v) - options.level) < 1e-9), None)
    return strongest_and_balanced(levels)[0]


def bias_by_level_table(rows: pd.DataFrame, *, metric: str, options: FindingOptions = DEFAULT_OPTIONS,
                        every: pd.DataFrame | None = None) -> Table | None:
    """Mean bias [95% interval] per correlation level (rows) and base (columns), at the headline n.

    ``every`` holds all the runner's cells (flagged ones included): a (level, base) whose cells
    all ran but were left out reads "left out (flags)", one that never ran "not run".
    """
    cells = correlation_cells(rows)
    if cells.empty:
        return None
    n, _ = headline_size(cells, metric=metric, level=_headline_level(cells, options), options=options)
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    summary = pooled_summary(cells, by=["backbone", "level"], value=metric, method=options.method)
    if summary.empty:
        return None
    ran = correlation_cells(every if every is not None else rows)
    ran = ran if n is None else ran[pd.to_numeric(ran["n"], errors="coerce") == n]
    ran_keys = {(str(b), round(float(lv), 6)) for b, lv in zip(ran["backbone"], ran["level"])}
    backbones = sorted(set(summary["backbone"].astype(str)) | {b for b, _ in ran_keys})
    kinds = (ran.drop_duplicates("backbone").set_index("backbone")["base_kind"].astype(str).to_dict()
             if "base_kind" in ran.columns else {})
    header = ("stereotype level" if "level_s1" in cells.columns else "level",
              *[f"{b} ({kinds[b]})" if b in kinds else b for b in backbones])
    table_rows = []
    for level in sorted(set(summary["level"]) | {lv for _, lv in ran_keys}):
        part = summary[(summary["level"] - level).abs() < 1e-9]
        by_base = {str(r["backbone"]): with_interval(r["mean"], r["ci_low"], r["ci_high"], k=r["k"])
                   for _, r in part.iterrows()}
        table_rows.append((f"{level:g}", *[by_base.get(b, _missing_cell(ran, b, level)) for b in backbones]))
    targets, seeds = int(summary["n_targets"].max()), int(summary["k"].max())
    kind = "t" if options.method == "t" else "normal"
    caption = (f"{metric} per {level_name(cells)}, mean [95% {kind} interval] over up to {seeds} seeds"
               f"{f' at n = {n}' if n is not None else ''}, each seed averaged over {targets} target(s)")
    return Table(header, tuple(table_rows), caption=caption)


def _missing_cell(ran: pd.DataFrame, backbone: str, level: float | None) -> str:
    """Why a (base, level) of a table has no value: never run, every cell flagged, or no finite value."""
    here = ran[ran["backbone"].astype(str) == backbone]
    here = here if level is None else here[(here["level"] - level).abs() < 1e-9]
    if here.empty:
        return "not run"
    flagged = excluded_cells(here)
    return "left out (flags)" if flagged is not None and bool(flagged.all()) else "no finite value"


def per_size_table(rows: pd.DataFrame, *, metric: str, options: FindingOptions = DEFAULT_OPTIONS,
                   every: pd.DataFrame | None = None) -> Table | None:
    """Bias [95% interval] per training size n (rows) and base (columns) at the headline level, when several n ran;
    a cell whose runs were all left out reads "left out (flags)" when ``every`` (all the runner's cells) is given."""
    cells = correlation_cells(rows)
    what = "correlation"
    level = _headline_level(cells, options)
    if cells.empty and "spec_kind" in rows.columns:
        cells, what, level = rows[rows["spec_kind"] == "natural"], "natural", None
    if cells.empty or "n" not in cells.columns or cells["n"].nunique() < 2:
        return None
    header, table_rows = per_size_table_rows(cells, metric=metric, level=level, options=options)
    if every is not None:
        ran = correlation_cells(every) if what == "correlation" else every[every["spec_kind"] == "natural"]
        ran = ran if level is None else ran[(ran["level"] - level).abs() < 1e-9]
        table_rows = [(row[0], *[_missing_cell(ran[pd.to_numeric(ran["n"], errors="coerce") == float(row[0])],
                                               base, None) if text == "not run" else text
                                 for base, text in zip(header[1:-1], row[1:-1])], row[-1]) for row in table_rows]
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


def figure_blocks(rows: pd.DataFrame, *, runner: str, metric: str, figures: Path) -> list[tuple[str, list]]:
    """(key, blocks) of the bias-vs-correlation figure, the AUC-vs-bias trade-off, and bias and AUC vs n
    when several n were run; keys ``correlation``, ``tradeoff``, ``size`` (placed beside their tables)."""
    found, cells, name = [], correlation_cells(rows), slug(runner)
    values = [metric] + (["auc"] if "auc" in rows.columns else [])
    pooled = "target" in rows.columns and rows["target"].nunique() > MAX_TARGET_PANELS
    where = (f" Each seed is first averaged over the {rows['target'].nunique()} targets." if pooled else "")
    if not cells.empty:
        data = mean_over_targets(cells, values) if pooled else cells
        label = level_name(cells)
        found.append(("correlation", _figure(lambda out: plot_correlation(data, out, metric=metric, level_label=label),
                                             figures / f"{name}-correlation",
                                             f"Bias vs finetuning correlation level, one line per base, mean and 95% "
                                             f"band over seeds ({runner_label(runner)}).{where}")))
        if "auc" in cells.columns:
            found.append(("tradeoff", _figure(lambda out: plot_tradeoff(data, out, metric=metric),
                                              figures / f"{name}-tradeoff",
                                              f"Trade-off: test AUC vs bias across correlation levels (labels: level; "
                                              f"star: natural level, interpolated) ({runner_label(runner)}).{where}")))
    natural = rows[rows["spec_kind"] == "natural"] if "spec_kind" in rows.columns else rows.iloc[0:0]
    if "auc" in rows.columns and not natural.empty and natural["n"].nunique() > 1:
        data = mean_over_targets(natural, values) if pooled else natural
        found.append(("size", _figure(lambda out: plot_size(data, out, metric=metric), figures / f"{name}-size",
                                      f"Bias and AUC vs finetuning size n on natural sets ({runner_label(runner)})."
                                      f"{where}")))
    return found


def runner_section(rows: pd.DataFrame, *, runner: str, metric: str, out_dir: Path,
                   options: FindingOptions = DEFAULT_OPTIONS, salience_flags: str = "") -> tuple[list[str], list]:
    """Short notes (what was left out, the headline setting) and blocks for one runner; writes its figures
    and effect tables under ``out_dir``.

    ``rows`` are all the runner's cells; flagged ones are left out here (module docstring), and
    the level table says "left out (flags)" where only flagged cells ran.
    """
    label = runner_label(runner)
    log.info("report: %s (%d cells)", label, len(rows))
    every = rows
    rows, left_out = clean_cells(rows, include_flagged=options.include_flagged)
    notes = [left_out] if left_out else []
    if rows.empty:
        return notes + ["Every cell of this runner is flagged, so no finding is stated."], \
            [Heading(f"Results: {label}", 2), Paragraph(left_out or "", note=True)]
    notes += _headline_notes(rows, metric=metric, options=options)
    blocks = [Heading(f"Results: {label}", 2)]
    blocks += [Paragraph(RUNNER_NOTES[str(runner)], note=True)] if str(runner) in RUNNER_NOTES else []
    blocks += [Paragraph(left_out, note=True)] if left_out else []
    figures = {key: figure for key, figure in figure_blocks(rows, runner=runner, metric=metric,
                                                              figures=out_dir / "figures")}
    table = bias_by_level_table(rows, metric=metric, options=options, every=every)
    blocks += [Heading("Bias per correlation level", 3), table, *figures.pop("correlation", [])] \
        if table is not None else []
    sizes = per_size_table(rows, metric=metric, options=options, every=every)
    blocks += [Heading("Bias per training size", 3), sizes, *figures.pop("size", [])] if sizes is not None else []
    rest = [b for blocks_ in figures.values() for b in blocks_]
    blocks += [Heading("Other figures", 3), *rest] if rest else []
    blocks.append(Heading("Effect sizes", 3))
    for result in fit_models(rows, metric=metric):
        blocks += coefficient_blocks(result, salience_flags=salience_flags)
        if result.coefficients is None:
            continue
        write_tables(result.coefficients, out_dir / "effects" / f"{slug(runner)}-{result.key}", title=result.title,
                     rows=result.rows)
        blocks += _figure(lambda out, c=result.coefficients: plot_coefficients(c, out),
                          out_dir / "figures" / f"{slug(runner)}-coef-{result.key}",
                          f"Coefficients with 95% CIs: {result.title} ({label}).")
    return notes, blocks


def _headline_notes(rows: pd.DataFrame, *, metric: str, options: FindingOptions) -> list[str]:
    """The headline setting's rule, in one short sentence per grid."""
    notes = []
    for name, head in (("correlation", correlation_headline(rows, metric=metric, options=options)),
                       ("natural", natural_headline(rows, metric=metric, options=options))):
        if head is not None and head.rule:
            notes.append(f"Headline setting ({name} cells): {head.rule}")
    return notes
