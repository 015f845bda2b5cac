"""Effect-size regressions on the tidy results table [W&R §6], and the ``effects`` CLI verb.

Input: the table ``biastransfer collect`` writes, one row per cell (``runner``, ``backbone``,
``base_kind``, ``spec_kind``, ``target``, ``level``, ``p``, ``n``, ``seed``, metrics such as
``fpr_gap_stereotype``, and optionally ``salience``, ``skew``, ``natural_level``). Models:

``paper``
    One row per (attribute, finetuning condition) at one size ``n`` (default 1024, else the
    largest present); conditions are the ``natural`` and ``skew`` cells. ``v`` = mean
    ``fpr_gap_stereotype`` over replicates (positive = stereotype-consistent), for the biased
    base (G) and each control base (c); ``Value = v_G / max_c v_c`` (see :func:`paper_value`
    for the original's clipping), ``Skew = |P(s | y=1) - P(s)|`` of the finetuning set (the
    ``skew`` column), ``Saliency`` the target's salience. The paper fits
    ``smf.mixedlm("Value ~ Saliency + Skew", groups=Attribute)``; OLS with errors
    cluster-robust by attribute is fitted beside it.
``difference`` / ``log-ratio``
    The same rows and predictors with the robust responses ``Difference = v_G - max_c v_c``
    and ``LogRatio = log(v_G / max_c v_c)`` (rows where both are positive only).
``general``
    Per cell: ``bias ~ base * (correlation_strength + salience + log2_n)`` with ``bias`` the
    metric, ``base`` the base kind (reference ``control``), OLS cluster-robust by target and a
    mixed model grouped by target. ``correlation_level`` is the table's ``stereotype_level``
    (P(g | y=1) of the finetuning set for the group g that signs ``fpr_gap_stereotype``, the
    target's natural direction) and ``correlation_strength = correlation_level - 0.5``:
    positive toward the stereotype, negative past balance, so a stereotype-signed gap is
    expected to grow with it (and to change sign at balance). Tables without
    ``stereotype_level`` (no direction recorded) fall back to ``level`` (``p`` for skew cells,
    ``natural_level`` for natural cells) and ``|correlation_level - 0.5|``. Predictors
    constant in the rows are left out (said in the note).
``moderation``
    Per cell: ``bias ~ base * correlation_strength + correlation_strength:salience`` (same
    estimators and derived columns as ``general``). Salience acts on bias through the
    correlation it lets a model exploit: at balance (strength 0) no salience should show, and
    the stereotype-signed gap turns negative past balance, so over a symmetric correlation grid
    ``general``'s additive salience term averages a positive and a negative effect. Here the
    salience effect is the interaction, the extra bias per unit of correlation strength per
    unit of salience; the paper's claim (bias grows with salience) is that it is positive.
``formula``
    Any statsmodels formula on the table (plus the derived ``base``, ``correlation_level``,
    ``correlation_strength``, ``log2_n``), OLS and/or mixed, optional ``groups``.

Probe and full-finetune results answer different questions (docs/science.md section 10): a table that
holds both must be narrowed with ``runner`` for every model but ``formula``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze.effects.fit import (
    COEFFICIENT_COLUMNS,
    EffectFit,
    coefficient_table,
    fit_model,
)
from extract.errors import UserError

log = logging.getLogger(__name__)

MODELS = ("paper", "difference", "log-ratio", "general", "moderation", "formula")
DEFAULT_N = 1024
DEFAULT_METRIC = "fpr_gap_stereotype"
PAPER_RESPONSES = {"paper": "Value", "difference": "Difference", "log-ratio": "LogRatio"}
PAPER_PREDICTORS = "Saliency + Skew"
_PRODUCERS = {"salience": "`biastransfer salience` (pass its table as `salience`)",
              "base_kind": "`biastransfer collect` (or pass `base_kinds`)"}
__all__ = ["COEFFICIENT_COLUMNS", "attach_salience", "filter_rows", "fit_general", "fit_moderation", "fit_paper",
           "paper_rows", "paper_value", "require_columns", "run_effects", "with_base_kind", "with_derived_columns",
           "without_flagged"]


# -- input -----------------------------------------------------------------------------------


def require_columns(table: pd.DataFrame, columns, *, purpose: str, what: str = "the table") -> None:
    """Raise a one-sentence :class:`UserError` for the first column ``table`` lacks.

    ``what`` names the table in the message (``"the table"``: the results table).
    """
    for column in columns:
        if column not in table.columns:
            producer = ("`biastransfer salience`" if what == "the salience table"
                        else _PRODUCERS.get(column, "`biastransfer collect`"))
            raise UserError(f"{what} has no {column!r} column, which {purpose} needs; it is written by {producer}.")


def without_flagged(table: pd.DataFrame, *, include_flagged: bool = False) -> tuple[pd.DataFrame, int]:
    """The rows the effect models and the report use: without the cells the diagnosis flagged
    (:data:`analyze.metrics.diagnosis.EXCLUDING_FLAGS`) unless ``include_flagged``; and how many left.

    A table without the diagnosis columns is returned whole (nothing can be checked).
    """
    from analyze.metrics.diagnosis import excluded_cells

    excluded = excluded_cells(table)
    if include_flagged or excluded is None or not excluded.any():
        return table, 0
    return table[~excluded], int(excluded.sum())


def attach_salience(table: pd.DataFrame, salience: pd.DataFrame) -> pd.DataFrame:
    """Join a salience table (``target``, ``salience``, [``sensitive``]) onto the results table.

    The join is on ``target`` (and ``sensitive`` when both tables have it); a ``salience``
    column already in ``table`` is replaced.
    """
    require_columns(table, ["target"], purpose="joining salience")
    require_columns(salience, ["target", "salience"], purpose="joining salience", what="the salience table")
    keys = ["target", "sensitive"] if "sensitive" in salience.columns and "sensitive" in table.columns else ["target"]
    per_key = salience.groupby(keys, as_index=False)["salience"].mean()
    return table.drop(columns=["salience"], errors="ignore").merge(per_key, on=keys, how="left", validate="many_to_one")


def with_base_kind(table: pd.DataFrame, base_kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """``table`` with a ``base_kind`` column; ``base_kinds`` ({backbone: kind}) fills or overrides it."""
    if base_kinds:
        require_columns(table, ["backbone"], purpose="mapping backbones to base kinds")
        mapped = table["backbone"].map(base_kinds)
        current = (table["base_kind"] if "base_kind" in table.columns
                   else pd.Series(np.nan, index=table.index, dtype=object))
        table = table.assign(base_kind=mapped.where(mapped.notna(), current))
    require_columns(table, ["base_kind"], purpose="telling biased from control bases")
    if table["base_kind"].isna().any():
        require_columns(table, ["backbone"], purpose="naming the rows without a base kind")
        missing = sorted(table.loc[table["base_kind"].isna(), "backbone"].astype(str).unique())
        raise UserError(f"backbone(s) {missing} have no base kind; pass a kind for each in `base_kinds`.")
    return table


def filter_rows(table: pd.DataFrame, query: str | None) -> pd.DataFrame:
    """Rows matching a pandas ``DataFrame.query`` expression (all rows when ``query`` is None)."""
    if not query:
        return table
    try:
        chosen = table.query(query, engine="python")
    except Exception as exc:  # pandas raises many types for a bad expression
        raise UserError(f"`query` {query!r} cannot be evaluated on the table ({type(exc).__name__}: {exc}); "
                        "use its column names, e.g. \"spec_kind == 'correlation'\".") from None
    if chosen.empty:
        raise UserError(f"no row matches `query` {query!r}; loosen it.")
    return chosen


def select_runner(table: pd.DataFrame, runner: str | None) -> pd.DataFrame:
    """Rows of one runner; a table mixing probes and finetunes needs ``runner``."""
    if runner is not None:
        require_columns(table, ["runner"], purpose="choosing a runner")
        chosen = table[table["runner"] == runner]
        if chosen.empty:
            raise UserError(f"no row has runner {runner!r}; the table has {sorted(table['runner'].unique())}.")
        return chosen
    if "runner" in table.columns and table["runner"].nunique() > 1:
        raise UserError(f"the table mixes runners {sorted(table['runner'].unique())}, which answer different "
                        "questions; choose one with `runner`.")
    return table


def with_derived_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``correlation_level``, ``correlation_strength``, ``log2_n`` and ``base`` (module docstring)."""
    if "stereotype_level" in table.columns and table["stereotype_level"].notna().any():
        level = table["stereotype_level"].astype(float)
        derived = {"correlation_level": level, "correlation_strength": level - 0.5}
    else:
        level = table["level"] if "level" in table.columns else pd.Series(np.nan, index=table.index)
        kind = table["spec_kind"] if "spec_kind" in table.columns else pd.Series("", index=table.index)
        if "p" in table.columns:
            level = level.where(level.notna() | (kind != "skew"), table["p"])
        if "natural_level" in table.columns:
            level = level.where(level.notna() | (kind != "natural"), table["natural_level"])
        derived = {"correlation_level": level.astype(float), "correlation_strength": (level.astype(float) - 0.5).abs()}
    if "n" in table.columns:
        n = pd.to_numeric(table["n"], errors="coerce").astype(float)
        derived["log2_n"] = np.log2(n.where(n > 0))
    if "base_kind" in table.columns:
        kinds = sorted(table["base_kind"].dropna().astype(str).unique())
        order = ["control"] + [k for k in kinds if k != "control"] if "control" in kinds else kinds
        derived["base"] = pd.Categorical(table["base_kind"], categories=order)
    return table.assign(**derived)


# -- the paper's rows ------------------------------------------------------------------------


def paper_value(v_biased, v_control, *, clip: bool = True) -> np.ndarray:
    """``Value = v_G / max_c v_c``, with the original's sign rule when ``clip``.

    The original (``analysis_files/regress.py``) sets Value to 0 when ``v_G < 0 < v_c`` and
    to 5 when ``v_G > 0 > v_c``; both negative gives a positive ratio, kept as there. A
    control maximum of exactly 0 gives NaN here (the original divides by zero).
    """
    v_biased, v_control = np.asarray(v_biased, dtype=float), np.asarray(v_control, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(v_control != 0, v_biased / np.where(v_control != 0, v_control, 1.0), np.nan)
    if clip:
        value = np.where((v_biased < 0) & (v_control > 0), 0.0, value)
        value = np.where((v_biased > 0) & (v_control < 0), 5.0, value)
    return value[()]


def _choose_n(table: pd.DataFrame, n: int | None) -> int:
    sizes = sorted(pd.to_numeric(table["n"], errors="coerce").dropna().unique())
    if not sizes:
        raise UserError("no natural or skew cell has a training size n; run the wr-regression grid.")
    if n is None:
        return int(DEFAULT_N if DEFAULT_N in sizes else sizes[-1])
    if n not in sizes:
        raise UserError(f"no natural or skew cell has n = {n}; choose one of {[int(s) for s in sizes]} with `n`.")
    return int(n)


def _condition(rows: pd.DataFrame) -> pd.Series:
    label = rows["spec_kind"].astype(str)
    if "p" in rows.columns:
        with_p = rows["p"].notna()
        label = label.where(~with_p, label + " p=" + rows["p"].map(lambda v: f"{v:g}"))
    return label


def _mean_per_base(cells: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    grouped = cells.groupby([*keys, "backbone", "base_kind"], sort=True)
    return grouped.agg(v=(metric, "mean"), k=(metric, "count"), Skew=("skew", "mean"),
                       Saliency=("salience", "mean")).reset_index()


def paper_rows(table: pd.DataFrame, *, n: int | None = None, metric: str = DEFAULT_METRIC,
               conditions=("natural", "skew"), clip: bool = True, biased: str = "biased",
               control: str = "control") -> pd.DataFrame:
    """One row per (attribute, finetuning condition): the paper's regression data.

    Parameters
    ----------
    table : DataFrame
        Results of one runner with ``base_kind`` and ``salience`` (see :func:`with_base_kind`,
        :func:`attach_salience`).
    n : int, optional
        Training size; default 1024 when present, else the largest.
    metric : str
        Signed bias per cell, positive = stereotype-consistent.
    conditions : sequence of str
        ``spec_kind`` values that make the conditions; skew cells are split by ``p``.
    clip : bool
        Apply the original's sign rule to Value (:func:`paper_value`).
    biased, control : str
        The ``base_kind`` of the biased base (exactly one per row) and of the controls.

    Returns
    -------
    DataFrame with ``Attribute, Condition, Saliency, Skew, v_biased, v_control_max,
    control_max_backbone, k_biased, Value, Difference, LogRatio, n`` (and ``dataset``,
    ``sensitive`` when present); LogRatio is NaN unless both means are positive.
    """
    require_columns(table, ["backbone", "spec_kind", "target", "n", metric, "skew", "salience"],
                    purpose="the paper's model")
    cells = table[table["spec_kind"].isin(conditions)]
    if cells.empty:
        raise UserError(f"no cell has spec_kind in {list(conditions)}; run the wr-regression grid.")
    chosen = _choose_n(cells, n)
    cells = cells[pd.to_numeric(cells["n"], errors="coerce") == chosen].assign(Condition=_condition)
    keys = [c for c in ("dataset", "sensitive") if c in cells.columns] + ["target", "Condition"]
    means = _mean_per_base(cells[cells["base_kind"].isin([biased, control])], keys, metric)
    rows = []
    for key, group in means.groupby(keys, sort=True):
        rows.append(_paper_row(dict(zip(keys, key, strict=True)), group, biased, control))
    rows = pd.DataFrame([r for r in rows if r is not None])
    if rows.empty:
        raise UserError(f"no attribute has both a {biased!r} and a {control!r} base at n = {chosen}; "
                        "check the base_kind column or pass `base_kinds`.")
    context = [c for c in ("dataset", "sensitive") if c in rows.columns and rows[c].nunique() > 1]
    rows.insert(0, "Attribute", rows[[*context, "target"]].astype(str).agg("/".join, axis=1))
    value = paper_value(rows["v_biased"], rows["v_control_max"], clip=clip)
    positive = (rows["v_biased"] > 0) & (rows["v_control_max"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(rows["v_biased"].where(positive) / rows["v_control_max"].where(positive))
    return rows.assign(Value=value, Difference=rows["v_biased"] - rows["v_control_max"], LogRatio=log_ratio,
                       n=chosen)


def _paper_row(key: dict, group: pd.DataFrame, biased: str, control: str) -> dict | None:
    g, c = group[group["base_kind"] == biased], group[group["base_kind"] == control]
    if len(g) > 1:
        raise UserError(f"{key} has {len(g)} biased bases {sorted(g['backbone'])}; keep one with `base_kinds` "
                        "(mark the others with another kind).")
    if g.empty or c.empty:
        return None
    best = c.loc[c["v"].idxmax()]
    return {**key, "Saliency": float(g["Saliency"].iloc[0]), "Skew": float(g["Skew"].iloc[0]),
            "v_biased": float(g["v"].iloc[0]), "v_control_max": float(best["v"]),
            "control_max_backbone": best["backbone"], "biased_backbone": g["backbone"].iloc[0],
            "k_biased": int(g["k"].iloc[0]), "n_controls": len(c)}


# -- models ----------------------------------------------------------------------------------


def fit_paper(rows: pd.DataFrame, *, model: str = "paper", estimators=("mixed", "ols")) -> list[EffectFit]:
    """Fit ``<response> ~ Saliency + Skew`` on :func:`paper_rows` output, grouped by Attribute."""
    response = PAPER_RESPONSES[model]
    usable = rows[np.isfinite(rows[response].to_numpy(dtype=float))]
    if len(usable) < len(rows):
        log.info("%s: left out %d of %d rows where %s is undefined", model, len(rows) - len(usable), len(rows),
                 response)
    formula = f"{response} ~ {PAPER_PREDICTORS}"
    return [fit_model(usable, formula, estimator=e, groups="Attribute", name=model) for e in estimators]


def fit_general(table: pd.DataFrame, *, metric: str = DEFAULT_METRIC, estimators=("ols", "mixed"),
                groups: str = "target") -> list[EffectFit]:
    """``metric ~ base * (correlation_strength + salience + log2_n)`` per cell (module docstring)."""
    require_columns(table, ["target", "n", metric, "salience"], purpose="the general model")
    data = with_derived_columns(table)
    predictors, dropped = [], []
    for name in ("correlation_strength", "salience", "log2_n"):
        (predictors if data[name].nunique() > 1 else dropped).append(name)
    if not predictors:
        raise UserError("correlation strength, salience and n are all constant in the table; the general model "
                        "has nothing to explain the bias with.")
    rhs = " + ".join(predictors)
    if data["base"].nunique() > 1:
        rhs = f"base * ({rhs})"
    fits = [fit_model(data, f"{metric} ~ {rhs}", estimator=e, groups=groups, name="general") for e in estimators]
    if dropped:
        for fit in fits:
            note = f"left out constant predictor(s) {', '.join(dropped)}"
            fit.table["note"] = [f"{n}; {note}" if n else note for n in fit.table["note"]]
    return fits


def fit_moderation(table: pd.DataFrame, *, metric: str = DEFAULT_METRIC, estimators=("ols", "mixed"),
                   groups: str = "target") -> list[EffectFit]:
    """``metric ~ base * correlation_strength + correlation_strength:salience`` (module docstring)."""
    require_columns(table, ["target", metric, "salience"], purpose="the moderation model")
    data = with_derived_columns(table)
    for name, what in (("correlation_strength", "correlation levels"), ("salience", "targets of different salience")):
        if data[name].nunique() < 2:
            raise UserError(f"the moderation model needs several {what}, and {name} is constant in these rows; "
                            "use the general model or run a grid with more of them.")
    base = "base * correlation_strength" if data["base"].nunique() > 1 else "correlation_strength"
    formula = f"{metric} ~ {base} + correlation_strength:salience"
    return [fit_model(data, formula, estimator=e, groups=groups, name="moderation") for e in estimators]


@dataclass(frozen=True)
class EffectsModel:
    """Which regression :func:`run_effects` fits.

    Parameters
    ----------
    name : {"paper", "difference", "log-ratio", "general", "moderation", "formula"}
        The model (:data:`MODELS`; module docstring).
    formula : str, optional
        ``"RESPONSE ~ TERMS"`` of the ``"formula"`` model (required there).
    estimators : tuple of {"ols", "mixed"}, optional
        Fits to run (defaults per model: paper ``("mixed", "ols")``, general and moderation
        ``("ols", "mixed")``, formula ``("mixed",)`` with ``groups`` else ``("ols",)``).
    groups : str, optional
        Grouping column of the mixed fits (general and moderation default: ``"target"``).
    """

    name: str
    formula: str | None = None
    estimators: tuple | None = None
    groups: str | None = None

    def __post_init__(self):
        if self.name not in MODELS:
            raise UserError(f"model {self.name!r} is unknown; use one of {list(MODELS)}.")
        if self.name == "formula" and not self.formula:
            raise UserError('`model=\'formula\'` needs `formula="RESPONSE ~ TERMS"`.')
        if isinstance(self.estimators, list):
            object.__setattr__(self, "estimators", tuple(self.estimators))


def run_effects(table: pd.DataFrame, *, model: str | EffectsModel, n: int | None = None, metric: str = DEFAULT_METRIC,
                clip: bool = True, runner: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Fit one named model; returns (coefficient table, the model's input rows or None).

    ``model`` is a name of :data:`MODELS` or an :class:`EffectsModel` (a formula, estimators,
    a grouping column); ``n``, ``metric`` and ``clip`` choose the paper models' rows and
    ``runner`` the runner whose cells are fitted.
    """
    spec = model if isinstance(model, EffectsModel) else EffectsModel(name=model)
    model, formula, estimators, groups = spec.name, spec.formula, spec.estimators, spec.groups
    if table.empty:
        raise UserError("the results table has no rows; run a sweep and collect it first.")
    if model == "formula":
        data = with_derived_columns(table if runner is None else select_runner(table, runner))
        fits = [fit_model(data, formula, estimator=e, groups=groups, name="formula")
                for e in (estimators or (("mixed",) if groups else ("ols",)))]
        return coefficient_table(fits), None
    table = select_runner(table, runner)
    if model in ("general", "moderation"):
        fit = fit_general if model == "general" else fit_moderation
        return coefficient_table(fit(table, metric=metric, estimators=estimators or ("ols", "mixed"),
                                     groups=groups or "target")), None
    rows = paper_rows(table, n=n, metric=metric, clip=clip)
    return coefficient_table(fit_paper(rows, model=model, estimators=estimators or ("mixed", "ols"))), rows


# -- CLI -------------------------------------------------------------------------------------


