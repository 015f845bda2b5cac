"""Curation planner (``biastransfer plan``): how far to move the finetuning correlation.

From a correlation sweep (the collected table, ``spec_kind == "correlation"``), for each
runner, base, target and training size ``n``:

1. the **natural level** ``c0`` = P(s=1 | y=1) of the dataset's train split (the
   ``natural_level`` column);
2. the **stereotype-direction gap** ``g(c)``: the mean over seeds of ``metric`` (default
   ``fpr_gap`` = FPR(s=1) - FPR(s=0)) signed so that positive means more false positives
   for the group over-represented among the *natural* positives (``+`` when ``c0 > 0.5``,
   ``-`` when ``c0 < 0.5``; the probe runner's ``fpr_gap_stereotype``). ``g`` is linear
   between the swept levels; ``g0 = g(c0)`` is interpolated, with its replicate t interval
   ``g0 +- t(0.975, df) se`` (se from the seeds' sd / sqrt(k) of the two levels around ``c0``,
   weighted as the interpolation; Welch-Satterthwaite df, k - 1 at a swept level; ``method``
   ``"normal"`` for 1.96). **Only a gap whose interval excludes 0 is planned**: a gap the data
   cannot tell from none has nothing to halve, and the row's ``status`` says so;
3. the **halving level** ``c*``: the first level reached when moving from ``c0`` toward
   0.5 (and beyond, if needed) where ``g(c*) <= g0 / 2``; the **move** ``|c* - c0|``;
4. the **AUC cost** ``AUC(c*) - AUC(c0)`` (negative = AUC lost), AUC also interpolated.

Intervals for ``c*``, the move and the cost come from a bootstrap over seeds (runs
resampled with replacement within each level, ``n_boot`` times, percentile interval; a
run's gap and AUC stay paired). Runs whose metric or AUC is NaN are left out.
A resample whose gap never halves within the swept levels counts as an infinite move, so
the upper bound is missing (NaN) when more than ``(1 - confidence) / 2`` of them do not;
``reached_share`` says how many did. ``status`` explains rows without an answer.

Cells the diagnosis flagged degenerate, at a grid edge or unconverged are left out
(``include_flagged`` keeps them; ``excluded`` counts them per row), as in the report's findings
(``docs/science.md`` sections 8 and 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze.metrics.diagnosis import excluded_cells
from analyze.metrics.intervals import DEFAULT_METHOD, METHODS, critical_value
from extract.errors import UserError
from extract.parsing import FromMapping

RESIGNED_METRICS = ("fpr_gap", "tpr_gap")
GROUP_KEYS = ("runner", "backbone", "base_name", "base_kind", "dataset", "target", "sensitive", "n")


@dataclass(frozen=True)
class IntervalConfig(FromMapping):
    """How the plan's intervals are computed.

    Parameters
    ----------
    n_boot : int, default=2000
        Bootstrap resamples over seeds (0: point estimates only).
    confidence : float, default=0.95
        Coverage of the intervals.
    random_state : int, default=0
        Seeds the bootstrap.
    method : {"t", "normal"}, default="t"
        The natural gap's replicate interval.
    """

    n_boot: int = 2000
    confidence: float = 0.95
    random_state: int = 0
    method: str = DEFAULT_METHOD

    def __post_init__(self):
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, (int, np.integer)) or self.n_boot < 0:
            raise UserError(f"`n_boot` must be an integer >= 0, got {self.n_boot!r}.")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) \
                or not 0 < self.confidence < 1:
            raise UserError(f"`confidence` must be between 0 and 1, got {self.confidence!r}.")
        if self.method not in METHODS:
            raise UserError(f"unknown interval method {self.method!r}; set `method` to one of {', '.join(METHODS)}.")


def plan_curation(table: pd.DataFrame, *, metric: str = "fpr_gap", runner: str | None = None, n: int | None = None,
                  intervals: IntervalConfig = IntervalConfig(), include_flagged: bool = False) -> pd.DataFrame:
    """The curation plan, one row per (runner, base, target, n) of the correlation cells.

    Parameters
    ----------
    table : DataFrame
        The collected table (``biastransfer collect``); needs ``spec_kind``, ``level``,
        ``natural_level``, ``auc`` and ``metric``.
    metric : {"fpr_gap", "tpr_gap"}
        Raw group gap ``rate(s=1) - rate(s=0)``, re-signed to the stereotype direction.
    runner, n : optional
        Keep only this runner / training size.
    intervals : IntervalConfig, default=IntervalConfig()
        Bootstrap resamples ``n_boot`` (0: point estimates only), ``confidence``, the
        bootstrap's ``random_state`` and the natural gap's replicate interval ``method``.
    include_flagged : bool
        Keep the cells the diagnosis flagged (module docstring).

    Returns
    -------
    DataFrame (columns in the module docstring's order, see :data:`PLAN_COLUMNS`).
    """
    if metric not in RESIGNED_METRICS:
        raise UserError(f"`metric` must be one of {RESIGNED_METRICS} (a raw s=1 minus s=0 gap), got {metric!r}.")
    for column in ("spec_kind", "level", "natural_level", "auc", metric, "target"):
        if column not in table.columns:
            raise UserError(f"the table has no {column!r} column; pass the table `biastransfer collect` wrote.")
    cells = table[table["spec_kind"] == "correlation"]
    if runner is not None:
        cells = cells[cells["runner"] == runner]
    if n is not None:
        cells = cells[cells["n"] == n]
    if cells.empty:
        raise UserError("the table has no correlation cells (for that runner / n); run a correlation grid such as "
                        "wr-correlation or demo.")
    keys = [k for k in GROUP_KEYS if k in cells.columns]
    cells = cells.reset_index(drop=True)  # a concatenated table may repeat index labels
    excluded = excluded_cells(cells)
    if excluded is None or include_flagged:
        excluded = pd.Series(False, index=cells.index)
    rng = np.random.default_rng(intervals.random_state)
    rows = []
    for key, group in cells.groupby(keys, sort=True, dropna=False):
        left_out = excluded.loc[group.index].to_numpy()
        plan = plan_one(group[~left_out], metric=metric, n_boot=intervals.n_boot, confidence=intervals.confidence,
                        rng=rng, method=intervals.method, natural=float(group["natural_level"].median()))
        rows.append({**dict(zip(keys, key)), **plan, "excluded": int(left_out.sum())})
    return pd.DataFrame(rows, columns=keys + PLAN_COLUMNS)


PLAN_COLUMNS = ["natural_level", "direction", "levels", "seeds", "gap_natural", "gap_natural_low", "gap_natural_high",
                "halving_level", "halving_level_low", "halving_level_high", "move", "move_low", "move_high",
                "auc_natural", "auc_at_halving", "auc_cost", "auc_cost_low", "auc_cost_high", "reached_share",
                "excluded", "status"]


def plan_one(group: pd.DataFrame, *, metric: str, n_boot: int, confidence: float, rng, method: str = DEFAULT_METHOD,
             natural: float | None = None) -> dict:
    """The plan of one (runner, base, target, n) group of correlation cells (``natural``: its natural level)."""
    c0 = float(group["natural_level"].median()) if natural is None else natural
    usable = group[np.isfinite(group[metric].to_numpy(float)) & np.isfinite(group["auc"].to_numpy(float))]
    by_level = {float(lv): rows for lv, rows in usable.groupby("level", sort=True)}
    if not by_level:
        return {**dict.fromkeys(PLAN_COLUMNS, np.nan), "natural_level": c0, "status": f"no finite {metric} values"}
    levels = np.array(sorted(by_level))
    out = dict.fromkeys(PLAN_COLUMNS, np.nan)
    out.update(natural_level=c0, levels=len(levels), seeds=min(len(r) for r in by_level.values()), status="ok")
    if not np.isfinite(c0):
        return {**out, "status": "natural level unknown (natural_level is missing)"}
    if c0 < levels[0] or c0 > levels[-1]:
        return {**out, "status": f"natural level {c0:.3g} lies outside the swept levels"}
    sign = 1.0 if c0 > 0.5 else -1.0 if c0 < 0.5 else 0.0
    if sign == 0.0:
        return {**out, "status": "the natural level is 0.5 (balanced): no stereotype direction"}
    gaps = [sign * by_level[lv][metric].to_numpy(float) for lv in levels]
    aucs = [by_level[lv]["auc"].to_numpy(float) for lv in levels]
    path = _path(levels, c0, toward=-sign)
    if len(path["x"]) == 1:
        return {**out, "status": "no swept level lies beyond the natural level toward 0.5"}
    point = _halving(path, np.array([[g.mean() for g in gaps]]), np.array([[a.mean() for a in aucs]]))
    low, high = _interval(levels, c0, gaps, confidence=confidence, method=method)
    out.update(direction="up" if sign < 0 else "down", gap_natural=point["gap0"][0], gap_natural_low=low,
               gap_natural_high=high, auc_natural=point["auc0"][0])
    if not point["gap0"][0] > 0:
        return {**out, "status": "no stereotype-direction gap at the natural level"}
    if not (np.isfinite(low) and np.isfinite(high)):
        return {**out, "status": "the natural gap has no interval (fewer than 2 seeds at a level around it), so "
                                 "nothing is planned"}
    if low <= 0:
        return {**out, "status": f"the natural gap's interval [{low:.3f}, {high:.3f}] includes 0, so there is no "
                                 "gap to halve"}
    if point["reached"][0]:
        out.update(halving_level=point["level"][0], move=abs(point["level"][0] - c0), auc_at_halving=point["auc"][0],
                   auc_cost=point["auc"][0] - point["auc0"][0])
    else:
        out["status"] = "the gap does not halve within the swept levels"
    if n_boot:
        out.update(_bootstrap(path, gaps, aucs, c0, n_boot=n_boot, confidence=confidence, rng=rng))
    return out


def _path(levels: np.ndarray, c0: float, *, toward: float):
    """Positions from ``c0`` (index 0) through the swept levels beyond it in direction ``toward``,
    with the interpolation weights of ``c0`` between its two neighbouring levels."""
    beyond = levels[levels > c0] if toward > 0 else levels[levels < c0][::-1]
    upper = int(np.searchsorted(levels, c0, side="left"))  # first level >= c0 (c0 lies within the levels)
    lower = upper if levels[upper] == c0 else upper - 1
    weight = 0.0 if upper == lower else (c0 - levels[lower]) / (levels[upper] - levels[lower])
    index = np.searchsorted(levels, beyond)
    return {"x": np.concatenate([[c0], beyond]), "index": index, "lower": lower, "upper": upper, "w": weight}


def _at_c0(path, means: np.ndarray) -> np.ndarray:
    return (1 - path["w"]) * means[:, path["lower"]] + path["w"] * means[:, path["upper"]]


def _halving(path, gap_means: np.ndarray, auc_means: np.ndarray) -> dict:
    """Halving level and AUC there for each row of level means (rows: resamples)."""
    gap0, auc0 = _at_c0(path, gap_means), _at_c0(path, auc_means)
    values = np.column_stack([gap0, gap_means[:, path["index"]]])
    aucs = np.column_stack([auc0, auc_means[:, path["index"]]])
    half = gap0 / 2
    below = values[:, 1:] <= half[:, None]
    reached = below.any(axis=1) & (gap0 > 0)
    j = np.where(reached, below.argmax(axis=1) + 1, 1)
    rows = np.arange(len(values))
    before, after = values[rows, j - 1], values[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip(np.where(before > after, (before - half) / (before - after), 0.0), 0.0, 1.0)
    x = path["x"]
    level = x[j - 1] + frac * (x[j] - x[j - 1])
    auc = aucs[rows, j - 1] + frac * (aucs[rows, j] - aucs[rows, j - 1])
    nan = np.full(len(values), np.nan)
    return {"gap0": gap0, "auc0": auc0, "reached": reached, "level": np.where(reached, level, nan),
            "auc": np.where(reached, auc, nan)}


def _interval(levels: np.ndarray, c0: float, gaps: list[np.ndarray], *, confidence: float = 0.95,
              method: str = DEFAULT_METHOD) -> tuple[float, float]:
    """Replicate interval of the interpolated gap at ``c0``: mean +- t(df) se (module docstring)."""
    path = _path(levels, c0, toward=1.0)
    w, lo, hi = path["w"], path["lower"], path["upper"]
    parts = [(1 - w, gaps[lo])] + ([(w, gaps[hi])] if hi != lo else [])
    parts = [(weight, g) for weight, g in parts if weight > 0] or parts
    mean = sum(weight * g.mean() for weight, g in parts)
    terms = [weight ** 2 * (g.var(ddof=1) / len(g) if len(g) > 1 else np.nan) for weight, g in parts]
    var = sum(terms)
    if method == "t":
        dof = [len(g) - 1 for _, g in parts]
        denominator = sum(t ** 2 / d for t, d in zip(terms, dof) if d > 0)
        df = var ** 2 / denominator if denominator > 0 else (min(dof) if min(dof) > 0 else np.nan)
        if var == 0:
            df = min(dof) if min(dof) > 0 else np.nan
        c = critical_value(confidence, df=df, method="t")
    else:
        c = critical_value(confidence)
    return mean - c * np.sqrt(var), mean + c * np.sqrt(var)


def _bootstrap(path, gaps, aucs, c0, *, n_boot: int, confidence: float, rng) -> dict:
    """Percentile intervals of the halving level, move and AUC cost (seeds resampled per level)."""
    # the same seeds are drawn for the gap and the AUC of a level (they come from the same runs)
    picks = [rng.integers(0, len(g), size=(n_boot, len(g))) for g in gaps]
    gap_means = np.column_stack([g[i].mean(axis=1) for g, i in zip(gaps, picks)])
    auc_means = np.column_stack([a[i].mean(axis=1) for a, i in zip(aucs, picks)])
    boot = _halving(path, gap_means, auc_means)
    tail = (1 - confidence) / 2
    move = np.where(boot["reached"], np.abs(boot["level"] - c0), np.inf)
    move_low, move_high = np.quantile(move, [tail, 1 - tail], method="inverted_cdf")
    step = 1.0 if path["x"][-1] >= c0 else -1.0
    cost = (boot["auc"] - boot["auc0"])[boot["reached"]]
    cost_low, cost_high = np.quantile(cost, [tail, 1 - tail]) if len(cost) else (np.nan, np.nan)
    finite = lambda v: float(v) if np.isfinite(v) else np.nan  # noqa: E731
    return {"move_low": finite(move_low), "move_high": finite(move_high),
            "halving_level_low": finite(c0 + step * move_low) if step > 0 else finite(c0 + step * move_high),
            "halving_level_high": finite(c0 + step * move_high) if step > 0 else finite(c0 + step * move_low),
            "auc_cost_low": float(cost_low), "auc_cost_high": float(cost_high),
            "reached_share": float(boot["reached"].mean())}


# -- output --------------------------------------------------------------------------------


def _fmt(value, low=None, high=None) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    text = f"{value:.3f}"
    if low is not None:
        show = lambda v: f"{v:.3f}" if v is not None and np.isfinite(v) else "?"  # noqa: E731
        text += f" [{show(low)}, {show(high)}]"
    return text


def plan_markdown(plan: pd.DataFrame, *, metric: str = "fpr_gap") -> str:
    """The plan as a Markdown section (one table row per plan row)."""
    lines = ["## Curation plan", "",
             f"Smallest move of the finetuning correlation level from the natural level toward balance that halves "
             f"the stereotype-direction {metric.replace('_', ' ')} (95% intervals: replicate t interval for the gap, "
             "percentile bootstrap over seeds for the rest; AUC cost = AUC at the new level minus AUC at the natural level; planned "
             "only where the natural gap's interval excludes 0 and the natural level lies inside the swept levels; the note "
             "gives each other row's own reason; flagged cells left out).", "",
             "| runner | base | target | n | natural level | gap at natural | halving level | move | AUC cost | note |",
             "|---|---|---|---:|---:|---|---|---|---|---|"]
    for _, r in plan.iterrows():
        base = r.get("base_name") if isinstance(r.get("base_name"), str) else r.get("backbone")
        kind = f" ({r['base_kind']})" if isinstance(r.get("base_kind"), str) else ""
        n = "" if pd.isna(r.get("n")) else int(r["n"])
        note = "" if r["status"] == "ok" else r["status"]
        if r.get("excluded", 0):
            note = "; ".join(filter(None, [note, f"{int(r['excluded'])} flagged cell(s) left out"]))
        lines.append(f"| {r.get('runner', '')} | {base}{kind} | {r['target']} | {n} | {_fmt(r['natural_level'])} | "
                     f"{_fmt(r['gap_natural'], r['gap_natural_low'], r['gap_natural_high'])} | "
                     f"{_fmt(r['halving_level'], r['halving_level_low'], r['halving_level_high'])} | "
                     f"{_fmt(r['move'], r['move_low'], r['move_high'])} | "
                     f"{_fmt(r['auc_cost'], r['auc_cost_low'], r['auc_cost_high'])} | {note} |")
    return "\n".join(lines) + "\n"


__all__ = ["PLAN_COLUMNS", "plan_curation", "plan_markdown"]
