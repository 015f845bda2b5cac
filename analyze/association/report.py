"""Summary and plot of an association table (see :mod:`analyze.association.run`).

:func:`summarize_change` folds the ``change`` rows of several finetuned models (e.g. one per
finetuning seed) into one row per (backbone, condition, test) with a t interval over models.
:func:`plot_association` draws the change per test (PNG and SVG, Agg backend).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analyze.metrics.intervals import replicate_ci  # noqa: E402
from extract.errors import UserError  # noqa: E402
from extract.io import atomic_write

SUMMARY_KEYS = ["backbone", "condition", "test", "kind", "measure"]
SUMMARY_COLUMNS = [*SUMMARY_KEYS, "n_models", "mean_change", "sd_change", "ci_low", "ci_high",
                   "confidence", "interval"]


def _summary_row(group: pd.DataFrame, confidence: float) -> dict:
    changes = group["effect_size"].to_numpy(dtype=float)
    n = len(changes)
    mean = float(changes.mean())
    if n == 1:  # one model: its paired bootstrap interval is all there is
        return {"n_models": 1, "mean_change": mean, "sd_change": np.nan,
                "ci_low": float(group["ci_low"].iloc[0]), "ci_high": float(group["ci_high"].iloc[0]),
                "confidence": float(group["confidence"].iloc[0]), "interval": "paired bootstrap"}
    interval = replicate_ci(changes, confidence=confidence, method="t")
    return {"n_models": n, "mean_change": mean, "sd_change": float(changes.std(ddof=1)), "ci_low": float(interval.low),
            "ci_high": float(interval.high), "confidence": confidence, "interval": "t over models"}


def summarize_change(table: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Mean change per (backbone, condition, test) over the finetuned models, with its interval.

    With two or more models (e.g. finetuning seeds) the interval is the t interval of the mean
    change over models (``mean +- t_{n-1} sd / sqrt(n)``), which reflects finetuning
    variability; with one model it is that model's paired bootstrap interval.

    Returns
    -------
    DataFrame with the columns :data:`SUMMARY_COLUMNS`; empty when there are no change rows.
    """
    changes = table[table["stage"] == "change"]
    rows = [{**dict(zip(SUMMARY_KEYS, keys, strict=True)), **_summary_row(group, confidence)}
            for keys, group in changes.groupby(SUMMARY_KEYS, sort=False)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _draw_changes(axis, table: pd.DataFrame, tests: list[str]) -> None:
    summary = summarize_change(table)
    conditions = list(dict.fromkeys(summary["condition"]))
    width = 0.8 / max(len(conditions), 1)
    for j, condition in enumerate(conditions):
        offset = (j - (len(conditions) - 1) / 2) * width
        part = summary[summary["condition"] == condition].set_index("test").reindex(tests)
        x = np.arange(len(tests)) + offset
        color = f"C{j}"
        points = table[(table["stage"] == "change") & (table["condition"] == condition)]
        axis.scatter(points["test"].map({t: i for i, t in enumerate(tests)}) + offset,
                     points["effect_size"], s=10, color=color, alpha=0.4, linewidths=0)
        error = np.vstack([part["mean_change"] - part["ci_low"], part["ci_high"] - part["mean_change"]])
        axis.errorbar(x, part["mean_change"], yerr=np.nan_to_num(error), fmt="o", color=color,
                      capsize=3, label=condition)
    axis.axhline(0.0, color="0.5", linewidth=0.8)
    axis.set_ylabel("change after - before")


def _draw_values(axis, table: pd.DataFrame, tests: list[str]) -> None:
    models = list(dict.fromkeys(table["model"]))
    width = 0.8 / max(len(models), 1)
    for j, model in enumerate(models):
        part = table[table["model"] == model].set_index("test").reindex(tests)
        x = np.arange(len(tests)) + (j - (len(models) - 1) / 2) * width
        error = np.vstack([part["effect_size"] - part["ci_low"], part["ci_high"] - part["effect_size"]])
        axis.errorbar(x, part["effect_size"], yerr=np.nan_to_num(error), fmt="o", capsize=3,
                      label=f"{model} ({part['stage'].iloc[0]})")
        axis.scatter(x, part["null_mean"], marker="x", color="0.4", s=20)
    axis.axhline(0.0, color="0.5", linewidth=0.8)
    axis.set_ylabel("value (x: random-init null mean)")


def _save_atomic(figure, path: Path) -> Path:
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight",
                       metadata={"Date": None} if path.suffix == ".svg" else None)
    return path


def plot_association(table: pd.DataFrame, out_prefix: str | Path) -> list[Path]:
    """Plot the change per test (or, without change rows, each model's values) to PNG and SVG.

    One panel per (backbone, measure): the WEAT effect size d and the cosine-difference
    association live on different scales. With change rows: each finetuned model's change as a
    faint dot and the mean per condition with its interval (:func:`summarize_change`).
    Without: each model's value with its bootstrap interval and the random-init null mean as a
    grey cross.

    Returns
    -------
    list of Path
        ``<out_prefix>.png`` and ``<out_prefix>.svg``, each written atomically.
    """
    if table.empty:
        raise UserError("the association table is empty, so there is nothing to plot; run at "
                        "least one test.")
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    measure = table["measure"] if "measure" in table else pd.Series("value", index=table.index)
    table = table.assign(measure=measure)
    backbones = list(dict.fromkeys(table["backbone"]))
    measures = list(dict.fromkeys(table["measure"]))
    has_change = (table["stage"] == "change").any()
    widest = max(table.groupby("measure")["test"].nunique())
    figure, axes = plt.subplots(len(backbones), len(measures), squeeze=False,
                                figsize=(len(measures) * max(4.0, 1.1 * widest + 2),
                                         3.6 * len(backbones)))
    for row, backbone in enumerate(backbones):
        for column, name in enumerate(measures):
            axis = axes[row, column]
            part = table[(table["backbone"] == backbone) & (table["measure"] == name)]
            tests = list(dict.fromkeys(part["test"]))
            (_draw_changes if has_change else _draw_values)(axis, part, tests)
            axis.set_title(f"{backbone}: {name}", fontsize="medium")
            axis.set_xticks(np.arange(len(tests)), tests, rotation=30, ha="right")
            axis.set_xlim(-0.6, len(tests) - 0.4)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize="small", loc="best")
    figure.tight_layout()
    try:
        return [_save_atomic(figure, out_prefix.with_name(out_prefix.name + suffix))
                for suffix in (".png", ".svg")]
    finally:
        plt.close(figure)


def _draw_retention(axis, similarities: pd.DataFrame, retention: pd.DataFrame, group: str,
                    models: list[str]) -> None:
    """Before (x) vs after (y) of one plot group's items, one colour per finetuned model."""
    in_group = similarities["plot_groups"].str.split(",").apply(lambda groups: group in groups)
    part = similarities[in_group]
    for j, model in enumerate(models):
        after = part[part["model"] == model].set_index("item")
        base = after["backbone"].iloc[0]
        before = part[(part["backbone"] == base) & (part["stage"] == "before")].set_index("item")
        before = before.reindex(after.index)
        rho = retention[(retention["model"] == model) & (retention["group"] == group)]["rho"]
        label = f"#{j + 1}: rho {rho.iloc[0]:.2f}" if len(rho) else f"#{j + 1}"
        axis.errorbar(before["value"], after["value"], fmt="o", color=f"C{j}", capsize=2,
                      xerr=np.nan_to_num(np.vstack([before["value"] - before["ci_low"],
                                                    before["ci_high"] - before["value"]])),
                      yerr=np.nan_to_num(np.vstack([after["value"] - after["ci_low"],
                                                    after["ci_high"] - after["value"]])),
                      label=label)
    (x_low, x_high), (y_low, y_high) = axis.get_xlim(), axis.get_ylim()
    low, high = min(x_low, y_low), max(x_high, y_high)
    axis.plot([low, high], [low, high], color="0.6", linewidth=0.8)
    axis.set_xlabel("before (cosine similarity)")
    axis.set_ylabel("after")


def plot_retention(similarities: pd.DataFrame, retention: pd.DataFrame,
                   out_prefix: str | Path) -> list[Path]:
    """Ranjit et al.'s before-vs-after plot per plot group, each finetune's rho in its legend.

    One panel per plot group that has a retention row: every item's similarity before (x) and
    after (y) finetuning with its bootstrap intervals; the diagonal is "unchanged". Each legend
    gives every finetuned model's retention rho (Spearman over the panel's items); the caption
    names the numbered models.

    Returns
    -------
    list of Path
        ``<out_prefix>.png`` and ``<out_prefix>.svg``, each written atomically.
    """
    groups = list(dict.fromkeys(retention.loc[retention["scope"] == "plot_group", "group"]))
    if not groups:
        raise UserError("the retention table has no plot-group row, so there is nothing to "
                        "plot; measure a base and a model finetuned from it.")
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    # A trial-mean row ("mean of k finetunes") has no similarities of its own to draw.
    models = [model for model in dict.fromkeys(retention["model"])
              if model in set(similarities["model"])]
    figure, axes = plt.subplots(1, len(groups), squeeze=False, figsize=(4.2 * len(groups), 4.0))
    for axis, group in zip(axes[0], groups):
        _draw_retention(axis, similarities, retention, group, models)
        axis.set_title(f"{group} group", fontsize="medium")
        axis.legend(fontsize="x-small", loc="best")
    key = "; ".join(f"#{j + 1} {model}" for j, model in enumerate(models))
    figure.tight_layout()
    figure.text(0.01, -0.02, f"Retention: Spearman rho before vs after over each group's items. "
                f"{key}", fontsize="x-small", ha="left", va="top", wrap=True)
    try:
        return [_save_atomic(figure, out_prefix.with_name(out_prefix.name + suffix))
                for suffix in (".png", ".svg")]
    finally:
        plt.close(figure)
