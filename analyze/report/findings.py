"""Plain-language findings, with numbers and 95% intervals, computed from a collected table.

Rules (``docs/science.md`` sections 7 to 9):

- **Intervals.** Every number is a mean over replicates (seeds) with the t interval
  ``mean ± t(0.975, k-1) · sd / sqrt(k)`` (``method="normal"`` for 1.96;
  :func:`analyze.metrics.intervals.replicate_summary`). When a table holds several targets,
  each seed's value is first averaged over the targets (the same targets for every base), so
  that k counts seeds, not seeds x targets. A difference between two bases (or runners) is
  **paired by seed** when, for every seed, both sides were fitted on the same rows (equal
  ``rows_digest`` per target: same spec, seed and row indices), giving the interval of the
  per-seed differences. When the diagnosis left out some cells on one side only, the
  difference is paired on the (target, seed) cells both sides kept with the same rows (each
  seed's difference averaged over its common targets; at least 2 seeds), and the interval
  says so; otherwise it gets Welch's unpaired interval. Each sentence names the
  method of its intervals, says whether a difference's interval includes zero, and claims no
  difference whose interval does.
- **Clean cells.** :func:`clean_cells` leaves out the cells the diagnosis flagged
  ``degenerate``, ``c_at_edge``, ``lr_at_edge``, ``epochs_at_edge`` or ``not_converged``
  (``include_flagged`` keeps them) and says how many and why. ``weak_task`` cells stay (on a
  hard task they would be all of them); every finding whose runs have a mean test AUC below
  the floor says "the model did not learn the target (AUC x)". No comparison is stated from
  fewer than :data:`MIN_CLEAN_REPLICATES` clean replicates per side.
- **Comparisons.** The biased base is compared with every control and with the scratch and
  ImageNet bases, and every comparison states both bases' AUCs (on the same cells) beside the
  gaps. **Competence** (:func:`competence_reading`): a causal sentence (when the biased base
  does not exceed scratch: "the bias comes from the cue being readable from any features, not
  from pretraining") is printed only when both bases reach the causal floor
  (:data:`CAUSAL_FLOOR`, raised to the runner's competence floor at that n,
  :data:`analyze.metrics.diagnosis.COMPETENCE_FLOORS`) and their AUCs differ by at most
  :data:`COMPETENCE_GAP`. When they differ by more, the row says that the weaker model's larger
  gap may be a competence effect and offers the comparison at matched AUC
  (:func:`matched_auc_comparison`: the stronger base at a smaller n whose AUC is within
  :data:`COMPETENCE_GAP` of the weaker one's), or says that no such cells exist.
- **Headline setting** (:func:`headline_size`): the natural level and the strongest stereotype
  level, at the training size where every target is feasible and the cells are not at a
  ceiling (every base's mean gap within :data:`CEILING_MARGIN` of the largest possible, 1, or
  every interval of zero width); among those, the size nearest 1024 (the larger on a tie).
  ``n`` and ``level`` override it; a per-n table (:func:`per_size_table`) follows.

Sign convention: the bias metric (default ``fpr_gap_stereotype``) is positive when the model's
false positives fall more on the group over-represented among the positives of the dataset's
training split, the target's natural direction (stereotype-consistent; one sign across a
correlation sweep, for probes and finetunes alike). Targets differ in which group they are naturally associated with,
so the pooled summaries read the finetuning correlation as the table's ``stereotype_level``,
``P(stereotypical group | y=1)`` (1 = every positive in the group the target is naturally
associated with, 0.5 = balance, 0 = the counter-stereotypical extreme), and
:func:`correlation_cells` puts it in the ``level`` column they group by. A table without it
(no direction recorded) keeps ``level = P(s=1 | y=1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analyze.metrics.diagnosis import COMPETENCE_FLOORS, DEFAULT_AUC_FLOOR, EXCLUDING_FLAGS, FLAGS
from analyze.effects.format import format_number, format_p
from analyze.effects.models import DEFAULT_N, without_flagged
from analyze.metrics.intervals import (
    DEFAULT_METHOD,
    ConfidenceInterval,
    METHODS,
    difference_ci,
    difference_from_summaries,
    interval_label,
    replicate_ci,
    replicate_summary,
    welch_df,
)
from extract.errors import UserError

BALANCE = 0.5
MIN_CLEAN_REPLICATES = 3
CEILING_MARGIN = 0.05
MAX_GAP = 1.0  # the largest possible FPR gap
COMPARED_KINDS = ("control", "scratch", "imagenet")
CAUSAL_FLOOR = 0.70  # the AUC both bases of a comparison must reach before a cause is stated (issue 26)
COMPETENCE_GAP = 0.05  # AUC difference between two compared bases above which a gap may be a competence effect


@dataclass(frozen=True)
class FindingOptions:
    """How findings are computed and stated (module docstring).

    Parameters
    ----------
    method : {"t", "normal"}
        Replicate intervals: Student's t with k - 1 df, or the normal 1.96.
    auc_floor : float
        Findings whose runs have a mean test AUC below it are marked.
    include_flagged : bool
        Keep the cells the diagnosis flagged (default: leave them out).
    n : int, optional
        Training size of the headline findings (default: :func:`headline_size`).
    level : float, optional
        Stereotype level of the headline correlation findings (default: the strongest run).
    runners : tuple of str, optional
        The runners the report keeps (``probe``, ``finetune``; default all in the table).
    causal_floor : float
        No causal sentence is printed from a comparison with a base whose mean AUC is below it
        (raised to the runner's competence floor at that n; module docstring).
    """

    method: str = DEFAULT_METHOD
    auc_floor: float = DEFAULT_AUC_FLOOR
    include_flagged: bool = False
    n: int | None = None
    level: float | None = None
    runners: tuple[str, ...] | None = None
    causal_floor: float = CAUSAL_FLOOR

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown interval method {self.method!r}; choose one of {', '.join(METHODS)}.")
        floor = self.causal_floor
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.5 <= float(floor) < 1.0:
            raise UserError(f"`causal_floor` must be a number in [0.5, 1), got {floor!r}; the default is "
                            f"{CAUSAL_FLOOR:g}.")


DEFAULT_OPTIONS = FindingOptions()


def fmt(value: float) -> str:
    """A bias, AUC or difference: three decimals (``nan`` spelled out)."""
    return "nan" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


def with_interval(mean: float, low: float, high: float, *, k=None) -> str:
    """``mean [low, high]``; without finite bounds, says why (``k`` replicates, when given)."""
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        if k is not None and math.isfinite(float(k)) and int(k) < 2:
            return f"{fmt(mean)} (no interval: {int(k)} replicate{'s' * (int(k) != 1)})"
        return f"{fmt(mean)} (no interval)"
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def zero_verdict(low: float, high: float) -> str:
    """Whether an interval excludes zero, in words."""
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return "without an interval, so no claim is made"
    return "its interval includes zero" if low <= 0.0 <= high else "its interval excludes zero"


# -- cells ---------------------------------------------------------------------------------


def clean_cells(rows: pd.DataFrame, *, include_flagged: bool = False) -> tuple[pd.DataFrame, str | None]:
    """The rows findings use and a sentence on what was left out (module docstring).

    Returns
    -------
    (rows, note)
        ``note`` is None when nothing was flagged.
    """
    columns = [f"flag_{name}" for name in FLAGS]
    if not all(c in rows.columns for c in columns):
        return rows, ("The table has no diagnosis columns (collected before the diagnosis existed), so no cell "
                      "could be checked; collect it again to leave out degenerate and grid-edge cells.")
    flags = rows[columns].fillna(False).astype(bool)
    flags.columns = list(FLAGS)
    excluding = flags[list(EXCLUDING_FLAGS)].any(axis=1)
    counts = {name: int(flags.loc[excluding, name].sum()) for name in EXCLUDING_FLAGS if flags.loc[excluding, name].any()}
    weak = int(flags["weak_task"].sum())
    weak_text = (f" {weak} cell{'s' * (weak != 1)} below the AUC floor (weak_task) stay in, and their findings say "
                 "so." if weak else "")
    if not excluding.any():
        return rows, (f"No cell was flagged degenerate, at a grid edge or unconverged.{weak_text}".strip()
                      if weak else None)
    why = ", ".join(f"{name} {count}" for name, count in counts.items())
    kept, _ = without_flagged(rows, include_flagged=include_flagged)  # the exclusion `effects` applies
    if include_flagged:
        return kept, (f"{int(excluding.sum())} of {len(rows)} cells are flagged by the diagnosis ({why}; a cell can "
                      f"carry several flags) and are kept because `include_flagged` was given.{weak_text}")
    return kept, (f"Left out {int(excluding.sum())} of {len(rows)} cells flagged by the diagnosis ({why}; "
                              f"a cell can carry several flags); `include_flagged` keeps them.{weak_text}")


def correlation_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells of the correlation grid (a ``level`` set; ``spec_kind`` correlation when present).

    ``level`` holds the stereotype level (module docstring) when every chosen cell has one,
    and ``natural_level`` then the natural set's share on the same axis, ``max(q, 1 - q)``; the
    original ``P(s=1 | y=1)`` values are kept in ``level_s1`` and ``natural_level_s1``.
    """
    if "level" not in rows.columns:
        return rows.iloc[0:0]
    chosen = rows[rows["level"].notna()]
    if "spec_kind" in chosen.columns:
        chosen = chosen[chosen["spec_kind"] == "correlation"]
    if "stereotype_level" in chosen.columns and len(chosen) and chosen["stereotype_level"].notna().all():
        chosen = chosen.assign(level_s1=chosen["level"], level=chosen["stereotype_level"].round(6))
        if "natural_level" in chosen.columns:
            natural = chosen["natural_level"]
            chosen = chosen.assign(natural_level_s1=natural, natural_level=np.maximum(natural, 1.0 - natural))
    return chosen


def strongest_and_balanced(levels) -> tuple[float, float]:
    """The level farthest from balance (the higher one on a tie) and the one nearest to it."""
    levels = sorted(float(v) for v in levels)
    return (max(levels, key=lambda v: (abs(v - BALANCE), v)), min(levels, key=lambda v: (abs(v - BALANCE), v)))


def level_name(cells: pd.DataFrame) -> str:
    """How the ``level`` column of :func:`correlation_cells` reads in a sentence."""
    return ("stereotype-consistent correlation level P(stereotypical group | y=1)" if "level_s1" in cells.columns
            else "correlation level")


# -- summaries and differences ----------------------------------------------------------------


def pooled_summary(rows: pd.DataFrame, *, by: list[str], value: str, method: str = DEFAULT_METHOD) -> pd.DataFrame:
    """Per ``by`` group: each seed's mean over targets, then the replicate interval over seeds.

    Returns
    -------
    DataFrame with ``by`` and ``mean, sd, k, ci_low, ci_high, n_targets`` (k = seeds), plus
    ``per_seed`` ({seed: value}), ``rows_key`` ({seed: the sorted (target, rows_digest)
    pairs}, or None without digests) and ``per_cell`` ({(seed, target): (value, rows_digest)},
    each cell's mean) for :func:`difference`'s pairing.
    """
    for column in (*by, "seed", value):
        if column not in rows.columns:
            raise UserError(f"the table has no {column!r} column, which the report's summaries need; "
                            "pass the table `biastransfer collect` wrote.")
    rows = rows[np.isfinite(pd.to_numeric(rows[value], errors="coerce"))]
    targets = rows["target"] if "target" in rows.columns else pd.Series("all", index=rows.index)
    digests = (rows["rows_digest"].astype(object).where(rows["rows_digest"].notna(), None)
               if "rows_digest" in rows.columns else pd.Series(None, index=rows.index, dtype=object))
    work = rows.assign(_target=targets.astype(str), _digest=digests)
    grouped = work.groupby([*by, "seed"], sort=True, dropna=False)
    per_seed = grouped.agg(value=(value, "mean"), n_targets=("_target", "nunique")).reset_index()
    per_seed["rows_key"] = [None if g["_digest"].isna().any() else tuple(sorted(zip(g["_target"], g["_digest"].astype(str))))
                            for _, g in grouped]
    summary = replicate_summary(per_seed, by, "value", method=method)
    groups = [g for _, g in per_seed.groupby(by, sort=True, dropna=False)]
    cells = {key: {(seed, target): (float(g[value].mean()), None if g["_digest"].isna().any() or g["_digest"].nunique() != 1
                                    else str(g["_digest"].iloc[0]))
                   for (seed, target), g in part.groupby(["seed", "_target"], sort=True)}
             for key, part in work.groupby(by, sort=True, dropna=False)}
    return summary.assign(n_targets=[int(g["n_targets"].max()) for g in groups],
                          per_seed=[dict(zip(g["seed"], g["value"])) for g in groups],
                          rows_key=[dict(zip(g["seed"], g["rows_key"])) for g in groups],
                          per_cell=list(cells.values()))


def is_paired(a: pd.Series, b: pd.Series) -> bool:
    """Whether two summaries share every seed with the same rows (equal ``rows_key`` per seed)."""
    keys_a, keys_b = a.get("rows_key"), b.get("rows_key")
    if not isinstance(keys_a, dict) or not isinstance(keys_b, dict) or set(keys_a) != set(keys_b) or len(keys_a) < 2:
        return False
    return all(keys_a[s] is not None and keys_a[s] == keys_b[s] for s in keys_a)


def common_cell_differences(a: pd.Series, b: pd.Series) -> dict:
    """{seed: [``a - b`` per target]} on the (seed, target) cells both summaries hold with the
    same ``rows_digest``; empty without ``per_cell`` or digests."""
    cells_a, cells_b = a.get("per_cell"), b.get("per_cell")
    if not isinstance(cells_a, dict) or not isinstance(cells_b, dict):
        return {}
    by_seed: dict = {}
    for key in sorted(set(cells_a) & set(cells_b)):
        (va, da), (vb, db) = cells_a[key], cells_b[key]
        if da is not None and da == db and math.isfinite(va) and math.isfinite(vb):
            by_seed.setdefault(key[0], []).append(va - vb)
    return by_seed


def difference_interval(a: pd.Series, b: pd.Series, *, method: str = DEFAULT_METHOD):
    """``a.mean - b.mean`` as a :class:`~analyze.metrics.intervals.ConfidenceInterval` (paired or Welch).

    Paired by seed when both sides hold the same rows for every seed; else paired on the cells
    both kept (:func:`common_cell_differences`, at least 2 seeds); else Welch's interval.
    """
    if is_paired(a, b):
        seeds = sorted(a["per_seed"])
        return difference_ci([a["per_seed"][s] for s in seeds], [b["per_seed"][s] for s in seeds], paired=True,
                             method=method)
    common = common_cell_differences(a, b)
    if len(common) >= 2:
        per_seed = [float(np.mean(d)) for d in common.values()]
        ci = difference_ci(per_seed, [0.0] * len(per_seed), paired=True, method=method)
        n_cells = sum(len(d) for d in common.values())
        return ConfidenceInterval(ci.estimate, ci.low, ci.high,
                                  f"{ci.method}, on the {n_cells} (target, seed) cells both sides kept")
    d, low, high = difference_from_summaries(a["mean"], a["sd"], a["k"], b["mean"], b["sd"], b["k"], method=method)
    df = welch_df(a["sd"], a["k"], b["sd"], b["k"]) if a["k"] >= 2 and b["k"] >= 2 else None
    return ConfidenceInterval(d, low, high, interval_label(method, paired=False, df=df))


def difference(a: pd.Series, b: pd.Series, *, method: str = DEFAULT_METHOD) -> tuple[float, float, float]:
    """``a.mean - b.mean`` with its interval (paired by seed or Welch, module docstring); NaN bounds when k < 2."""
    ci = difference_interval(a, b, method=method)
    return float(ci.estimate), float(ci.low), float(ci.high)


def _interval(row: pd.Series) -> str:
    return with_interval(row["mean"], row["ci_low"], row["ci_high"], k=row.get("k"))


def _method_words(summary: pd.DataFrame, method: str) -> str:
    seeds = int(summary["k"].max()) if len(summary) else 0
    return f"95% {'t' if method == 't' else 'normal'} intervals over {seeds} seeds"


def _context(summary: pd.DataFrame, n: int | None, method: str = DEFAULT_METHOD) -> str:
    targets = int(summary["n_targets"].max())
    where = f"n = {n}, " if n is not None else ""
    return f"{where}mean over {targets} target{'s' * (targets != 1)}, {_method_words(summary, method)}"


# -- the headline setting ------------------------------------------------------------------------


def choose_size(rows: pd.DataFrame) -> int | None:
    """The training size used when no rule applies: 1024 when present, else the largest."""
    sizes = sorted(pd.to_numeric(rows["n"], errors="coerce").dropna().unique()) if "n" in rows.columns else []
    if not sizes:
        return None
    return int(DEFAULT_N if DEFAULT_N in sizes else sizes[-1])


def at_ceiling(summary: pd.DataFrame) -> bool:
    """Every base's mean within :data:`CEILING_MARGIN` of the largest possible gap, or every interval of zero width."""
    if summary.empty:
        return False
    near_max = (summary["mean"].abs() >= MAX_GAP - CEILING_MARGIN).all()
    zero_width = ((summary["ci_high"] - summary["ci_low"]).abs() < 1e-12).all()
    return bool(near_max or zero_width)


def headline_size(cells: pd.DataFrame, *, metric: str, level: float | None = None,
                  options: FindingOptions = DEFAULT_OPTIONS) -> tuple[int | None, str]:
    """The training size of the headline findings and the reason, in words (module docstring)."""
    sizes = sorted(int(v) for v in pd.to_numeric(cells["n"], errors="coerce").dropna().unique()) \
        if "n" in cells.columns else []
    if not sizes:
        return None, ""
    if options.n is not None:
        if options.n not in sizes:
            raise UserError(f"`n={options.n}` was not run for these cells; choose one of {sizes}.")
        return options.n, f"n = {options.n} was chosen with `n`."
    targets = set(cells["target"].astype(str)) if "target" in cells.columns else {"all"}
    feasible, ceiling = [], []
    for n in sizes:
        part = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
        if "target" in part.columns and any(set(g["target"].astype(str)) != targets
                                            for _, g in part.groupby("backbone")):
            continue
        feasible.append(n)
        at = part if level is None or "level" not in part.columns else part[part["level"] == level]
        summary = pooled_summary(at, by=["backbone"], value=metric, method=options.method) if len(at) else at
        if at_ceiling(summary):
            ceiling.append(n)
    good = [n for n in feasible if n not in ceiling]
    nearest = lambda values: min(values, key=lambda n: (abs(math.log2(n / DEFAULT_N)), -n))  # noqa: E731
    if good:
        n = nearest(good)
        skipped = f" ({', '.join(map(str, ceiling))} at a ceiling)" if ceiling else ""
        return n, (f"n = {n}: the size nearest {DEFAULT_N} where every target is feasible and the cells are not at a "
                   f"ceiling{skipped}; `n` overrides.")
    if feasible:
        n = max(feasible)
        return n, (f"n = {n}: every size where every target is feasible is at a ceiling (every base's gap within "
                   f"{CEILING_MARGIN} of {MAX_GAP:g} or zero-width intervals), so differences there mean little; `n` "
                   "overrides.")
    n = choose_size(cells)
    return n, f"n = {n}: no size has every target for every base; `n` overrides."


# -- sentences ---------------------------------------------------------------------------------


def _auc_note(auc: pd.DataFrame | None, backbones, floor: float) -> str:
    """``" — the model did not learn the target (AUC x)"`` for the bases below the floor."""
    if auc is None or auc.empty:
        return ""
    weak = []
    for backbone in backbones:
        rows = auc[auc["backbone"] == backbone]
        if len(rows) and math.isfinite(float(rows["mean"].mean())) and float(rows["mean"].mean()) < floor:
            weak.append((backbone, float(rows["mean"].mean())))
    if not weak:
        return ""
    if len(weak) == 1:
        return f"; for {weak[0][0]} the model did not learn the target (AUC {weak[0][1]:.3f})"
    return "; the models did not learn the target (" + ", ".join(f"AUC {v:.3f} for {b}" for b, v in weak) + ")"


def _auc_flag(auc: pd.DataFrame | None, backbones, floor: float) -> str:
    """``"AUC below the floor 0.65: b 0.612"`` for the bases whose models did not learn the target."""
    if auc is None or auc.empty:
        return ""
    weak = [(b, float(auc.loc[auc["backbone"] == b, "mean"].mean())) for b in backbones]
    weak = [(b, v) for b, v in weak if math.isfinite(v) and v < floor]
    return (f"did not learn the target (AUC < {floor:g}: " + ", ".join(f"{b} {v:.3f}" for b, v in weak) + ")"
            if weak else "")


def _too_few(row: pd.Series, other: pd.Series) -> str | None:
    short = [(r["backbone"], int(r["k"])) for r in (row, other) if r["k"] < MIN_CLEAN_REPLICATES]
    if not short:
        return None
    names = " and ".join(f"{b} ({k})" for b, k in short)
    return (f"not stated: {names} {'has' if len(short) == 1 else 'have'} fewer than {MIN_CLEAN_REPLICATES} clean "
            "replicates here")


def _kind_of(row: pd.Series) -> str:
    return str(row["base_kind"]) if "base_kind" in row.index and isinstance(row["base_kind"], str) else ""


@dataclass(frozen=True)
class Comparison:
    """One row of the findings table: two values, their difference with its interval, and a verdict.

    ``first`` and ``second`` name the two sides (``first_value``, ``second_value`` their means
    with intervals; ``first_auc``, ``second_auc`` their AUCs on the same cells); ``estimate``,
    ``low``, ``high`` are ``first - second`` and its interval (NaN when the comparison was left
    out, ``verdict`` then says why). ``causal``: whether a causal sentence may be printed from
    it (:func:`competence_reading`); ``competence`` says why not.
    """

    finding: str
    setting: str
    first: str
    first_value: str
    second: str
    second_value: str
    estimate: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    method: str = ""
    verdict: str = ""
    flags: str = ""
    runner: str = ""
    kind: str = ""
    first_auc: str = ""
    second_auc: str = ""
    causal: bool = False
    competence: str = ""

    @property
    def stated(self) -> bool:
        """Whether the difference has a finite interval (a left-out or refused row has none)."""
        return math.isfinite(self.low) and math.isfinite(self.high)


def matched_values(a: pd.Series, b: pd.Series, *, method: str = DEFAULT_METHOD) -> tuple[str, str, str]:
    """Both sides' means [intervals] on the (target, seed) cells both hold, and a flag saying so.

    When both sides hold the same cells the pooled summaries are used as they are (flag "").
    Otherwise each side is re-averaged on the matched cells (each seed over its matched
    targets, then the replicate interval over seeds) when at least 2 seeds match; else the
    pooled means are kept and the flag says they cover different cells. An interval that passes
    the largest possible magnitude, 1 (of a gap or an AUC), is flagged too.
    """
    cells_a, cells_b = a.get("per_cell"), b.get("per_cell")
    pooled = [(a["mean"], a["ci_low"], a["ci_high"]), (b["mean"], b["ci_low"], b["ci_high"])]
    if not isinstance(cells_a, dict) or not isinstance(cells_b, dict) or set(cells_a) == set(cells_b):
        return _interval(a), _interval(b), _past_bound(pooled)
    common = sorted(set(cells_a) & set(cells_b), key=str)
    seeds = sorted({seed for seed, _ in common}, key=str)
    if len(seeds) < 2:
        flags = [f"values over different cells ({len(cells_a)} vs {len(cells_b)}; under 2 seeds match)",
                 _past_bound(pooled)]
        return _interval(a), _interval(b), "; ".join(f for f in flags if f)
    values = []
    for cells in (cells_a, cells_b):
        per_seed = [float(np.mean([cells[key][0] for key in common if key[0] == seed])) for seed in seeds]
        ci = replicate_ci(per_seed, method=method)
        values.append((float(ci.estimate), float(ci.low), float(ci.high)))
    flags = [f"{len(common)} matched cells (of {len(cells_a)} and {len(cells_b)})", _past_bound(values)]
    return (*[with_interval(*v, k=len(seeds)) for v in values], "; ".join(f for f in flags if f))


def _past_bound(values) -> str:
    """A flag when an interval passes ±1, the largest possible gap (or AUC): too few seeds for a t interval."""
    past = any(math.isfinite(float(lo)) and (float(hi) > MAX_GAP + 1e-9 or float(lo) < -MAX_GAP - 1e-9)
               for _, lo, hi in values)
    return f"an interval passes ±{MAX_GAP:g}, the bound of the metric (few seeds)" if past else ""


def _matched_per_seed(a: pd.Series, b: pd.Series) -> tuple[list[float], list[float]] | None:
    """Each side's per-seed means over the (target, seed) cells both hold; None when they hold the same
    cells, or fewer than 2 seeds match."""
    cells_a, cells_b = a.get("per_cell"), b.get("per_cell")
    if not isinstance(cells_a, dict) or not isinstance(cells_b, dict) or set(cells_a) == set(cells_b):
        return None
    common = set(cells_a) & set(cells_b)
    seeds = sorted({seed for seed, _ in common}, key=str)
    if len(seeds) < 2:
        return None
    return tuple([float(np.mean([cells[key][0] for key in common if key[0] == seed])) for seed in seeds]
                 for cells in (cells_a, cells_b))


def matched_difference(a: pd.Series, b: pd.Series, *, method: str = DEFAULT_METHOD):
    """:func:`difference_interval`, except that an unpaired difference between sides holding different
    cells is taken on the matched (target, seed) cells (Welch's interval of their per-seed means)."""
    ci = difference_interval(a, b, method=method)
    matched = None if ci.method.startswith(tuple(f"95% paired {m}" for m in ("t", "normal"))) or "cells both" in \
        ci.method else _matched_per_seed(a, b)
    if matched is None:
        return ci
    welch = difference_ci(matched[0], matched[1], paired=False, method=method)
    return ConfidenceInterval(welch.estimate, welch.low, welch.high, f"{welch.method}, on the matched cells")


NOT_FROM_PRETRAINING = "not above scratch, so the bias is not from pretraining"
CAUSE_SENTENCE = (" The biased base does not exceed the scratch base: the bias comes from the cue being readable from "
                  "any features, not from pretraining.")


def _verdict(ci, kind: str, *, causal: bool = True) -> str:
    low, high = float(ci.low), float(ci.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval: no claim"
    if low > 0:
        return "biased higher"
    if high < 0:
        return "biased lower"
    if kind == "scratch" and causal:
        return f"no difference shown; {NOT_FROM_PRETRAINING}"
    return "no difference shown (interval includes 0)"


@dataclass(frozen=True)
class GridCells:
    """What a base comparison needs beyond the headline summaries: ``pool``, the clean cells of the
    same grid and level at every n (for :func:`matched_auc_comparison`); the headline ``n``; the bias
    ``metric`` and ``performance`` columns; the causal ``floor`` (:func:`causal_floor`)."""

    pool: pd.DataFrame | None = None
    n: int | None = None
    metric: str = "fpr_gap_stereotype"
    performance: str = "auc"
    floor: float = CAUSAL_FLOOR


def causal_floor(cells: pd.DataFrame, n, options: FindingOptions = DEFAULT_OPTIONS) -> float:
    """``options.causal_floor``, raised to the competence floor of the cells' runner at ``n``
    (:data:`analyze.metrics.diagnosis.COMPETENCE_FLOORS`) when one is defined there."""
    runners = set(cells["runner"].dropna().astype(str)) if "runner" in cells.columns else set()
    floors = [COMPETENCE_FLOORS.get((runner, int(n))) for runner in runners] if n is not None else []
    return max([float(options.causal_floor), *[f for f in floors if f is not None]])


def auc_pair(auc: pd.DataFrame | None, first: str, second: str, *,
             method: str = DEFAULT_METHOD) -> tuple[str, str, float, float]:
    """Both bases' AUC ``mean [interval]`` on the (target, seed) cells both hold (:func:`matched_values`)
    and the two means; empty strings and NaN for a base without an AUC."""
    if auc is None or auc.empty:
        return "", "", float("nan"), float("nan")
    rows = [auc[auc["backbone"].astype(str) == str(name)] for name in (first, second)]
    if any(r.empty for r in rows):
        texts = ["" if r.empty else _interval(r.iloc[0]) for r in rows]
        means = [float("nan") if r.empty else float(r.iloc[0]["mean"]) for r in rows]
        return texts[0], texts[1], means[0], means[1]
    a, b = rows[0].iloc[0], rows[1].iloc[0]
    text_a, text_b, _ = matched_values(a, b, method=method)
    matched = _matched_per_seed(a, b)
    means = (float(np.mean(matched[0])), float(np.mean(matched[1]))) if matched else (float(a["mean"]), float(b["mean"]))
    return text_a, text_b, means[0], means[1]


def competence_reading(first: str, second: str, auc_a: float, auc_b: float, *,
                       floor: float = CAUSAL_FLOOR) -> tuple[bool, list[str]]:
    """``(causal, notes)``: a causal sentence may be printed from a comparison of ``first`` (AUC
    ``auc_a``) with ``second`` only when both AUCs are known, both reach ``floor`` and they differ by at
    most :data:`COMPETENCE_GAP`; ``notes`` say why not (empty when causal)."""
    if not (math.isfinite(auc_a) and math.isfinite(auc_b)):
        return False, ["no cause stated: the AUC of a base is unknown"]
    notes = []
    weak = [(name, value) for name, value in ((first, auc_a), (second, auc_b)) if value < floor]
    if weak:
        notes.append(f"no cause stated: AUC below the floor {floor:.2f} ("
                     + ", ".join(f"{name} {value:.3f}" for name, value in weak) + ")")
    if abs(auc_a - auc_b) > COMPETENCE_GAP:
        weaker = first if auc_a < auc_b else second
        notes.append(f"AUCs differ by {abs(auc_a - auc_b):.3f} (> {COMPETENCE_GAP:g}): the weaker model's ({weaker}) "
                     "larger gap may be a competence effect")
    return not notes, notes


def _size_summaries(pool: pd.DataFrame, grid: GridCells, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    by = ["backbone", "n"]
    return (pooled_summary(pool, by=by, value=grid.metric, method=method),
            pooled_summary(pool, by=by, value=grid.performance, method=method))


def matched_auc_comparison(c: Comparison, auc_a: float, auc_b: float, grid: GridCells,
                           options: FindingOptions = DEFAULT_OPTIONS) -> tuple[Comparison | None, str]:
    """The comparison at matched AUC offered when two bases' AUCs differ by more than
    :data:`COMPETENCE_GAP`: the stronger base at the smaller n whose mean AUC is nearest the weaker
    base's (within :data:`COMPETENCE_GAP`), against the weaker base at the headline n (Welch's
    interval: different rows). Returns ``(row, "")``, or ``(None, why)`` when no such cells exist."""
    stronger, weaker, weak_auc = (c.first, c.second, auc_b) if auc_a >= auc_b else (c.second, c.first, auc_a)
    pool = grid.pool
    if pool is None or grid.n is None or pool.empty or grid.performance not in pool.columns:
        return None, f"no cells at matched AUC: run {stronger} at a smaller n"
    sizes = pd.to_numeric(pool["n"], errors="coerce")
    smaller = pool[(pool["backbone"].astype(str) == stronger) & (sizes < grid.n)]
    bias, auc = _size_summaries(pd.concat([smaller, pool[(pool["backbone"].astype(str) == weaker) & (sizes == grid.n)]]),
                                grid, options.method)
    near = auc[(auc["backbone"].astype(str) == stronger) & ((auc["mean"] - weak_auc).abs() <= COMPETENCE_GAP)]
    if near.empty:
        return None, (f"no cells at matched AUC: no smaller n of {stronger} has an AUC within {COMPETENCE_GAP:g} of "
                      f"{weaker}'s {weak_auc:.3f}; run {stronger} at a smaller n")
    at = near.assign(_d=(near["mean"] - weak_auc).abs()).sort_values(["_d", "n"], ascending=[True, False]).iloc[0]
    m = int(at["n"])
    row = {name: bias[(bias["backbone"].astype(str) == name) & (bias["n"] == (m if name == stronger else grid.n))]
           for name in (c.first, c.second)}
    rate = {name: auc[(auc["backbone"].astype(str) == name) & (auc["n"] == (m if name == stronger else grid.n))]
            for name in (c.first, c.second)}
    if any(r.empty for r in (*row.values(), *rate.values())):
        return None, f"no cells at matched AUC: {weaker} has no {grid.metric} at n = {grid.n}"
    a, b = row[c.first].iloc[0], row[c.second].iloc[0]
    ci = difference_interval(a, b, method=options.method)
    means = [float(rate[name].iloc[0]["mean"]) for name in (c.first, c.second)]
    causal, notes = competence_reading(c.first, c.second, *means, floor=grid.floor)
    matched = replace(c, finding=f"{c.finding} at matched AUC", setting=f"{c.setting}; {stronger} at n = {m}",
                      first_value=_interval(a), second_value=_interval(b), first_auc=_interval(rate[c.first].iloc[0]),
                      second_auc=_interval(rate[c.second].iloc[0]), estimate=float(ci.estimate), low=float(ci.low),
                      high=float(ci.high), method=ci.method, verdict=_verdict(ci, c.kind, causal=causal),
                      flags="; ".join(notes), causal=causal, competence="; ".join(notes))
    return matched, f"at matched AUC ({stronger} at n = {m}, AUC {means[0 if stronger == c.first else 1]:.3f}): see its row"


def _compare_pair(row: pd.Series, other: pd.Series, *, setting: str, auc, grid: GridCells,
                  options: FindingOptions) -> list[Comparison]:
    """The comparison of the biased base ``row`` with ``other`` and, when their AUCs differ by more than
    :data:`COMPETENCE_GAP`, the one at matched AUC (module docstring)."""
    kind = _kind_of(other)
    first, second, matched = matched_values(row, other, method=options.method)
    first_auc, second_auc, auc_a, auc_b = auc_pair(auc, str(row["backbone"]), str(other["backbone"]),
                                                   method=options.method)
    causal, notes = competence_reading(str(row["backbone"]), str(other["backbone"]), auc_a, auc_b, floor=grid.floor)
    known = math.isfinite(auc_a) and math.isfinite(auc_b)
    notes = notes if known or kind == "scratch" else []  # no AUC column: only the scratch row loses a sentence
    note = _auc_flag(auc, [row["backbone"], other["backbone"]], options.auc_floor)
    base = dict(finding=f"biased vs {kind}", setting=setting, first=str(row["backbone"]), first_value=first,
                second=str(other["backbone"]), second_value=second, kind=kind, first_auc=first_auc,
                second_auc=second_auc, causal=causal)
    refused = _too_few(row, other)
    if refused:
        return [Comparison(**base, verdict=refused, flags="; ".join(f for f in (matched, note) if f))]
    ci = matched_difference(row, other, method=options.method)
    found = Comparison(**base, estimate=float(ci.estimate), low=float(ci.low), high=float(ci.high), method=ci.method,
                       verdict=_verdict(ci, kind, causal=causal))
    extra = []
    if known and abs(auc_a - auc_b) > COMPETENCE_GAP:
        at_matched, offer = matched_auc_comparison(found, auc_a, auc_b, grid, options)
        notes.append(offer)
        extra = [at_matched] if at_matched is not None else []
    flags = "; ".join(f for f in (matched, note, *notes) if f)
    return [replace(found, flags=flags, competence="; ".join(notes))] + extra


def base_comparisons(summary: pd.DataFrame, *, setting: str, auc: pd.DataFrame | None = None,
                     options: FindingOptions = DEFAULT_OPTIONS, grid: GridCells | None = None) -> list[Comparison]:
    """Per biased base: one :class:`Comparison` with every control, scratch and ImageNet base, with both
    AUCs, and the comparison at matched AUC where the AUCs differ (module docstring)."""
    if "base_kind" not in summary.columns:
        return []
    grid = grid or GridCells(floor=options.causal_floor)
    biased = summary[summary["base_kind"] == "biased"]
    others = summary[summary["base_kind"].isin(COMPARED_KINDS)]
    order = {kind: i for i, kind in enumerate(COMPARED_KINDS)}
    others = others.assign(_order=others["base_kind"].map(order)).sort_values(["_order", "backbone"])
    rows = []
    for _, row in biased.iterrows():
        for _, other in others.iterrows():
            rows += _compare_pair(row, other, setting=setting, auc=auc, grid=grid, options=options)
    return rows


def comparison_sentence(c: Comparison, *, condition: str, metric: str, context: str, auc=None,
                        floor: float = DEFAULT_AUC_FLOOR) -> str:
    """One comparison in words (the findings' long form; the report shows the table row). A causal
    sentence is added only where :func:`competence_reading` allows it (``c.causal``)."""
    head = (f"{condition} ({context}), the biased base {c.first} has a {metric} of {c.first_value} vs "
            f"{c.second_value} for the {c.kind} base {c.second}")
    if c.first_auc or c.second_auc:
        head += f" (AUC {c.first_auc or 'unknown'} vs {c.second_auc or 'unknown'})"
    note = "".join(f"; {part}" for part in c.flags.split("; ") if part and not part.startswith("did not learn"))
    note += _auc_note(auc, [c.first, c.second], floor) if auc is not None else ""
    if not c.method:
        return f"{head}; the difference is {c.verdict}{note}."
    low, high = c.low, c.high
    if math.isfinite(low) and low > 0:
        shows = f", so these data show the biased base transferring more bias than that {c.kind} base"
    elif math.isfinite(high) and high < 0:
        shows = f", so these data show the biased base transferring less bias than that {c.kind} base"
    else:
        shows = ", so these data do not show a difference" if math.isfinite(low) else ""
    sentence = (f"{head}; the difference is {with_interval(c.estimate, low, high)} ({c.method}) and "
                f"{zero_verdict(low, high)}{shows}{note}.")
    if c.kind == "scratch" and c.causal and not (math.isfinite(low) and low > 0):
        sentence += CAUSE_SENTENCE
    return sentence


def compare_biased_with_bases(summary: pd.DataFrame, *, condition: str, metric: str, context: str,
                              auc: pd.DataFrame | None = None, options: FindingOptions = DEFAULT_OPTIONS,
                              grid: GridCells | None = None) -> list[str]:
    """Per biased base: its bias vs every control, scratch and ImageNet base, each difference with its interval
    and both AUCs.

    Says in words when the biased base does not exceed scratch, only where both bases are competent and
    comparable (module docstring).
    """
    return [comparison_sentence(c, condition=condition, metric=metric, context=context, auc=auc,
                                floor=options.auc_floor)
            for c in base_comparisons(summary, setting=condition, auc=auc, options=options, grid=grid)]


def _base_order(summary: pd.DataFrame) -> list[str]:
    kinds = summary.drop_duplicates("backbone").set_index("backbone")
    rank = {"biased": 0, "control": 1}
    if "base_kind" not in kinds.columns:
        return sorted(kinds.index.astype(str))
    return sorted(kinds.index, key=lambda b: (rank.get(kinds.loc[b, "base_kind"], 2), str(b)))


def fall_toward_balance(summary: pd.DataFrame, *, strongest: float, balanced: float, metric: str,
                        options: FindingOptions = DEFAULT_OPTIONS) -> list[str]:
    """Per base: the bias at the strongest level vs at the level nearest balance, and the change."""
    sentences = []
    for backbone in _base_order(summary):
        part = summary[summary["backbone"] == backbone].set_index("level")
        if strongest not in part.index or balanced not in part.index:
            continue
        high, low_level = part.loc[strongest], part.loc[balanced]
        ci = difference_interval(low_level, high, method=options.method)
        change, lo, hi = float(ci.estimate), float(ci.low), float(ci.high)
        verb = ("falls" if math.isfinite(hi) and hi < 0 else "rises" if math.isfinite(lo) and lo > 0
                else "does not change detectably")
        kind = f" ({high['base_kind']})" if "base_kind" in part.columns else ""
        sentences.append(f"{backbone}{kind}: the {metric} {verb} from {_interval(high)} at level {strongest:g} to "
                         f"{_interval(low_level)} at level {balanced:g} (change {with_interval(change, lo, hi)}, "
                         f"{ci.method}; {zero_verdict(lo, hi)}).")
    return sentences


@dataclass(frozen=True)
class Headline:
    """One runner's headline setting (:func:`headline_size`, the strongest and balanced levels) and its summaries."""

    summary: pd.DataFrame
    auc: pd.DataFrame | None
    n: int | None
    rule: str
    context: str
    strongest: float | None = None
    balanced: float | None = None
    level_name: str = "correlation level"
    grid: GridCells | None = None


def _chosen_levels(levels, options: FindingOptions) -> tuple[float, float]:
    strongest, balanced = strongest_and_balanced(levels)
    if options.level is not None:
        if not any(math.isclose(options.level, v) for v in levels):
            raise UserError(f"`level={options.level}` was not run for these cells; choose one of "
                            f"{[float(v) for v in levels]}.")
        strongest = next(float(v) for v in levels if math.isclose(options.level, v))
    return strongest, balanced


def correlation_headline(rows: pd.DataFrame, *, metric: str, performance: str = "auc",
                         options: FindingOptions = DEFAULT_OPTIONS) -> Headline | None:
    """The headline setting and summaries of one runner's (clean) correlation cells; None without any."""
    cells = correlation_cells(rows)
    if cells.empty:
        return None
    strongest, balanced = _chosen_levels(sorted(cells["level"].dropna().unique()), options)
    n, rule = headline_size(cells, metric=metric, level=strongest, options=options)
    every = cells
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    by = ["backbone", "base_kind", "level"] if "base_kind" in cells.columns else ["backbone", "level"]
    summary = pooled_summary(cells, by=by, value=metric, method=options.method)
    if summary.empty:
        return Headline(summary, None, n, rule, "")
    levels = sorted(summary["level"].unique())
    if strongest not in levels:
        strongest, balanced = strongest_and_balanced(levels)
    auc = (pooled_summary(cells, by=by, value=performance, method=options.method)
           if performance in cells.columns else None)
    grid = GridCells(pool=every[(every["level"] - strongest).abs() < 1e-9], n=n, metric=metric,
                     performance=performance, floor=causal_floor(every, n, options))
    return Headline(summary, auc, n, rule, _context(summary, n, options.method), strongest, balanced,
                    level_name(cells), grid)


def correlation_findings(rows: pd.DataFrame, *, metric: str, performance: str = "auc",
                         options: FindingOptions = DEFAULT_OPTIONS) -> list[str]:
    """Findings from the correlation grid of one runner (rows of one runner only, already cleaned)."""
    head = correlation_headline(rows, metric=metric, performance=performance, options=options)
    if head is None:
        return []
    if head.summary.empty:
        return [f"No correlation cell has a finite {metric}, so nothing is said about correlation."]
    summary, auc, strongest, balanced, context = head.summary, head.auc, head.strongest, head.balanced, head.context
    found = [f"Headline setting: {head.rule}"] if head.rule else []
    found += compare_biased_with_bases(summary[summary["level"] == strongest], metric=metric, context=context,
                                       condition=f"At the strongest {head.level_name}, {strongest:g}",
                                       auc=None if auc is None else auc[auc["level"] == strongest], options=options,
                                       grid=head.grid)
    if strongest != balanced:
        falls = fall_toward_balance(summary, strongest=strongest, balanced=balanced, metric=metric, options=options)
        if falls:
            found += [f"Toward balance ({context}): {falls[0]}"] + [f"Toward balance: {s}" for s in falls[1:]]
        if auc is not None:
            found += _auc_cost(auc, strongest=strongest, balanced=balanced, performance=performance, options=options)
    elif len(found) <= 1:
        found.append(f"Only level {strongest:g} was run, so nothing can be said about the trend with correlation.")
    return found


def _change_rows(summary: pd.DataFrame, head: Headline, *, what: str, options: FindingOptions) -> list[Comparison]:
    """Per biased base (every base without one): ``value at balance - value at the strongest level``;
    not stated from fewer than :data:`MIN_CLEAN_REPLICATES` clean replicates at either level."""
    if "base_kind" in summary.columns and (summary["base_kind"] == "biased").any():
        summary = summary[summary["base_kind"] == "biased"]
    rows = []
    setting = f"level {head.strongest:g} → {head.balanced:g}" + (f", n = {head.n}" if head.n is not None else "")
    for backbone, part in summary.groupby("backbone", sort=True):
        part = part.set_index("level")
        if head.strongest not in part.index or head.balanced not in part.index:
            continue
        low_level, high = part.loc[head.balanced], part.loc[head.strongest]
        first, second, matched = matched_values(low_level, high, method=options.method)
        base = dict(finding=f"toward balance: {what}", setting=setting, first=f"{backbone} at {head.balanced:g}",
                    first_value=first, second=f"at {head.strongest:g}", second_value=second, flags=matched,
                    kind="balance")
        short = [f"level {lv:g} ({int(r['k'])})" for lv, r in ((head.balanced, low_level), (head.strongest, high))
                 if r["k"] < MIN_CLEAN_REPLICATES]
        if short:
            verb = "has" if len(short) == 1 else "have"
            rows.append(Comparison(**base, verdict=f"not stated: {' and '.join(short)} {verb} fewer than "
                                                   f"{MIN_CLEAN_REPLICATES} clean replicates"))
            continue
        ci = matched_difference(low_level, high, method=options.method)
        lo, hi = float(ci.low), float(ci.high)
        verdict = (f"{what} falls" if hi < 0 else f"{what} rises" if lo > 0 else f"{what}: no change shown") \
            if math.isfinite(lo) and math.isfinite(hi) else "no interval: no claim"
        rows.append(Comparison(**base, estimate=float(ci.estimate), low=lo, high=hi, method=ci.method,
                               verdict=verdict))
    return rows


def correlation_comparisons(rows: pd.DataFrame, *, metric: str, performance: str = "auc",
                            options: FindingOptions = DEFAULT_OPTIONS) -> tuple[Headline | None, list[Comparison]]:
    """The headline and the findings-table rows of one runner's (clean) correlation cells: the biased base
    against every other base at the strongest level, and the move toward balance (bias and AUC)."""
    head = correlation_headline(rows, metric=metric, performance=performance, options=options)
    if head is None or head.summary.empty:
        return head, []
    summary, auc = head.summary, head.auc
    setting = f"level {head.strongest:g}" + (f", n = {head.n}" if head.n is not None else "")
    found = base_comparisons(summary[summary["level"] == head.strongest], setting=setting, options=options,
                             auc=None if auc is None else auc[auc["level"] == head.strongest], grid=head.grid)
    if head.strongest != head.balanced:
        found += _change_rows(summary, head, what="bias", options=options)
        found += [] if auc is None else _change_rows(auc, head, what=performance, options=options)
    return head, found


def _auc_cost(auc: pd.DataFrame, *, strongest: float, balanced: float, performance: str,
              options: FindingOptions = DEFAULT_OPTIONS) -> list[str]:
    if "base_kind" in auc.columns and (auc["base_kind"] == "biased").any():
        auc = auc[auc["base_kind"] == "biased"]
    sentences = []
    for backbone, part in auc.groupby("backbone", sort=True):
        part = part.set_index("level")
        if strongest in part.index and balanced in part.index:
            ci = difference_interval(part.loc[balanced], part.loc[strongest], method=options.method)
            d, lo, hi = float(ci.estimate), float(ci.low), float(ci.high)
            sentences.append(f"{backbone}: {performance} {_interval(part.loc[strongest])} at level {strongest:g} vs "
                             f"{_interval(part.loc[balanced])} at level {balanced:g} (change "
                             f"{with_interval(d, lo, hi)}, {ci.method}; {zero_verdict(lo, hi)}).")
    return [f"Test {performance} across the same move: " + " ".join(sentences)] if sentences else []


def natural_headline(rows: pd.DataFrame, *, metric: str, performance: str = "auc",
                     options: FindingOptions = DEFAULT_OPTIONS) -> Headline | None:
    """The headline size and per-base summaries of the natural cells (``spec_kind`` natural); None without any."""
    if "spec_kind" not in rows.columns or "base_kind" not in rows.columns:
        return None
    cells = rows[rows["spec_kind"] == "natural"]
    if cells.empty:
        return None
    n, rule = headline_size(cells, metric=metric, options=options)
    grid = GridCells(pool=cells, n=n, metric=metric, performance=performance, floor=causal_floor(cells, n, options))
    if n is not None:
        cells = cells[pd.to_numeric(cells["n"], errors="coerce") == n]
    summary = pooled_summary(cells, by=["backbone", "base_kind"], value=metric, method=options.method)
    if summary.empty:
        return None
    auc = (pooled_summary(cells, by=["backbone", "base_kind"], value=performance, method=options.method)
           if performance in cells.columns else None)
    return Headline(summary, auc, n, rule, _context(summary, n, options.method), grid=grid)


def natural_findings(rows: pd.DataFrame, *, metric: str, performance: str = "auc",
                     options: FindingOptions = DEFAULT_OPTIONS) -> list[str]:
    """The biased base vs the other bases on the natural finetuning distribution (``spec_kind`` natural)."""
    head = natural_headline(rows, metric=metric, performance=performance, options=options)
    if head is None:
        return []
    found = compare_biased_with_bases(head.summary, metric=metric, context=head.context,
                                      condition="At the natural level (finetuning sets drawn as the data come)",
                                      auc=head.auc, options=options, grid=head.grid)
    return ([f"Headline setting of the natural cells: {head.rule}"] if head.rule and found else []) + found


def natural_comparisons(rows: pd.DataFrame, *, metric: str, performance: str = "auc",
                        options: FindingOptions = DEFAULT_OPTIONS) -> list[Comparison]:
    """The findings-table rows of the natural cells: the biased base against every other base."""
    head = natural_headline(rows, metric=metric, performance=performance, options=options)
    if head is None:
        return []
    setting = "natural level" + (f", n = {head.n}" if head.n is not None else "")
    return base_comparisons(head.summary, setting=setting, auc=head.auc, options=options, grid=head.grid)


def per_size_table_rows(cells: pd.DataFrame, *, metric: str, level: float | None,
                        options: FindingOptions = DEFAULT_OPTIONS) -> tuple[tuple, list[tuple]]:
    """Header and rows of the per-n table: bias [interval] per base at ``level`` (all levels when None)."""
    part = cells if level is None or "level" not in cells.columns else cells[cells["level"] == level]
    summary = pooled_summary(part, by=["n", "backbone"], value=metric, method=options.method)
    backbones = sorted(summary["backbone"].astype(str).unique())
    targets = set(part["target"].astype(str)) if "target" in part.columns else set()
    rows = []
    for n, group in summary.groupby("n", sort=True):
        by_base = {str(r["backbone"]): _interval(r) for _, r in group.iterrows()}
        here = part[pd.to_numeric(part["n"], errors="coerce") == n]
        n_targets = here["target"].nunique() if "target" in here.columns else 1
        notes = []
        if targets and n_targets < len(targets):
            notes.append(f"{n_targets} of {len(targets)} targets feasible")
        if at_ceiling(group):
            notes.append("at a ceiling")
        rows.append((f"{int(n)}", *[by_base.get(b, "not run") for b in backbones], "; ".join(notes)))
    return ("n", *backbones, "note"), rows


def p_words(pvalue: float) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    text = format_p(pvalue)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _term_phrase(row: pd.Series) -> str:
    low, high = row["ci_low"], row["ci_high"]
    if low > 0 or high < 0:
        direction = ("positive" if low > 0 else "negative") + ", its interval excludes zero"
    else:
        direction = "its interval includes zero" if low <= 0 <= high else "no interval (degenerate fit)"
    return (f"{row['term']} {format_number(row['coef'], 3)} [{format_number(low, 3)}, {format_number(high, 3)}] "
            f"({p_words(row['p_value'])}; {direction})")


def effect_findings(coefficients: pd.DataFrame, *, title: str) -> list[str]:
    """One sentence per fit (estimator) of a model's coefficient table, in table order: every
    non-intercept term with its CI. Estimators can disagree (e.g. errors cluster-robust over a
    few targets vs a random-intercept model), so each is stated."""
    if coefficients is None or coefficients.empty:
        return []
    model = coefficients.iloc[0]["model"]
    coefficients = coefficients[coefficients["model"] == model]
    sentences = []
    for _, fit in coefficients.groupby("estimator", sort=False):
        terms = fit[fit["term"] != "Intercept"]
        first = fit.iloc[0]
        groups = f", {int(first['n_groups'])} groups" if not pd.isna(first["n_groups"]) else ""
        caveat = f" Note: {first['note']}." if first["note"] else ""
        sentences.append(f"{title} ({first['errors']}; {int(first['n_obs'])} rows{groups}): "
                         + "; ".join(_term_phrase(r) for _, r in terms.iterrows()) + "." + caveat)
    return sentences


def salience_findings(salience: pd.DataFrame, *, truth: str | None) -> list[str]:
    """The most and least salient targets with their intervals, and the rank agreement with the truth."""
    table = salience.dropna(subset=["salience"]).sort_values("salience")
    if table.empty:
        return []
    top, bottom = table.iloc[-1], table.iloc[0]
    found = [f"Salience ranges from {with_interval(bottom['salience'], bottom['ci_low'], bottom['ci_high'])} "
             f"({bottom['target']}) to {with_interval(top['salience'], top['ci_low'], top['ci_high'])} "
             f"({top['target']}) over {len(table)} targets."]
    if truth is not None and truth in table.columns and table[truth].notna().sum() >= 3:
        known = table.dropna(subset=[truth])
        rho, pvalue = spearmanr(known[truth], known["salience"])
        found.append(f"Estimated salience and the generator's {truth} agree in rank with Spearman ρ = {rho:.2f} "
                     f"({'p < 0.001' if pvalue < 0.001 else f'p = {pvalue:.2g}'}, {len(known)} targets).")
    return found
