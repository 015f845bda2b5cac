"""Coefficient tables as Markdown, LaTeX and CSV, written atomically.

Hand-written formatters (no ``tabulate`` or ``jinja2``): one block per fit (model x
estimator) with a line that gives the errors, ``n_obs``, ``n_groups`` and R², then one row per
term with coefficient, SE, 95% CI and p-value. The CSV is the flat coefficient table
(:data:`analyze.effects.fit.COEFFICIENT_COLUMNS`) with full precision.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from extract.io import write_text

FIT_KEYS = ["model", "estimator"]
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"$\sim$", "^": r"\^{}"}


def format_number(value, digits: int = 4) -> str:
    """``digits`` significant digits; an empty string for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):.{digits}g}"


def format_p(value) -> str:
    """p-values: three decimals, ``<0.001`` below that."""
    if value is None or math.isnan(float(value)):
        return ""
    return "<0.001" if value < 0.001 else f"{float(value):.3f}"


def _fits(table: pd.DataFrame):
    return table.groupby(FIT_KEYS, sort=False)


def fit_summary(rows: pd.DataFrame) -> str:
    """One line: errors, n_obs, n_groups, R² (marginal and conditional for mixed models)."""
    first = rows.iloc[0]
    parts = [str(first["errors"]), f"n_obs = {int(first['n_obs'])}"]
    if not pd.isna(first["n_groups"]):
        parts.append(f"n_groups = {int(first['n_groups'])}")
    if first["estimator"] == "mixed":
        parts.append(f"R² marginal = {format_number(first['r2_marginal'], 3)}, "
                     f"conditional = {format_number(first['r2_conditional'], 3)}")
        parts.append(f"R² of fixed predictions = {format_number(first['r2'], 3)}")
        parts.append(f"group variance = {format_number(first['group_var'], 3)}")
    else:
        parts.append(f"R² = {format_number(first['r2'], 3)}")
    return " · ".join(parts)


def _interval(row) -> str:
    return f"[{format_number(row['ci_low'])}, {format_number(row['ci_high'])}]"


def to_markdown(table: pd.DataFrame, *, title: str | None = None) -> str:
    """The coefficient table as Markdown, one section per fit."""
    lines = [f"## {title}", ""] if title else []
    for (model, estimator), rows in _fits(table):
        lines += [f"### {model} · {estimator}: `{rows.iloc[0]['formula']}`", "", fit_summary(rows), "",
                  "| term | coef | SE | 95% CI | p |", "|---|---:|---:|---|---:|"]
        lines += [f"| {r['term']} | {format_number(r['coef'])} | {format_number(r['se'])} | {_interval(r)} | "
                  f"{format_p(r['p_value'])} |" for _, r in rows.iterrows()]
        if rows.iloc[0]["note"]:
            lines += ["", f"Note: {rows.iloc[0]['note']}."]
        lines.append("")
    return "\n".join(lines)


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame) -> str:
    """The coefficient table as LaTeX, one ``table`` (booktabs) per fit."""
    lines = ["% Written by biastransfer effects; needs \\usepackage{booktabs}."]
    for (model, estimator), rows in _fits(table):
        caption = f"{model}, {estimator}: {rows.iloc[0]['formula']}. {fit_summary(rows).replace(' · ', '; ')}."
        caption = latex_escape(caption).replace("R²", "$R^2$")
        lines += ["\\begin{table}[ht]", "\\centering", f"\\caption{{{caption}}}",
                  "\\begin{tabular}{lrrlr}", "\\toprule", "Term & Coef. & SE & 95\\% CI & $p$ \\\\", "\\midrule"]
        lines += [f"{latex_escape(r['term'])} & {format_number(r['coef'])} & {format_number(r['se'])} & "
                  f"{_interval(r)} & {format_p(r['p_value']).replace('<', '$<$')} \\\\" for _, r in rows.iterrows()]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    return write_text(path, text, hint="choose a writable path")


def write_tables(table: pd.DataFrame, out: str | Path, *, title: str | None = None,
                 rows: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<out>.md``, ``<out>.csv`` and ``<out>.tex`` (and ``<out>_rows.csv`` when ``rows`` is given).

    ``rows`` is the model's input table (e.g. the paper's one row per attribute and condition)
    so a reader can refit or plot it.
    """
    out = Path(out)
    written = [write_text_atomic(out.with_name(out.name + ".md"), to_markdown(table, title=title)),
               write_text_atomic(out.with_name(out.name + ".csv"), table.to_csv(index=False)),
               write_text_atomic(out.with_name(out.name + ".tex"), to_latex(table))]
    if rows is not None:
        written.append(write_text_atomic(out.with_name(out.name + "_rows.csv"), rows.to_csv(index=False)))
    return written
