"""Linear probes beside full finetuning: one table with a labelled column per runner.

The two runners answer different questions (docs/science.md section 10): a probe re-weights frozen
features, full finetuning changes them. The section sets their numbers side by side on the
cells both ran (same bases, targets, sizes and correlation levels) and never merges them into
one estimate; the difference between runners is given with its interval as a comparison,
not as a correction of one by the other.
"""

from __future__ import annotations

import pandas as pd

from analyze.report.document import Heading, Paragraph, Table
from analyze.report.findings import (
    choose_size,
    correlation_cells,
    difference_interval,
    pooled_summary,
    strongest_and_balanced,
    with_interval,
    zero_verdict,
)
from analyze.report.sections import runner_label

RUNNERS = ("probe", "finetune")
DISCLAIMER = ("Probe results are not a reproduction of full-finetuning numbers: a linear probe on frozen "
              "features can only re-weight them, so it tends to show more persistent inheritance of the base's "
              "bias than full finetuning, which changes the features (docs/science.md section 10). Read each column on its own "
              "terms.")
SHORT_DISCLAIMER = ("Probe and full-finetune numbers are set side by side, not pooled; probe results are not a "
                    "reproduction of full-finetuning numbers (docs/science.md section 10).")


def shared_cells(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Correlation cells of both runners restricted to the (backbone, target, n, level) both ran; and notes."""
    cells = correlation_cells(table)
    keys = [c for c in ("backbone", "target", "n", "level") if c in cells.columns]
    per_runner = [set(map(tuple, cells.loc[cells["runner"] == r, keys].drop_duplicates().to_numpy())) for r in RUNNERS]
    common = per_runner[0] & per_runner[1]
    notes = []
    if not common:
        return cells.iloc[0:0], ["The two runners share no (base, target, n, level) cell, so no like-for-like "
                                 "comparison is possible."]
    mask = pd.Series([tuple(v) in common for v in cells[keys].to_numpy()], index=cells.index)
    for runner, have in zip(RUNNERS, per_runner):
        left = len(have - common)
        if left:
            notes.append(f"{left} {runner} (base, target, n, level) combinations that the other runner did not run "
                         "are left out of this table.")
    return cells[mask], notes


def _summaries(cells: pd.DataFrame, metric: str) -> dict:
    by = ["backbone", "base_kind", "level"] if "base_kind" in cells.columns else ["backbone", "level"]
    out = {}
    for runner in RUNNERS:
        rows = cells[cells["runner"] == runner]
        out[(runner, metric)] = pooled_summary(rows, by=by, value=metric).set_index(["backbone", "level"])
        if "auc" in rows.columns:
            out[(runner, "auc")] = pooled_summary(rows, by=by, value="auc").set_index(["backbone", "level"])
    return out


def comparison_table(cells: pd.DataFrame, *, metric: str) -> tuple[Table, dict]:
    """Rows (base, level); columns: each runner's bias [95% CI] and AUC [95% CI], labelled by runner."""
    summaries = _summaries(cells, metric)
    index = summaries[(RUNNERS[0], metric)].index
    kinds = (cells.drop_duplicates("backbone").set_index("backbone")["base_kind"].astype(str).to_dict()
             if "base_kind" in cells.columns else {})
    columns = [(r, v) for r in RUNNERS for v in (metric, "auc") if (r, v) in summaries]
    header = ("base", "base kind", "level", *[f"{runner_label(r)}: {v} [95% t interval]" for r, v in columns])
    rows = []
    for backbone, level in sorted(index, key=lambda k: (str(k[0]), k[1])):
        values = []
        for key in columns:
            s = summaries[key]
            values.append(with_interval(*s.loc[(backbone, level), ["mean", "ci_low", "ci_high"]])
                          if (backbone, level) in s.index else "not run")
        rows.append((str(backbone), kinds.get(backbone, ""), f"{level:g}", *values))
    n = choose_size(cells)
    seeds = int(max([s["k"].max() for s in summaries.values() if not s.empty], default=0))
    caption = (f"Cells both runners ran{f' (n = {n})' if cells['n'].nunique() == 1 else ''}: mean [95% t interval] over up "
               f"to {seeds} seeds, each seed averaged over the shared targets. Separate columns, never pooled.")
    return Table(header, tuple(rows), caption=caption), summaries


def runner_gap_sentences(summaries: dict, *, metric: str) -> list[str]:
    """For each base at the strongest shared level: probe vs finetune bias and their difference."""
    probe, finetune = summaries[("probe", metric)], summaries[("finetune", metric)]
    levels = sorted({lv for _, lv in probe.index} & {lv for _, lv in finetune.index})
    if not levels:
        return []
    strongest, _ = strongest_and_balanced(levels)
    sentences = []
    for backbone in sorted({b for b, lv in probe.index if lv == strongest and (b, lv) in finetune.index}, key=str):
        p, f = probe.loc[(backbone, strongest)], finetune.loc[(backbone, strongest)]
        ci = difference_interval(p, f)
        d, lo, hi = float(ci.estimate), float(ci.low), float(ci.high)
        probe_text = with_interval(p["mean"], p["ci_low"], p["ci_high"])
        finetune_text = with_interval(f["mean"], f["ci_low"], f["ci_high"])
        sentences.append(f"At level {strongest:g}, {backbone}: {metric} {probe_text} with a linear probe vs "
                         f"{finetune_text} with full finetuning; probe minus finetune {with_interval(d, lo, hi)} "
                         f"({ci.method}; {zero_verdict(lo, hi)}).")
    return sentences


def comparison_section(table: pd.DataFrame, *, metric: str) -> tuple[list[str], list]:
    """Findings and blocks of the probes-beside-finetuning section (needs both runners in ``table``)."""
    blocks = [Heading("Linear probes beside full finetuning", 2), Paragraph(DISCLAIMER)]
    cells, notes = shared_cells(table)
    if cells.empty:
        return [], blocks + [Paragraph(n, note=True) for n in notes]
    n = choose_size(cells)
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    comparison, summaries = comparison_table(cells, metric=metric)
    if not comparison.rows:
        return [], blocks + [Paragraph(f"No shared cell has a finite {metric}.", note=True)]
    blocks += [comparison] + [Paragraph(note, note=True) for note in notes]
    return [SHORT_DISCLAIMER, *runner_gap_sentences(summaries, metric=metric)], blocks


def comparison_rows(table: pd.DataFrame, *, metric: str) -> list:
    """Findings-table rows (:class:`analyze.report.findings.Comparison`): per base at the strongest shared
    level, the probe's bias minus full finetuning's, on the cells both runners ran."""
    from analyze.report.findings import Comparison

    cells, _ = shared_cells(table)
    n = choose_size(cells) if len(cells) else None
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    if cells.empty:
        return []
    summaries = _summaries(cells, metric)
    probe, finetune = summaries[("probe", metric)], summaries[("finetune", metric)]
    levels = sorted({lv for _, lv in probe.index} & {lv for _, lv in finetune.index})
    if not levels:
        return []
    strongest, _ = strongest_and_balanced(levels)
    rows = []
    for backbone in sorted({b for b, lv in probe.index if lv == strongest and (b, lv) in finetune.index}, key=str):
        p, f = probe.loc[(backbone, strongest)], finetune.loc[(backbone, strongest)]
        ci = difference_interval(p, f)
        low, high = float(ci.low), float(ci.high)
        verdict = ("probe higher" if low > 0 else "probe lower" if high < 0 else "no difference shown") \
            if pd.notna(low) else "no interval: no claim"
        rows.append(Comparison(finding="probe vs finetune", setting=f"level {strongest:g}" + (
            f", n = {n}" if n is not None else ""), first=f"{backbone} (probe)",
            first_value=with_interval(p["mean"], p["ci_low"], p["ci_high"]), second="full finetuning",
            second_value=with_interval(f["mean"], f["ci_low"], f["ci_high"]), estimate=float(ci.estimate), low=low,
            high=high, method=ci.method, verdict=verdict, runner="both", kind="runner"))
    return rows
