"""Figures from the tidy results table (seaborn style, Agg backend, PNG and SVG), and the ``plot`` verb.

Every ``plot_*(table, out_prefix, ...)`` writes ``<out_prefix>.png`` and ``<out_prefix>.svg``
atomically and returns their paths. Intervals are over replicates (seeds) of a cell:
``mean ± t(0.975, k-1) · sd / sqrt(k)`` with the sample sd (ddof=1) over the k replicates
(:func:`analyze.metrics.intervals.replicate_summary`; the released plots divide by k, not sqrt(k): not copied).
Panels split the table by whichever of runner, dataset, sensitive, target and n vary, so probe
and full-finetune results are never drawn as one curve. Bias is the signed
``fpr_gap_stereotype`` (positive = stereotype-consistent) unless ``metric`` says otherwise.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from analyze.effects.models import require_columns  # noqa: E402
from analyze.metrics.intervals import replicate_summary
from extract.errors import OutputError, UserError  # noqa: E402
from extract.io import atomic_write

KINDS = ("correlation", "size", "tradeoff", "coef", "salience")
FACETS = ("runner", "dataset", "sensitive", "target", "level", "p", "n")
TRUTH_COLUMNS = ("true_log_ratio", "true_strength_ratio", "true_salience")
DEFAULT_METRIC = "fpr_gap_stereotype"
LEVEL_LABEL = "correlation level P(s=1 | y=1)"
COLUMNS_PER_ROW = 4


def save_figure(figure, out_prefix: str | Path) -> list[Path]:
    """Write ``<out_prefix>.png`` and ``.svg`` atomically (temp file + rename); closes the figure."""
    out_prefix = Path(out_prefix)
    paths = []
    try:
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".png", ".svg"):
            path = out_prefix.with_name(out_prefix.name + suffix)
            with atomic_write(path, hint="choose a writable folder") as tmp:
                figure.savefig(tmp, format=suffix[1:], dpi=150, bbox_inches="tight",
                               metadata={"Date": None} if suffix == ".svg" else None)
            paths.append(path)
    except OSError as exc:
        raise OutputError(f"cannot write the figure {out_prefix} ({exc.strerror}); choose a writable folder.") from None
    finally:
        plt.close(figure)
    return paths


def _rows(table: pd.DataFrame, required, what: str) -> pd.DataFrame:
    require_columns(table, required, purpose=f"the {what} plot")
    if table.empty:
        raise UserError(f"the table has no rows for the {what} plot; run the grid that makes them.")
    return table


def _panels(table: pd.DataFrame, exclude=()) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per combination of the facet columns that vary."""
    facets = [c for c in FACETS if c in table.columns and c not in exclude and table[c].nunique() > 1]
    if not facets:
        return [("", table)]
    named = ("level", "p", "n")  # bare numbers need their name in the title
    return [(" · ".join(f"{c}={v}" if c in named else str(v) for c, v in zip(facets, np.atleast_1d(key))), part)
            for key, part in table.groupby(facets if len(facets) > 1 else facets[0], sort=True)]


def _grid(n_panels: int, *, rows_per_panel: int = 1, width: float = 3.8, height: float = 3.0):
    columns = min(n_panels, COLUMNS_PER_ROW)
    panel_rows = int(np.ceil(n_panels / columns))
    sns.set_theme(style="whitegrid", context="paper")
    figure, axes = plt.subplots(panel_rows * rows_per_panel, columns, squeeze=False, layout="constrained",
                                figsize=(width * columns, height * panel_rows * rows_per_panel))
    for unused in range(n_panels, panel_rows * columns):  # panel i sits in column i % columns
        for k in range(rows_per_panel):
            axes[(unused // columns) * rows_per_panel + k, unused % columns].set_visible(False)
    return figure, axes


def _palette(table: pd.DataFrame, column: str = "backbone") -> dict:
    names = sorted(table[column].astype(str).unique())
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def _line_with_band(axis, summary: pd.DataFrame, x: str, color, label: str) -> None:
    summary = summary.sort_values(x)
    axis.plot(summary[x], summary["mean"], marker="o", markersize=3, color=color, label=label)
    axis.fill_between(summary[x], summary["ci_low"], summary["ci_high"], color=color, alpha=0.2, linewidth=0)


def _wrap_xlabels(figure, axes) -> None:
    """Break each panel's x label into lines no wider than its panel, so the long level label
    ("stereotype-consistent correlation level P(stereotypical group | y=1)") of one panel does
    not run into its neighbour's. The width is the panel's before layout (a little narrower
    than after), and a character is taken as 0.6 em (DejaVu Sans averages about 0.55)."""
    for axis in axes.flat:
        text = axis.get_xlabel()
        if not axis.get_visible() or not text:
            continue
        inches = axis.get_position().width * figure.get_figwidth()
        chars = max(12, int(inches * 72 / (0.6 * axis.xaxis.label.get_fontsize())))
        axis.set_xlabel(textwrap.fill(" ".join(text.split()), chars, break_on_hyphens=False))


def _finish(figure, axes, title: str) -> None:
    _wrap_xlabels(figure, axes)
    entries = {}  # one entry per label over all panels (a base may be missing from some)
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels, handles = list(entries), list(entries.values())
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), frameon=False)
    figure.suptitle(title)


def plot_correlation(table: pd.DataFrame, out_prefix, *, metric: str = DEFAULT_METRIC,
                     level_label: str = LEVEL_LABEL) -> list[Path]:
    """Bias vs the finetuning correlation level ``P(s=1 | y=1)``, one line per base with its 95% band.

    Uses the rows with a ``level``; a dashed line marks the natural level when ``natural_level``
    is in the table.
    """
    table = _rows(table, ["backbone", "level", metric], "correlation")
    table = _rows(table[table["level"].notna()], [], "correlation")
    panels, colors = _panels(table, exclude=("level",)), _palette(table)
    figure, axes = _grid(len(panels))
    for axis, (title, part) in zip(axes.flat, panels):
        for backbone, rows in part.groupby("backbone", sort=True):
            _line_with_band(axis, replicate_summary(rows, ["level"], metric), "level", colors[str(backbone)],
                            str(backbone))
        if "natural_level" in part.columns and part["natural_level"].notna().any():
            axis.axvline(part["natural_level"].mean(), color="0.3", linestyle="--", linewidth=1, label="natural level")
        axis.axhline(0.0, color="0.5", linewidth=0.8)
        axis.set(title=title, xlabel=level_label, ylabel=metric)
    _finish(figure, axes, f"{metric} vs finetuning correlation (mean ± 95% CI over seeds)")
    return save_figure(figure, out_prefix)


def plot_size(table: pd.DataFrame, out_prefix, *, metric: str = DEFAULT_METRIC, spec_kind: str | None = "natural",
              performance: str = "auc") -> list[Path]:
    """Bias (top row) and AUC (bottom row) vs log2 of the finetuning size n, one line per base."""
    table = _rows(table, ["backbone", "n", metric, performance], "size")
    if spec_kind is not None and "spec_kind" in table.columns:
        table = _rows(table[table["spec_kind"] == spec_kind], [], f"size ({spec_kind!r} cells)")
    table = table.assign(log2_n=np.log2(pd.to_numeric(table["n"], errors="coerce")))
    panels, colors = _panels(table, exclude=("n",)), _palette(table)
    figure, axes = _grid(len(panels), rows_per_panel=2)
    columns = axes.shape[1]
    for i, (title, part) in enumerate(panels):
        top, bottom = axes[2 * (i // columns), i % columns], axes[2 * (i // columns) + 1, i % columns]
        for backbone, rows in part.groupby("backbone", sort=True):
            for axis, value in ((top, metric), (bottom, performance)):
                _line_with_band(axis, replicate_summary(rows, ["log2_n"], value), "log2_n", colors[str(backbone)],
                                str(backbone))
        ticks = np.sort(part["log2_n"].dropna().unique())
        for axis in (top, bottom):
            axis.set_xticks(ticks, [f"{2 ** t:.0f}" for t in ticks], rotation=45 if len(ticks) > 6 else 0)
        top.axhline(0.0, color="0.5", linewidth=0.8)
        top.set(title=title, xlabel="", ylabel=metric)
        bottom.set(xlabel="finetuning size n (log2 scale)", ylabel=performance)
    _finish(figure, axes, f"{metric} and {performance} vs finetuning size (mean ± 95% CI over seeds)")
    return save_figure(figure, out_prefix)


def _tradeoff_curve(axis, rows: pd.DataFrame, metric: str, performance: str, color, label: str) -> None:
    bias = replicate_summary(rows, ["level"], metric)
    auc = replicate_summary(rows, ["level"], performance)
    axis.errorbar(bias["mean"], auc["mean"], xerr=(bias["mean"] - bias["ci_low"]).fillna(0),
                  yerr=(auc["mean"] - auc["ci_low"]).fillna(0), color=color, marker="o", markersize=3,
                  linewidth=1, capsize=2, label=label)
    for level, x, y in zip(bias["level"], bias["mean"], auc["mean"]):
        axis.annotate(f"{level:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=color)
    if "natural_level" in rows.columns and rows["natural_level"].notna().any() and len(bias) > 1:
        natural = float(rows["natural_level"].mean())
        axis.plot(np.interp(natural, bias["level"], bias["mean"]), np.interp(natural, auc["level"], auc["mean"]),
                  marker="*", markersize=12, color=color, markeredgecolor="black", linestyle="none",
                  label="natural level (interpolated)")


def plot_tradeoff(table: pd.DataFrame, out_prefix, *, metric: str = DEFAULT_METRIC,
                  performance: str = "auc") -> list[Path]:
    """AUC vs bias across correlation levels (labelled points, 95% bars), one curve per base.

    A star marks the natural level (``natural_level``), interpolated linearly between the
    neighbouring levels' means.
    """
    table = _rows(table, ["backbone", "level", metric, performance], "tradeoff")
    table = _rows(table[table["level"].notna()], [], "tradeoff")
    panels, colors = _panels(table, exclude=("level",)), _palette(table)
    figure, axes = _grid(len(panels))
    for axis, (title, part) in zip(axes.flat, panels):
        for backbone, rows in part.groupby("backbone", sort=True):
            _tradeoff_curve(axis, rows, metric, performance, colors[str(backbone)], str(backbone))
        axis.axvline(0.0, color="0.5", linewidth=0.8)
        axis.set(title=title, xlabel=metric, ylabel=performance)
    _finish(figure, axes, f"{performance} vs {metric} across correlation levels (labels: level)")
    return save_figure(figure, out_prefix)


def plot_coefficients(effects: pd.DataFrame, out_prefix, *, include_intercept: bool = False) -> list[Path]:
    """Coefficients with their 95% CI from an effects table (one colour per model · estimator)."""
    effects = _rows(effects, ["term", "coef", "ci_low", "ci_high"], "coefficient")
    if not include_intercept:
        effects = _rows(effects[effects["term"] != "Intercept"], [], "coefficient (intercepts left out)")
    fit = (effects["model"].astype(str) + " · " + effects["estimator"].astype(str)
           if {"model", "estimator"} <= set(effects.columns) else pd.Series("fit", index=effects.index))
    effects = effects.assign(fit=fit)
    terms, fits = list(dict.fromkeys(effects["term"])), list(dict.fromkeys(effects["fit"]))
    sns.set_theme(style="whitegrid", context="paper")
    figure, axis = plt.subplots(figsize=(6.5, 1.5 + 0.3 * len(terms) * max(1, len(fits) / 1.5)), layout="constrained")
    colors, step = sns.color_palette("colorblind", len(fits)), 0.8 / len(fits)
    for j, name in enumerate(fits):
        part = effects[effects["fit"] == name].set_index("term").reindex(terms)
        y = np.arange(len(terms)) + (j - (len(fits) - 1) / 2) * step
        error = np.vstack([part["coef"] - part["ci_low"], part["ci_high"] - part["coef"]])
        axis.errorbar(part["coef"], y, xerr=np.nan_to_num(error), fmt="o", color=colors[j], capsize=3, label=name)
    axis.axvline(0.0, color="0.4", linewidth=0.8)
    axis.set_yticks(np.arange(len(terms)), terms)
    axis.invert_yaxis()
    axis.set(xlabel="coefficient (95% CI)", title="Effect sizes")
    figure.legend(loc="outside lower center", ncol=min(len(fits), 3), fontsize=7, frameon=False)
    return save_figure(figure, out_prefix)


def _p_text(pvalue: float) -> str:
    return "p < 0.001" if pvalue < 0.001 else f"p = {pvalue:.2g}"


def plot_salience(salience: pd.DataFrame, out_prefix, *, truth: str | None = None) -> list[Path]:
    """Estimated salience (with its CI) vs the true signal-strength ratio, with Spearman's rho.

    ``truth`` names the ground-truth column; by default the first of :data:`TRUTH_COLUMNS`
    present (``biastransfer salience`` on the avatar dataset writes ``true_log_ratio``).
    """
    truth = truth or next((c for c in TRUTH_COLUMNS if c in salience.columns), TRUTH_COLUMNS[0])
    salience = _rows(salience, ["target", "salience", "ci_low", "ci_high", truth], "salience")
    salience = salience.dropna(subset=["salience", truth])
    if len(salience) < 3:
        raise UserError("the salience plot needs at least 3 targets with a known truth to rank; add targets.")
    rho, pvalue = spearmanr(salience[truth], salience["salience"])
    sns.set_theme(style="whitegrid", context="paper")
    figure, axis = plt.subplots(figsize=(5.0, 4.0), layout="constrained")
    error = np.vstack([salience["salience"] - salience["ci_low"], salience["ci_high"] - salience["salience"]])
    axis.errorbar(salience[truth], salience["salience"], yerr=np.nan_to_num(error), fmt="o", capsize=3)
    for name, x, y in zip(salience["target"], salience[truth], salience["salience"]):
        axis.annotate(str(name), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    axis.axhline(0.0, color="0.5", linewidth=0.8)
    axis.set(xlabel=truth, ylabel="estimated salience (95% CI)",
             title=f"Salience: Spearman ρ = {rho:.2f} ({_p_text(pvalue)}, {len(salience)} targets)")
    return save_figure(figure, out_prefix)


# -- CLI -------------------------------------------------------------------------------------


