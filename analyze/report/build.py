"""The ``report`` verb: a Markdown file and a self-contained HTML page from a collected table.

:func:`build_report` reads the tidy table ``biastransfer collect`` writes (one row per cell)
and, optionally, a salience table (``biastransfer salience``) and a curation plan
(``biastransfer plan``), and writes ``report.md`` and ``report.html`` into ``out_dir`` (plus the
figures under ``figures/`` and the effect tables under ``effects/`` as Markdown, CSV and LaTeX).
The page holds, in this order (``docs/report.md`` describes each part for readers):

- the **Answer**: one short paragraph per question the run can answer, and what not to
  conclude (:func:`analyze.report.answer.answer_blocks`);
- the **findings table** (one row per comparison, :mod:`analyze.report.answer`), the forest plot
  of every base-vs-base difference, the findings table of ``biastransfer reproduce`` when
  given, and short notes per runner (what was left out, the headline setting);
- the competence of the bases (natural-set AUC per base and target);
- a summary of the sweep and the diagnosis of its cells (counts per flag and runner, the
  grid edges chosen and the side to widen them on);
- when both runners are present, probes beside full finetuning (:mod:`analyze.report.compare`);
- per runner: bias per level and per n with their figures, and the effect models as
  coefficient tables (:mod:`analyze.report.sections`);
- the salience estimates and the curation plan, when given;
- "How to read this": the conventions.

The HTML page needs nothing else to open: figures are inline base64 PNGs, the CSS is inline,
there is no script and no network reference (:mod:`analyze.report.document`). Both files are
written atomically. Bias is ``fpr_gap_stereotype`` unless ``metric`` says otherwise; positive
means stereotype-consistent. Every definition the page uses is in ``docs/science.md``, which the
page links.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from analyze.effects.format import write_text_atomic
from analyze.effects.models import DEFAULT_METRIC, attach_salience, require_columns
from analyze.report.answer import (
    answer_blocks,
    competence_gaps,
    competence_table,
    findings_table,
    forest_blocks,
    runner_comparisons,
)
from analyze.report.compare import RUNNERS, comparison_rows, comparison_section
from analyze.report.document import (
    Bullets,
    Figure,
    Heading,
    Paragraph,
    Table,
    table_from_frame,
    to_html,
    to_markdown,
)
from analyze.metrics.diagnosis import EXCLUDING_FLAGS, FLAGS, edge_summary
from analyze.report.findings import DEFAULT_OPTIONS, FindingOptions, clean_cells, salience_findings, with_interval
from analyze.report.plots import TRUTH_COLUMNS, plot_salience
from analyze.report.sections import runner_label, runner_section
from analyze.results.tables import read_table
from extract import __version__
from extract.errors import OutputError, UserError

log = logging.getLogger(__name__)

DEFAULT_TITLE = "biastransfer report"
MAX_LISTED = 12
MAX_PLAN_ROWS = 60
SALIENCE_COLUMNS = ("target", "sensitive", "salience", "ci_low", "ci_high", "A_y", "A_s", "n_models", *TRUTH_COLUMNS,
                    "diagnosis")
SCIENCE_DOC = "docs/science.md"  # the definitions, in the project
__all__ = ["build_report", "plan_table", "sweep_summary"]


def _as_table(source, *, what: str) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if isinstance(source, (str, Path)):
        return read_table(source)
    raise UserError(f"the {what} must be a DataFrame or the path of a CSV or Parquet file, not "
                    f"{type(source).__name__}; pass a path.")


def _listing(values) -> str:
    values = [v for v in pd.unique(pd.Series(values).dropna())]
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:MAX_LISTED])
    return f"{shown}, … ({len(values)} in all)" if len(values) > MAX_LISTED else shown


def dataset_names(table: pd.DataFrame) -> list[str]:
    """The table's datasets as ``name (digest)`` (the manifest hash's first 12 characters, when collected)."""
    if "dataset" not in table.columns:
        return []
    if "dataset_hash" not in table.columns:
        return [str(v) for v in _unique(table["dataset"])]
    pairs = table[["dataset", "dataset_hash"]].drop_duplicates().dropna(subset=["dataset"])
    return sorted(f"{name} ({digest})" if pd.notna(digest) else str(name)
                  for name, digest in zip(pairs["dataset"], pairs["dataset_hash"]))


def _unique(values) -> list:
    values = list(pd.unique(pd.Series(values).dropna()))
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _declared_cross_dataset(table: pd.DataFrame) -> bool:
    return "cross_dataset" in table.columns and bool(table["cross_dataset"].fillna(False).astype(bool).any())


def cross_dataset_note(table: pd.DataFrame) -> str | None:
    """A sentence when the table's bases are compared across datasets (or its datasets are mixed)."""
    names = dataset_names(table)
    if len(names) < 2:
        return None
    if _declared_cross_dataset(table):
        return (f"The bases are compared across datasets ({', '.join(names)}): the sweep's grid sets "
                "cross_dataset = true, so a difference between bases also reflects the difference between their data.")
    return (f"The table holds several datasets ({', '.join(names)}) and no grid said its bases are meant to be "
            "compared across them; a difference between bases may reflect their data rather than their pretraining.")


def sweep_summary(table: pd.DataFrame) -> Table:
    """What the sweep holds: one row per aspect (cells, runners, datasets by name and digest, bases, targets, ...)."""
    items = [("cells", str(len(table)))]
    if "runner" in table.columns:
        counts = table["runner"].value_counts().sort_index()
        items.append(("runners", "; ".join(f"{runner_label(r)} ({r}): {k} cells" for r, k in counts.items())))
    if "dataset" in table.columns:
        items.append(("datasets (manifest digest)" if "dataset_hash" in table.columns else "datasets",
                      _listing(dataset_names(table))))
    if cross_dataset_note(table) is not None:  # the sentence follows the table
        items.append(("compared across datasets", "yes (grid.cross_dataset = true)" if _declared_cross_dataset(table)
                      else "mixed datasets, not declared by a grid"))
    if "sensitive" in table.columns:
        items.append(("sensitive attributes", _listing(table["sensitive"])))
    if "backbone" in table.columns:
        bases = table.drop_duplicates("backbone")
        kinds = bases["base_kind"].astype(str) if "base_kind" in bases.columns else pd.Series("", index=bases.index)
        items.append(("bases (kind)", _listing(b + (f" ({k})" if k else "") for b, k in
                                               zip(bases["backbone"].astype(str), kinds))))
    for column, name in (("target", "targets"), ("spec_kind", "finetuning set kinds"),
                         ("level", "correlation levels P(s=1 | y=1)"), ("n", "training sizes n"), ("seed", "seeds")):
        if column in table.columns and table[column].notna().any():
            unique = table[column].dropna()
            items.append((name, f"{unique.nunique()}: {_listing(unique)}"))
    return Table(("aspect", "value"), tuple(items))


def _dataset_blocks(table: pd.DataFrame) -> list:
    note = cross_dataset_note(table)
    return [] if note is None else [Paragraph(note, note=True)]


def _salience_blocks(salience: pd.DataFrame, out_dir: Path) -> tuple[list[str], list]:
    require_columns(salience, ["target", "salience", "ci_low", "ci_high"], purpose="the report's salience section")
    truth = next((c for c in TRUTH_COLUMNS if c in salience.columns and salience[c].notna().any()), None)
    blocks = [Heading("Salience", 2),
              Paragraph("Salience measures how much more easily a model picks up the sensitive attribute than the "
                        f"target; higher salience predicts more bias transfer (definitions: {SCIENCE_DOC} section 4)."),
              table_from_frame(salience[[c for c in SALIENCE_COLUMNS if c in salience.columns]],
                               caption="Salience per target with its 95% t interval over the models (aligned and "
                                       "inverted), and its diagnosis")]
    if truth is not None and salience[truth].notna().sum() >= 3:
        try:
            png = next(p for p in plot_salience(salience, out_dir / "figures" / "salience", truth=truth)
                       if p.suffix == ".png")
            blocks.append(Figure(png, f"Estimated salience (95% CI) vs the generator's {truth}."))
        except OutputError:
            raise  # a full disk or unwritable folder stops the report: nothing may read as complete
        except UserError as exc:
            blocks.append(Paragraph(f"Figure not drawn (salience): {exc}", note=True))
    return salience_findings(salience, truth=truth), blocks


def _bounds_text(value, low, high) -> str:
    """``v [lo, hi]`` with ``?`` for an undefined bound (e.g. a gap that does not halve in some resamples)."""
    if pd.isna(value):
        return ""
    if pd.notna(low) and pd.notna(high):
        return with_interval(value, low, high)
    show = lambda v: "?" if pd.isna(v) else f"{float(v):.3f}"  # noqa: E731
    return f"{float(value):.3f} [{show(low)}, {show(high)}]"


def plan_table(plan: pd.DataFrame) -> pd.DataFrame:
    """The plan with every ``X``, ``X_low``, ``X_high`` triple shown as one ``X [95% CI]`` text column
    (``?`` marks a bound the plan could not give, never a missing replicate)."""
    shown = plan.copy()
    for column in list(plan.columns):
        low, high = f"{column}_low", f"{column}_high"
        if low in plan.columns and high in plan.columns and pd.api.types.is_numeric_dtype(plan[column]):
            text = [_bounds_text(v, lo, hi) for v, lo, hi in zip(plan[column], plan[low], plan[high])]
            shown = shown.drop(columns=[low, high]).assign(**{column: text})
            shown = shown.rename(columns={column: f"{column} [95% CI]"})
    return shown


def plan_summary(plan: pd.DataFrame) -> str | None:
    """One sentence: how many (base, target) rows the plan answers and, for the others, each row's own
    reason (its ``status``) with how many rows share it."""
    if "status" not in plan.columns:
        return None
    answered = int((plan["status"] == "ok").sum())
    reasons = plan.loc[plan["status"] != "ok", "status"].astype(str).value_counts()
    why = "; ".join(f"{reason} ({count})" for reason, count in reasons.items())
    return (f"The curation plan finds a move that halves the gap for {answered} of {len(plan)} (base, target) rows"
            + (f"; the others: {why}." if why else "."))


def _plan_blocks(plan: pd.DataFrame) -> tuple[list[str], list]:
    shown = plan_table(plan).head(MAX_PLAN_ROWS)
    caption = "Curation plan from `biastransfer plan`" + (
        f" (first {MAX_PLAN_ROWS} of {len(plan)} rows)" if len(plan) > MAX_PLAN_ROWS else "")
    summary = plan_summary(plan)
    return [summary] if summary else [], [
        Heading("Curation plan", 2),
        Paragraph("For each base and target: the smallest move of the finetuning correlation level away from the "
                  "natural level that halves the stereotype-direction FPR gap, with its interval and AUC cost, as "
                  "computed by `biastransfer plan`. Intervals: the natural gap's is a replicate t interval over "
                  "seeds; the halving level's, the move's and the AUC cost's are percentile bootstrap intervals over "
                  "seeds (? = a bound the resamples cannot give). The status column gives each row's own reason "
                  "when it has no answer."),
        table_from_frame(shown, caption=caption)]


def _runners(table: pd.DataFrame, runners) -> tuple[pd.DataFrame, list[str]]:
    if "runner" not in table.columns:
        if runners:
            raise UserError("the table has no 'runner' column, so runners cannot be chosen; drop `runners`.")
        return table.assign(runner="all"), ["all"]
    present = [str(r) for r in pd.unique(table["runner"].dropna())]
    order = sorted(present, key=lambda r: (RUNNERS.index(r) if r in RUNNERS else len(RUNNERS), r))
    if runners:
        missing = [r for r in runners if r not in present]
        if missing:
            raise UserError(f"runner(s) {missing} are not in the table, which has {order}; choose among those.")
        order = [r for r in order if r in runners]
    return table[table["runner"].astype(str).isin(order)], order


def diagnosis_table(table: pd.DataFrame) -> Table | None:
    """Cells per diagnosis flag and runner (None when the table has no diagnosis columns)."""
    columns = [f"flag_{name}" for name in FLAGS]
    if not all(c in table.columns for c in columns):
        return None
    rows = []
    for runner, part in table.groupby("runner", sort=True):
        flags = part[columns].fillna(False).astype(bool)
        rows.append((runner_label(runner), str(len(part)), *[str(int(flags[c].sum())) for c in columns],
                     str(int(flags.any(axis=1).sum()))))
    return Table(("runner", "cells", *FLAGS, "flagged"), tuple(rows),
                 caption=f"Diagnosis of every cell (rules: {SCIENCE_DOC} section 8)")


def _diagnosis_blocks(table: pd.DataFrame, order: list[str], options: FindingOptions) -> list:
    blocks = [Heading("Diagnosis of the cells", 2)]
    counts = diagnosis_table(table)
    if counts is None:
        return blocks + [Paragraph("The table has no diagnosis columns (collected before the diagnosis existed); "
                                   "collect it again to see which cells are degenerate, at a grid edge, unconverged "
                                   "or below the AUC floor.", note=True)]
    blocks.append(counts)
    blocks += [Bullets(tuple(edges))] if (edges := edge_summary(table)) else []
    for runner in order:
        _, note = clean_cells(table[table["runner"] == runner], include_flagged=options.include_flagged)
        if note:
            blocks.append(Paragraph(f"{runner_label(runner)[:1].upper()}{runner_label(runner)[1:]}: {note}", note=True))
    return blocks


def build_report(table, *, out_dir, salience=None, plan=None, findings=None, title: str = DEFAULT_TITLE,
                 metric: str = DEFAULT_METRIC, options: FindingOptions = DEFAULT_OPTIONS) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` into ``out_dir`` (module docstring).

    Parameters
    ----------
    table : DataFrame or path
        The collected results, one row per cell (``biastransfer collect``).
    out_dir : path
        Folder for ``report.md``, ``report.html``, ``figures/`` and ``effects/``.
    salience, plan : DataFrame or path, optional
        A salience table (joined onto the results on ``target``) and a curation plan.
    findings : DataFrame or path, optional
        A findings table of ``biastransfer reproduce`` (:mod:`analyze.reproduce.findings`);
        when given, the findings section leads with it.
    title : str
        The page title.
    metric : str
        The bias column, positive = stereotype-consistent.
    options : FindingOptions
        Interval method, AUC floor, whether flagged cells are kept, the headline ``n`` and
        ``level`` overrides, and the ``runners`` kept (:class:`analyze.report.findings.FindingOptions`).

    Returns
    -------
    (md_path, html_path)
    """
    table = _as_table(table, what="results table")
    if table.empty:
        raise UserError("the results table has no rows; run a sweep and `biastransfer collect` first.")
    require_columns(table, ["backbone", metric], purpose="the report")
    salience = None if salience is None else _as_table(salience, what="salience table")
    if salience is not None:
        table = attach_salience(table, salience)
    table, order = _runners(table, options.runners)
    plan = None if plan is None else _as_table(plan, what="curation plan")
    lead = [] if findings is None else _reproduce_blocks(_as_table(findings, what="findings table"))
    out_dir = Path(out_dir)
    page = _page(table, order, inputs=(salience, plan, lead), metric=metric, out_dir=out_dir, options=options)
    blocks = [Heading(title, 1), *page]
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = write_text_atomic(out_dir / "report.md", to_markdown(blocks, relative_to=out_dir))
    try:
        html_path = write_text_atomic(out_dir / "report.html", to_html(blocks, title=title))
    except OutputError:
        md_path.unlink(missing_ok=True)  # never one of the pair without the other
        raise
    return md_path, html_path


def _page(table: pd.DataFrame, order: list[str], *, inputs: tuple, metric: str, out_dir: Path,
          options: FindingOptions) -> list:
    """Every block after the title: the answer and findings first, the detail after, "How to read this" last."""
    salience, plan, lead = inputs
    notes, body = _sections(table, order, salience=salience, plan=plan, metric=metric, out_dir=out_dir,
                            options=options)
    rows, moved = [], []
    for runner in order:
        found, level_notes = runner_comparisons(table[table["runner"] == runner], runner=runner, metric=metric,
                                                options=options)
        rows += found
        moved += [f"{runner_label(runner)}: {note}." for note in level_notes]
    if set(RUNNERS) <= set(order):
        clean = pd.concat([clean_cells(table[table["runner"] == r], include_flagged=options.include_flagged)[0]
                           for r in order])
        rows += comparison_rows(clean, metric=metric)
    competence, gaps = _competence_blocks(table, order, options)
    labels = {r: runner_label(r)[:1].upper() + runner_label(r)[1:] for r in order}
    caveats = moved + gaps + _salience_caveats(salience) + _effect_caveats(body)
    answer = answer_blocks(rows, labels=labels, notes=caveats, curation=notes.get("curation plan", []))
    findings = [Heading("Findings", 2), findings_table(rows, metric=metric),
                *forest_blocks(rows, out_dir=out_dir, metric=metric), *lead, *_note_blocks(notes)]
    return [*answer, *findings, *competence, Heading("The sweep", 2), sweep_summary(table), *_dataset_blocks(table),
            *_diagnosis_blocks(table, order, options), *body, *how_to_read(metric, order, options)]


def _competence_blocks(table: pd.DataFrame, order: list[str], options: FindingOptions) -> tuple[list, list[str]]:
    blocks, means = [Heading("Competence of the bases", 2)], {}
    for runner in order:
        shown, per_base = competence_table(table[table["runner"] == runner], runner_name=runner_label(runner),
                                           options=options)
        blocks += [shown] if shown is not None else []
        means[runner_label(runner)[:1].upper() + runner_label(runner)[1:]] = per_base
    if len(blocks) == 1:
        blocks.append(Paragraph("The table has no AUC column, so competence cannot be shown.", note=True))
    return blocks, competence_gaps(means)


def _salience_caveats(salience: pd.DataFrame | None) -> list[str]:
    flags = salience_flags(salience)
    return [f"Salience estimates are flagged ({flags}); effects of salience rest on them."] if flags else []


def salience_flags(salience: pd.DataFrame | None) -> str:
    """``"eyewear: c_at_edge; ..."``: the salience estimates their diagnosis flagged ("" when none)."""
    if salience is None or "flagged" not in salience.columns:
        return ""
    flagged = salience[salience["flagged"].fillna(False).astype(bool)]
    names = [name for name in EXCLUDING_FLAGS if f"flag_{name}" in flagged.columns]
    return "; ".join(f"{r['target']}: " + ", ".join(n for n in names if bool(r[f"flag_{n}"]))
                     for _, r in flagged.iterrows())


def _effect_caveats(body: list) -> list[str]:
    hidden = sum(1 for b in body if isinstance(b, Table) and b.header[-1:] == ("a positive value means",)
                 for row in b.rows if row[1] == "not identifiable here")
    return [f"{hidden} effect-model terms are not identifiable here (too few clusters or a predictor that barely "
            "varies): see the effect tables."] if hidden else []


def _note_blocks(notes: dict) -> list:
    """The short notes under the findings table (what was left out, the headline settings, salience)."""
    blocks = []
    for name, sentences in notes.items():
        if sentences:
            label = runner_label(name)
            blocks += [Heading(label[:1].upper() + label[1:], 3), Bullets(tuple(sentences))]
    return blocks


def _reproduce_blocks(findings: pd.DataFrame) -> list:
    """The findings table of ``biastransfer reproduce`` (under the report's own findings table), its verdict
    counts, and a line per finding the data contradict. A ``deviation`` column is shown when present."""
    require_columns(findings, ["id", "finding", "number", "ci_low", "ci_high", "rule", "verdict", "reason"],
                    purpose="the report's findings table", what="the findings table")
    extra = [c for c in ("runner", "setting", "deviation") if c in findings.columns]
    rows = []
    for r in findings.itertuples(index=False):
        number = "" if pd.isna(r.number) else _bounds_text(r.number, r.ci_low, r.ci_high)
        text = {k: "" if pd.isna(getattr(r, k, "")) else str(getattr(r, k, "")) for k in (*extra, "reason")}
        rows.append((str(r.id), str(r.finding), *[text[k] for k in extra], number, str(r.rule), str(r.verdict),
                     text["reason"]))
    from analyze.reproduce.findings import verdict_counts  # probe rows counted apart from finetune rows

    failed = findings[findings["verdict"] == "contradicted"]
    words = (f"{len(findings)} findings: {verdict_counts(findings)}. "
             "Each verdict is computed from the number and its 95% interval by the rule beside it: reproduced on "
             "the paper's side, contradicted on the opposite side, inconclusive otherwise (the interval covers 0, "
             "or the data needed are missing, too few, flagged by the diagnosis or from models below the AUC "
             f"floor; definitions: {SCIENCE_DOC}).")
    blocks = [Heading("The papers' findings", 3), Paragraph(words),
              Table(("#", "finding", *extra, "number [95% CI]", "rule", "verdict", "reason"), tuple(rows),
                    caption="Findings table of `biastransfer reproduce`")]
    if len(failed):
        blocks.append(Bullets(tuple(f"Contradicted: {r.finding} ({r.id}): {r.reason}"
                                    for r in failed.itertuples(index=False))))
    return blocks


def _sections(table, order, *, salience, plan, metric: str, out_dir: Path,
              options: FindingOptions = DEFAULT_OPTIONS) -> tuple[dict, list]:
    """Short notes per part ({name: sentences}) and the blocks of every section after the summary."""
    notes, body = {}, []
    flags = salience_flags(salience)
    for runner in order:
        notes[runner], blocks = runner_section(table[table["runner"] == runner], runner=runner, metric=metric,
                                               out_dir=out_dir, options=options, salience_flags=flags)
        body += blocks
    if set(RUNNERS) <= set(order):
        clean = pd.concat([clean_cells(table[table["runner"] == r], include_flagged=options.include_flagged)[0]
                           for r in order])
        sentences, blocks = comparison_section(clean, metric=metric)
        notes["linear probes beside full finetuning"] = sentences[:1]
        body = blocks + body
    if salience is not None:
        notes["salience"], blocks = _salience_blocks(salience, out_dir)
        body += blocks
    if plan is not None:
        notes["curation plan"], blocks = _plan_blocks(plan)
        body += blocks
    return notes, body


def how_to_read(metric: str, runners: list[str], options: FindingOptions = DEFAULT_OPTIONS) -> list:
    """The conventions and definitions the page uses, in one section at its end."""
    interval = ("Student's t intervals, mean ± t(0.975, k-1) · sd / √k over k replicate seeds" if options.method == "t"
                else "normal intervals, mean ± 1.96 · sd / √k over k replicate seeds (`method` normal)")
    items = (f"Bias is {metric}: positive when the false positives fall more on the group the target is naturally "
             "associated with (stereotype-consistent).",
             "The finetuning correlation is read as the stereotype level, the share of positives in that group "
             "(1: all of them, 0.5: balance).",
             f"Intervals are 95% {interval}. Each seed is first averaged over the targets.",
             "A difference between bases is paired by seed when both sides were fitted on the same rows, paired on "
             "the (target, seed) cells both kept when the diagnosis left out cells on one side, Welch's otherwise; "
             "the method column says which.",
             "Both values of a comparison are means over the same (target, seed) cells; where they cannot be, the "
             "flags column says so.",
             "Findings leave out cells the diagnosis flagged" + (" (kept here: `include_flagged`)"
                                                                  if options.include_flagged else "")
             + f"; rows with models below the AUC floor {options.auc_floor:g} are flagged.",
             "With fewer than 6 clusters (targets), effect terms with cluster-robust errors or a predictor that "
             "varies only between clusters are printed as not identifiable here; so are terms whose predictor barely "
             "varies.",
             f"Written by biastransfer {__version__}. Runners: " + ", ".join(runner_label(r) for r in runners)
             + f". Definitions: {SCIENCE_DOC}; how to read each part of this page: docs/report.md.")
    return [Heading("How to read this", 2), Bullets(items)]


# -- CLI -------------------------------------------------------------------------------------


