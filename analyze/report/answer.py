"""The answer first: the findings table (one row per comparison), the forest plot and the Answer block.

Each runner's rows come from :mod:`analyze.report.findings` (the biased base against every
control, scratch and ImageNet base at the headline setting, on the correlation grid and the
natural sets, and the move toward balance). This module adds what a reader needs to trust
them:

- the **intended** headline level is the strongest level *run* (all cells, flagged ones
  included); when the diagnosis left out every cell there, the rows name the level they
  actually report and the left-out level gets rows of its own saying why;
- a comparison the cleaning made impossible (every cell of one side flagged) is a row with
  the verdict "left out" and the flags that caused it, never silently dropped;
- the Answer block states one short sentence per question the run can answer, and what not to
  conclude (models below the AUC floor, a competence gap between the bases, left-out rows).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from analyze.metrics.diagnosis import EXCLUDING_FLAGS
from analyze.report.document import Figure, Heading, Paragraph, Table
from analyze.report.findings import (
    COMPARED_KINDS,
    COMPETENCE_GAP,
    DEFAULT_OPTIONS,
    Comparison,
    FindingOptions,
    clean_cells,
    correlation_cells,
    correlation_comparisons,
    fmt,
    natural_comparisons,
    strongest_and_balanced,
)

FINDINGS_HEADER = ("finding", "runner", "setting", "first", "value [95% CI]", "AUC", "second", "value [95% CI]",
                   "AUC", "difference", "95% interval", "method", "verdict", "flags")
LEFT_OUT = "left out"
__all__ = ["answer_blocks", "findings_table", "flag_reason", "omitted_rows", "plot_forest", "runner_comparisons"]


def flag_reason(rows: pd.DataFrame) -> str:
    """``"c_at_edge 12, lr_at_edge 3"``: the excluding flags carried by ``rows`` (a cell can carry several)."""
    counts = [(name, int(rows[f"flag_{name}"].fillna(False).astype(bool).sum())) for name in EXCLUDING_FLAGS
              if f"flag_{name}" in rows.columns]
    return ", ".join(f"{name} {count}" for name, count in counts if count)


def _why_missing(rows: pd.DataFrame, backbone: str) -> str:
    mine = rows[rows["backbone"].astype(str) == backbone]
    reason = flag_reason(mine)
    if reason:
        return f"all {len(mine)} cells of {backbone} here flagged ({reason})"
    return f"{backbone} has no cell with a finite value here" if len(mine) else f"{backbone} was not run here"


def omitted_rows(rows: pd.DataFrame, kept: set, *, setting: str, finding_kinds=COMPARED_KINDS) -> list[Comparison]:
    """A "left out" row for every (biased, other) pair run in ``rows`` (all cells of one setting, flagged
    included) that cannot be compared because one side has no kept cell (not in ``kept``)."""
    if "base_kind" not in rows.columns or rows.empty:
        return []
    kinds = rows.drop_duplicates("backbone").set_index(rows.drop_duplicates("backbone")["backbone"].astype(str))
    kinds = kinds["base_kind"].astype(str).to_dict()
    biased = sorted(b for b, k in kinds.items() if k == "biased")
    others = sorted((b for b, k in kinds.items() if k in finding_kinds), key=lambda b: (finding_kinds.index(kinds[b]), b))
    found = []
    for first in biased:
        for second in others:
            missing = [b for b in (first, second) if b not in kept]
            if not missing:
                continue
            found.append(Comparison(finding=f"biased vs {kinds[second]}", setting=setting, first=first,
                                    first_value=LEFT_OUT if first in missing else "", second=second,
                                    second_value=LEFT_OUT if second in missing else "", verdict=LEFT_OUT,
                                    flags="; ".join(_why_missing(rows, b) for b in missing), kind=kinds[second]))
    return found


def _at(rows: pd.DataFrame, *, n, level=None) -> pd.DataFrame:
    if n is not None and "n" in rows.columns:
        rows = rows[pd.to_numeric(rows["n"], errors="coerce") == n]
    return rows if level is None else rows[(rows["level"] - level).abs() < 1e-9]


def _kept(found: list[Comparison], setting: str) -> set:
    return {name for c in found if c.setting == setting for name in (c.first, c.second)}


def _correlation_rows(all_rows: pd.DataFrame, clean: pd.DataFrame, *, metric: str,
                      options: FindingOptions) -> tuple[list[Comparison], str | None]:
    """The correlation rows, the left-out intended level and pairs; and a note when the level moved."""
    head, found = correlation_comparisons(clean, metric=metric, options=options)
    cells = correlation_cells(all_rows)
    if head is None or head.summary.empty or cells.empty:
        return found, None
    every = _at(cells, n=head.n)
    intended = options.level if options.level is not None else strongest_and_balanced(every["level"].unique())[0]
    suffix = f", n = {head.n}" if head.n is not None else ""
    setting = f"level {head.strongest:g}{suffix}"
    kept = {str(b) for b in head.summary.loc[head.summary["level"] == head.strongest, "backbone"]}
    found += omitted_rows(_at(every, n=None, level=head.strongest), kept, setting=setting)
    if math.isclose(intended, head.strongest):
        return found, None
    moved = f"level {head.strongest:g}{suffix} (level {intended:g} left out)"
    found = [replace(c, setting=moved) if c.setting == setting else c for c in found]
    found += omitted_rows(_at(every, n=None, level=intended), set(), setting=f"level {intended:g}{suffix}")
    return found, (f"the strongest level run, {intended:g}, is left out: all its cells at this n are flagged "
                   f"({flag_reason(_at(every, n=None, level=intended))}); the rows report level {head.strongest:g}")


def runner_comparisons(all_rows: pd.DataFrame, *, runner: str, metric: str,
                       options: FindingOptions = DEFAULT_OPTIONS) -> tuple[list[Comparison], list[str]]:
    """One runner's findings-table rows (module docstring) and notes on what moved or was left out.

    ``all_rows`` are all of the runner's cells, flagged ones included; the comparisons use the
    clean ones (:func:`analyze.report.findings.clean_cells`).
    """
    clean, _ = clean_cells(all_rows, include_flagged=options.include_flagged)
    found, note = _correlation_rows(all_rows, clean, metric=metric, options=options) if len(clean) else ([], None)
    natural = natural_comparisons(clean, metric=metric, options=options) if len(clean) else []
    if natural or ("spec_kind" in all_rows.columns and (all_rows["spec_kind"] == "natural").any()):
        every = all_rows[all_rows["spec_kind"] == "natural"]
        setting = natural[0].setting if natural else "natural level"
        n = int(setting.split("n = ")[1]) if "n = " in setting else None
        found += natural + omitted_rows(_at(every, n=n), _kept(natural, setting), setting=setting)
    return [replace(c, runner=runner) for c in found], [note] if note else []


# -- the table ------------------------------------------------------------------------------------


def short_method(method: str) -> str:
    """The interval's method in a few words (the table column; the full words are in "How to read this")."""
    if not method:
        return ""
    cells = re.search(r"on the (\d+) \(target, seed\) cells", method)
    seeds = re.search(r"over (\d+) seeds", method)
    if "Welch" in method or "unpaired" in method:
        return "Welch t (unpaired)" + (", matched cells" if "matched cells" in method else "")
    kind = "paired t" if " t " in method or method.endswith(" t") or "paired t" in method else "paired normal"
    where = f", {cells.group(1)} matched cells" if cells else ""
    return f"{kind}, {seeds.group(1)} seeds{where}" if seeds else f"{kind}{where}"


def _bounds(c: Comparison) -> tuple[str, str]:
    if not math.isfinite(c.estimate):
        return "", ""
    if not c.stated:
        return fmt(c.estimate), "no interval"
    return f"{c.estimate:+.3f}", f"[{fmt(c.low)}, {fmt(c.high)}]"


def findings_table(comparisons: list[Comparison], *, metric: str) -> Table:
    """One row per comparison (:data:`FINDINGS_HEADER`)."""
    rows = []
    for c in comparisons:
        rows.append((c.finding, c.runner, c.setting, c.first, c.first_value, c.first_auc, c.second, c.second_value,
                     c.second_auc, *_bounds(c), short_method(c.method), c.verdict, c.flags))
    caption = (f"Findings: {metric} (positive = stereotype-consistent) of the biased base against each other base, "
               "and the move toward balance; difference = first − second with its 95% interval; AUC: each side's "
               "test AUC on the same cells (a cause is stated only where both reach the floor and differ by at most "
               f"{COMPETENCE_GAP:g}).")
    return Table(FINDINGS_HEADER, tuple(rows), caption=caption, css="findings")


# -- the forest plot ---------------------------------------------------------------------------


def plot_forest(comparisons: list[Comparison], out_prefix, *, metric: str) -> list[Path]:
    """Every stated base-vs-base difference with its 95% interval, grouped by runner and setting."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from analyze.report.plots import save_figure
    from extract.errors import UserError

    shown = [c for c in comparisons if c.kind in COMPARED_KINDS and c.stated]
    if not shown:
        raise UserError("no base-vs-base difference has an interval, so there is nothing to plot.")
    groups = list(dict.fromkeys((c.runner, c.setting) for c in shown))
    several = len({c.first for c in shown}) > 1  # name the biased base on each line only when there are several
    sns.set_theme(style="whitegrid", context="paper")
    height = 0.9 + 0.26 * (len(shown) + len(groups))
    figure, axis = plt.subplots(figsize=(6.2, height), layout="constrained")
    colours = dict(zip(COMPARED_KINDS, sns.color_palette("colorblind", len(COMPARED_KINDS))))
    y, ticks, labels = 0.0, [], []
    for runner, setting in groups:
        axis.text(-0.02, y, f"{runner} · {setting}", transform=axis.get_yaxis_transform(), fontsize=7.5,
                  fontweight="bold", va="center", ha="right")
        y += 1
        for c in (c for c in shown if (c.runner, c.setting) == (runner, setting)):
            axis.errorbar(c.estimate, y, xerr=[[c.estimate - c.low], [c.high - c.estimate]], fmt="o", capsize=3,
                          color=colours[c.kind])
            ticks.append(y)
            labels.append(f"{c.first} − {c.second} ({c.kind})" if several else f"{c.second} ({c.kind})")
            y += 1
    axis.axvline(0.0, color="0.3", linewidth=0.8)
    axis.set_yticks(ticks, labels, fontsize=7)
    axis.set_ylim(y - 0.5, -0.7)
    axis.set(xlabel=f"biased base minus each base: difference in {metric} (95% interval)")
    return save_figure(figure, out_prefix)


def forest_blocks(comparisons: list[Comparison], *, out_dir: Path, metric: str) -> list:
    """The forest plot as a figure block (none when no difference has an interval)."""
    if not any(c.kind in COMPARED_KINDS and c.stated for c in comparisons):
        return []
    png = next(p for p in plot_forest(comparisons, Path(out_dir) / "figures" / "forest", metric=metric)
               if p.suffix == ".png")
    return [Figure(png, "Forest plot: each biased-vs-other difference of the findings table with its 95% interval, "
                        "grouped by runner and setting; right of the line: the biased base has more bias.")]


# -- the Answer block --------------------------------------------------------------------------


def _transfer_sentence(rows: list[Comparison], label: str) -> str | None:
    controls = [c for c in rows if c.kind == "control" and c.stated]
    if not controls:
        unstated = [c for c in rows if c.kind == "control"]
        return (f"{label}, {unstated[0].setting}: no comparison with a control can be stated "
                f"({unstated[0].verdict}).") if unstated else None
    higher = [c for c in controls if c.low > 0]
    text = (f"{label}, {controls[0].setting}: the biased base has more bias than {len(higher)} of "
            f"{len(controls)} control{'s' * (len(controls) != 1)}")
    scratch = [c for c in rows if c.kind == "scratch" and c.stated and "matched AUC" not in c.finding]
    if scratch:
        text += " and than scratch" if all(c.low > 0 for c in scratch) else ", but not more than scratch"
        text += "".join(f" (AUC {_auc_words(c.first_auc)} vs {_auc_words(c.second_auc)} for scratch"
                        + ("" if c.causal else ": no cause stated, see the row's flags") + ")" for c in scratch[:1])
    return text + "."


def _auc_words(value: str) -> str:
    """An AUC cell's mean alone (``"0.728 [0.70, 0.75]"`` -> ``"0.728"``), ``unknown`` when empty."""
    return value.split(" ")[0] if value else "unknown"


def _balance_sentence(rows: list[Comparison], label: str, performance: str = "auc") -> str | None:
    bias = [c for c in rows if c.finding == "toward balance: bias" and c.stated]
    auc = {c.first: c for c in rows if c.finding == f"toward balance: {performance}" and c.stated}
    if not bias:
        return None
    c = bias[0]
    text = (f"{label}: moving {c.setting.split(',')[0]} changes the biased base's bias by "
            f"{c.estimate:+.3f} [{fmt(c.low)}, {fmt(c.high)}]")
    if c.first in auc:
        a = auc[c.first]
        text += f" and its AUC by {a.estimate:+.3f} [{fmt(a.low)}, {fmt(a.high)}]"
    return text + "."


def competence_gaps(competence: dict) -> list[str]:
    """Per runner, a caveat when the natural-set AUC of the biased base and another base differ by more than
    :data:`COMPETENCE_GAP` (``competence``: {runner label: {backbone: (kind, mean AUC)}})."""
    notes = []
    for label, bases in competence.items():
        biased = [(b, auc) for b, (kind, auc) in bases.items() if kind == "biased" and math.isfinite(auc)]
        others = [(b, auc) for b, (kind, auc) in bases.items() if kind in COMPARED_KINDS and math.isfinite(auc)]
        gaps = [(abs(a - o), b) for _, a in biased for b, o in others]
        if gaps and max(gaps)[0] > COMPETENCE_GAP:
            gap, base = max(gaps)
            notes.append(f"{label}: the biased base's natural-set AUC differs from {base}'s by {gap:.2f}, so a bias "
                         "difference may partly be a competence difference.")
    return notes


def answer_blocks(comparisons: list[Comparison], *, labels: dict, notes: list[str], curation: list[str] = ()) -> list:
    """The Answer block: one short paragraph per question (``labels``: {runner: reader's name}); ``notes`` are
    the caveats, ``curation`` the plan's summary."""
    transfer, balance = [], []
    for runner, label in labels.items():
        mine = [c for c in comparisons if c.runner == runner]
        for setting in dict.fromkeys(c.setting for c in mine if c.kind in COMPARED_KINDS):
            transfer.append(_transfer_sentence([c for c in mine if c.setting == setting], label))
        balance.append(_balance_sentence(mine, label))
    transfer, balance = [s for s in transfer if s], [s for s in balance if s] + list(curation)
    left = [c for c in comparisons if c.verdict == LEFT_OUT]
    weak = [c for c in comparisons if "did not learn" in c.flags]
    caveats = list(notes)
    caveats += [f"{len(left)} comparison{'s are' if len(left) != 1 else ' is'} left out (flagged cells; see "
                "the flags column)."] if left else []
    caveats += [f"{len(weak)} row{'s' * (len(weak) != 1)} involve models below the AUC floor: their bias says "
                "little."] if weak else []
    caveats.append("An interval that includes 0 shows no difference; it does not show equality.")
    blocks = [Heading("Answer", 2)]
    if transfer:
        blocks.append(Paragraph("Does the biased base transfer more bias than the controls? " + " ".join(transfer)))
    if balance:
        blocks.append(Paragraph("Does a balanced finetuning set remove it, and at what AUC cost? "
                                + " ".join(balance)))
    blocks.append(Paragraph("Do not conclude more than this: " + " ".join(caveats)))
    return blocks


# -- competence ----------------------------------------------------------------------------------


def competence_table(all_rows: pd.DataFrame, *, runner_name: str, options: FindingOptions = DEFAULT_OPTIONS,
                     performance: str = "auc") -> tuple[Table | None, dict]:
    """Natural-set test AUC per base (rows) and target (columns), mean [95% interval] over seeds, on the
    kept cells at the largest n; and {backbone: (kind, mean AUC)} for :func:`competence_gaps`.

    Without natural cells it uses every kept cell of the base and target and says so; a base and
    target whose cells were all flagged read "left out (flags)".
    """
    from analyze.report.findings import pooled_summary, with_interval

    if performance not in all_rows.columns or all_rows.empty:
        return None, {}
    natural = "spec_kind" in all_rows.columns and (all_rows["spec_kind"] == "natural").any()
    every = all_rows[all_rows["spec_kind"] == "natural"] if natural else all_rows
    if "n" in every.columns and every["n"].notna().any():
        every = every[pd.to_numeric(every["n"], errors="coerce") == pd.to_numeric(every["n"], errors="coerce").max()]
    clean, _ = clean_cells(every, include_flagged=options.include_flagged)
    by = ["backbone", "target"] if "target" in every.columns else ["backbone"]
    summary = pooled_summary(clean, by=by, value=performance, method=options.method) if len(clean) else None
    kinds = (every.drop_duplicates("backbone").set_index("backbone")["base_kind"].astype(str).to_dict()
             if "base_kind" in every.columns else {})
    targets = sorted(every["target"].astype(str).unique()) if "target" in every.columns else ["all"]
    rows, means = [], {}
    for backbone in sorted(every["backbone"].astype(str).unique(), key=lambda b: (kinds.get(b) != "biased", b)):
        mine = None if summary is None else summary[summary["backbone"].astype(str) == backbone]
        cells = []
        for target in targets:
            hit = None if mine is None else (mine[mine["target"].astype(str) == target] if "target" in by else mine)
            cells.append(with_interval(*hit.iloc[0][["mean", "ci_low", "ci_high"]], k=hit.iloc[0]["k"])
                         if hit is not None and len(hit) else "left out (flags)")
        means[backbone] = (kinds.get(backbone, ""), float(mine["mean"].mean()) if mine is not None and len(mine)
                           else float("nan"))
        rows.append((backbone, kinds.get(backbone, ""), *cells))
    where = "natural finetuning sets" if natural else "every kept cell (the table has no natural sets)"
    caption = (f"Competence ({runner_name}): test {performance} per base and target on {where}, mean [95% interval] "
               f"over seeds; a base comparison means little where the AUCs differ or fall below "
               f"{options.auc_floor:g}.")
    return Table(("base", "kind", *targets), tuple(rows), caption=caption), means
