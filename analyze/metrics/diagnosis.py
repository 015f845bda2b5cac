"""Diagnosis of a cell: did its model learn the task well enough for its bias numbers to mean much?

Every probe, finetune and salience cell gets the flags below (rules and thresholds in
``docs/science.md`` section 8). A flag that does not apply to a runner (``c_at_edge`` for a
finetune) is False.

``degenerate``
    All test predictions one class while both classes are present; or the threshold ties
    with the scores so that the rule's cut-off places the policy's target count of
    positives with a miss of more than 1 (the ``threshold_miss`` metric: rows the cut-off
    could not order, decided by the tie break for ``top_p``, predicted negative under
    ``top_p_reference``); or the test scores are constant; or the AUC or a group's FPR is
    undefined.
``c_at_edge``
    Probes: the chosen ``C`` is the smallest or largest of a grid of two or more values.
``lr_at_edge``, ``epochs_at_edge``
    Finetunes: the chosen learning rate is the smallest or largest of its grid (two or more
    values); the best epoch is the first or the last of two or more.
``not_converged``
    Probes: the solver did not reach its tolerance for the chosen ``C``. Finetunes: the
    chosen run's training or validation loss was not finite, or its training loss never
    fell below the first epoch's.
``weak_task``
    Test AUC below the floor (:data:`DEFAULT_AUC_FLOOR`, an option of every verb): the model
    did not learn the target.

Records carry the result of :func:`diagnose_record` under ``diagnosis``; ``collect``
recomputes it from the record with its own floor, so old records get one too. The table
columns are ``flag_<name>`` for each flag, ``flagged`` (any flag) and ``diagnosis`` (the
reasons in words).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyze.runners import RUNNERS
from extract.errors import UserError

FLAGS = ("degenerate", "c_at_edge", "lr_at_edge", "epochs_at_edge", "not_converged", "weak_task")
FLAG_COLUMNS = tuple(f"flag_{name}" for name in FLAGS)
DEFAULT_AUC_FLOOR = 0.65
# Competence floors of a benchmark's bases (docs/science.md section 12): mean test AUC over the
# targets at the natural level, by (runner, n), that every pretrained base (biased, controls,
# ImageNet) must reach before its bias numbers mean anything; the scratch base (random weights)
# is the reference and is not held to them.
COMPETENCE_FLOORS = {("probe", 128): 0.70, ("probe", 1024): 0.80, ("finetune", 512): 0.80}
# A cut-off may leave one row to the tie break (two rows tied across it) without a flag.
MAX_THRESHOLD_MISS = 1
# Flags that leave a cell out of findings and plans (weak_task cells stay in and are marked instead).
EXCLUDING_FLAGS = ("degenerate", "c_at_edge", "lr_at_edge", "epochs_at_edge", "not_converged")


@dataclass(frozen=True)
class Diagnosis:
    """The flags of one cell (every name of :data:`FLAGS`) with the reasons in words."""

    flags: dict = field(default_factory=lambda: dict.fromkeys(FLAGS, False))
    reasons: tuple[str, ...] = ()
    auc_floor: float = DEFAULT_AUC_FLOOR

    @property
    def flagged(self) -> bool:
        """True when any flag is set."""
        return any(self.flags.values())

    def to_dict(self) -> dict:
        """The record's ``diagnosis`` field (JSON-serialisable)."""
        return {"flags": {k: bool(self.flags[k]) for k in FLAGS}, "flagged": self.flagged,
                "reasons": list(self.reasons), "auc_floor": float(self.auc_floor)}

    def columns(self) -> dict:
        """The table columns: ``flag_<name>``, ``flagged`` and ``diagnosis``."""
        return {**{f"flag_{k}": bool(self.flags[k]) for k in FLAGS}, "flagged": self.flagged,
                "diagnosis": "; ".join(self.reasons)}


def check_floor(auc_floor) -> float:
    """``auc_floor`` as a float in [0.5, 1), else :class:`UserError`."""
    if isinstance(auc_floor, bool) or not isinstance(auc_floor, (int, float, np.integer, np.floating)) \
            or not 0.5 <= float(auc_floor) < 1.0:
        raise UserError(f"the AUC floor must be a number in [0.5, 1), got {auc_floor!r}; the default is "
                        f"{DEFAULT_AUC_FLOOR}.")
    return float(auc_floor)


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def at_edge(value, grid) -> str | None:
    """``"smallest"`` or ``"largest"`` when ``value`` is an end of a grid of 2+ distinct values, else None."""
    if not _finite(value) or grid is None:
        return None
    values = sorted({float(v) for v in grid if _finite(v)})
    if len(values) < 2:
        return None
    if math.isclose(float(value), values[0], rel_tol=1e-9, abs_tol=0.0):
        return "smallest"
    if math.isclose(float(value), values[-1], rel_tol=1e-9, abs_tol=0.0):
        return "largest"
    return None


def edge_reason(name: str, value, edge: str | None, grid) -> str | None:
    """``"C = 100 is the largest of the grid [...]: widen it above 100"`` (None when not at an edge); a
    2-value grid is told it needs an interior value."""
    if not edge:
        return None
    values = sorted({float(v) for v in grid if _finite(v)})
    side = "above" if edge == "largest" else "below"
    advice = f"widen it {side} {float(value):g}"
    if len(values) == 2:
        advice += " and add an interior value (a 2-value grid has none, so every choice is an edge)"
    return f"{name} = {float(value):g} is the {edge} of the grid {list(grid)}: {advice}"


def degenerate_reasons(metrics: Mapping) -> list[str]:
    """Why a cell's predictions are degenerate (empty when they are not); rules in the module docstring.

    Works on the metrics of :func:`analyze.metrics.evaluate_runs` (records without an
    ``auc`` metric, e.g. multi-label ones, get no reason); records written before
    ``n_predicted_positive`` existed are judged from the per-group selection rates.
    """
    if "auc" not in metrics:  # not a binary-target record (e.g. multi-label): these rules do not apply
        return []
    reasons = []
    get = metrics.get
    if not _finite(get("auc")):
        reasons.append("AUC undefined")
    undefined = [g for g in (0, 1) if not _finite(get(f"fpr_group{g}"))]
    if undefined:
        reasons.append(f"FPR undefined for group {' and '.join(map(str, undefined))}")
    if _finite(get("scores_constant")) and get("scores_constant") >= 1:
        reasons.append("test scores constant")
    predicted, evaluated = get("n_predicted_positive"), get("n_evaluated")
    if _finite(predicted) and _finite(evaluated) and evaluated > 0:
        if predicted == 0 or predicted == evaluated:
            reasons.append(f"all {int(evaluated)} test predictions {'negative' if predicted == 0 else 'positive'}")
    else:
        rates = [get(f"selection_rate_group{g}") for g in (0, 1)]
        if all(_finite(r) for r in rates) and (max(rates) == 0 or min(rates) == 1):
            reasons.append(f"all test predictions {'negative' if max(rates) == 0 else 'positive'}")
    miss = get("threshold_miss")
    if _finite(miss) and miss > MAX_THRESHOLD_MISS:
        reasons.append(f"the threshold ties with the scores: its cut-off misses the policy's count of positives "
                       f"by {int(miss)}")
    return reasons


def weak_reason(auc, auc_floor: float) -> str | None:
    """The ``weak_task`` reason when ``auc`` is finite and below the floor."""
    if _finite(auc) and float(auc) < auc_floor:
        return f"test AUC {float(auc):.3f} below the floor {auc_floor:g}"
    return None


def _curve_problem(train_curve, val_curve) -> str | None:
    curves = {"training": train_curve or [], "validation": val_curve or []}
    for name, curve in curves.items():
        if any(v is None or not _finite(v) for v in curve):
            return f"the {name} loss was not finite"
    train = [float(v) for v in curves["training"]]
    if len(train) >= 2 and min(train[1:]) >= train[0]:
        return f"the training loss never fell below the first epoch's ({train[0]:.3g})"
    return None


def diagnose_record(record: Mapping, *, auc_floor: float = DEFAULT_AUC_FLOOR) -> Diagnosis:
    """The :class:`Diagnosis` of one result record (probe or finetune), rules in the module docstring."""
    floor = check_floor(auc_floor)
    metrics = record.get("metrics") or {}
    flags, reasons = dict.fromkeys(FLAGS, False), []

    def flag(name: str, reason: str | None) -> None:
        if reason:
            flags[name] = True
            reasons.append(reason)

    for reason in degenerate_reasons(metrics):
        flag("degenerate", reason)
    runner = RUNNERS.get(record.get("runner"))
    if runner is not None:  # the checks of how the runner fitted (C grid, learning rates, epochs, convergence)
        runner.check_fit(record, flag)
    flag("weak_task", weak_reason(metrics.get("auc"), floor))
    return Diagnosis(flags=flags, reasons=tuple(reasons), auc_floor=floor)


def diagnose_salience(a_y, a_s, details: Mapping, *, Cs: Sequence[float] | None = None,
                      lrs: Sequence[float] | None = None, epochs: int | None = None, not_converged: int = 0,
                      auc_floor: float = DEFAULT_AUC_FLOOR) -> Diagnosis:
    """The :class:`Diagnosis` of one salience estimate.

    Parameters
    ----------
    a_y, a_s : array-like of shape (n_models,)
        Each model's direction-free AUCs on the four-quadrant test set.
    details : mapping
        Per arrangement, the chosen hyperparameters (``C``; or ``lr`` and ``best_epochs``).
    Cs, lrs, epochs : optional
        The grids searched (probe method: ``Cs``; scratch method: ``lrs`` and ``epochs``).
    not_converged : int
        Probe fits that stopped before their tolerance.
    auc_floor : float
        ``weak_task`` when the models' mean ``max(A_y, A_s)`` is below it: they learned
        neither cue.
    """
    floor = check_floor(auc_floor)
    a_y, a_s = np.asarray(a_y, dtype=float), np.asarray(a_s, dtype=float)
    flags, reasons = dict.fromkeys(FLAGS, False), []

    def flag(name: str, reason: str | None) -> None:
        if reason:
            flags[name] = True
            reasons.append(reason)

    undefined = int((~np.isfinite(a_y) | ~np.isfinite(a_s)).sum())
    flag("degenerate", undefined and f"{undefined} model(s) with an undefined AUC (constant scores)")
    constant = int(((a_y == 0.5) & (a_s == 0.5)).sum())
    flag("degenerate", constant and f"{constant} model(s) rank by neither cue (A_y = A_s = 0.5: constant scores)")
    for arrangement, chosen in (details or {}).items():
        edge = at_edge(chosen.get("C"), Cs)
        flag("c_at_edge", edge and f"{arrangement}: {edge_reason('C', chosen['C'], edge, Cs)}")
        edge = at_edge(chosen.get("lr"), lrs)
        flag("lr_at_edge", edge and f"{arrangement}: {edge_reason('lr', chosen['lr'], edge, lrs)}")
        best = [b for b in chosen.get("best_epochs", []) if epochs and epochs >= 2 and b in (1, epochs)]
        flag("epochs_at_edge", best and f"{arrangement}: {len(best)} model(s) with the best epoch at an end of "
                                        f"1..{epochs}")
    flag("not_converged", not_converged and f"{not_converged} probe fit(s) did not converge")
    learned = np.maximum(a_y, a_s)
    if np.isfinite(learned).any():
        mean = float(np.nanmean(learned))
        flag("weak_task", mean < floor and f"the models' mean max(A_y, A_s) {mean:.3f} is below the floor {floor:g}")
    return Diagnosis(flags=flags, reasons=tuple(reasons), auc_floor=floor)


def excluded_cells(table: pd.DataFrame) -> pd.Series | None:
    """Per row, whether a flag of :data:`EXCLUDING_FLAGS` is set; None when the table has no flag columns."""
    columns = [f"flag_{name}" for name in EXCLUDING_FLAGS]
    if not all(c in table.columns for c in columns):
        return None
    return table[columns].fillna(False).astype(bool).any(axis=1)


def flag_counts(source) -> dict[str, int]:
    """Cells per flag (and ``flagged``, ``cells``) of a table with the flag columns, or of diagnoses/records."""
    if isinstance(source, pd.DataFrame):
        missing = [c for c in (*FLAG_COLUMNS, "flagged") if c not in source.columns]
        if missing:
            raise UserError(f"the table has no {missing[0]!r} column; collect it again with this version of "
                            "`biastransfer collect`.")
        counts = {name: int(source[f"flag_{name}"].astype(bool).sum()) for name in FLAGS}
        return {**counts, "flagged": int(source["flagged"].astype(bool).sum()), "cells": len(source)}
    items = list(source)
    diagnoses = [item if isinstance(item, Diagnosis) else _from_dict(item) for item in items]
    counts = {name: sum(bool(d.flags[name]) for d in diagnoses) for name in FLAGS}
    return {**counts, "flagged": sum(d.flagged for d in diagnoses), "cells": len(diagnoses)}


def _from_dict(item: Mapping) -> Diagnosis:
    entry = item.get("diagnosis", item) if isinstance(item, Mapping) else None
    if not isinstance(entry, Mapping) or "flags" not in entry:
        raise UserError("a record has no diagnosis; write it with this version of the runner or collect it.")
    return Diagnosis(flags={k: bool(entry["flags"].get(k, False)) for k in FLAGS},
                     reasons=tuple(entry.get("reasons", ())), auc_floor=entry.get("auc_floor", DEFAULT_AUC_FLOOR))


def format_counts(counts: Mapping[str, int], *, what: str = "cells") -> str:
    """One line: ``flags (of 40 cells): degenerate 2, c_at_edge 0, ...; 5 cells flagged``."""
    parts = ", ".join(f"{name} {counts.get(name, 0)}" for name in FLAGS)
    return f"flags (of {counts.get('cells', 0)} {what}): {parts}; {counts.get('flagged', 0)} {what} flagged"


_EDGE = re.compile(r"\b(C|lr) = ([-+0-9.eE]+) is the (smallest|largest) of the grid (\[[^\]]*\])")


def edge_summary(table: pd.DataFrame, *, what: str = "cells") -> list[str]:
    """One line per (hyperparameter, grid end) the table's cells chose: how many, the grid, and the side
    to widen it on (read from each cell's ``diagnosis`` text), e.g. ``"c_at_edge: 37 cells chose C = 100,
    the largest of the grid [...]: widen it above 100"``."""
    if "diagnosis" not in table.columns:
        return []
    found: dict = {}
    for text in table["diagnosis"].dropna().astype(str):
        for name, value, edge, grid in set(_EDGE.findall(text)):
            key = (name, value, edge, grid)
            found[key] = found.get(key, 0) + 1
    lines = []
    for (name, value, edge, grid), count in sorted(found.items(), key=lambda item: -item[1]):
        flag = "c_at_edge" if name == "C" else "lr_at_edge"
        interior = ("; a 2-value grid has no interior value, so add one" if grid.count(",") == 1 else "")
        lines.append(f"{flag}: {count} {what} chose {name} = {value}, the {edge} of the grid {grid}: widen it "
                     f"{'above' if edge == 'largest' else 'below'} {value}{interior}.")
    return lines


def describe_flags(diagnoses: Iterable) -> str:
    """:func:`format_counts` of :func:`flag_counts` (records, diagnoses or a table)."""
    return format_counts(flag_counts(diagnoses))


__all__ = ["DEFAULT_AUC_FLOOR", "Diagnosis", "EXCLUDING_FLAGS", "FLAGS", "FLAG_COLUMNS", "at_edge", "check_floor", "degenerate_reasons",
           "describe_flags", "diagnose_record", "edge_reason", "edge_summary", "diagnose_salience", "excluded_cells", "flag_counts", "format_counts", "weak_reason"]
