"""The rules that turn a finding's numbers into a verdict: reproduced, not reproduced or inconclusive.

A verdict is computed from an estimate and its interval, never asserted. Every rule returns
a :class:`Verdict` with the words of the rule and, where the verdict is not "reproduced", the
reason. The verdicts (``docs/science.md``, "Reproducing the papers' findings"):

``reproduced``
    The data are clean and the interval(s) satisfy the rule.
``not reproduced``
    The data are clean and present, and the interval(s) do not satisfy the rule (a claimed
    difference whose interval includes 0 is *not reproduced*: the data do not show it).
``inconclusive``
    The data needed are missing, too few (fewer than two replicates give no interval), left
    out by the diagnosis, or from models below the AUC floor (``weak_task``): no verdict on
    the claim can be read from them.

Rule kinds: :func:`all_above_zero` (a difference against every comparison base excludes 0
on the positive side), :func:`sign_rule` (a model coefficient's interval excludes 0 with the
expected sign), :func:`includes_zero` (an interval includes 0), :func:`reduction_rule` (the
curation rule: a cut of at least a share of the gap at an AUC cost whose interval includes 0
or stays under a bound) and :func:`at_least` (an estimate reaches a floor and its interval
excludes 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

__all__ = [
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "VERDICTS",
    "Verdict",
    "all_above_zero",
    "at_least",
    "finite",
    "includes_zero",
    "inconclusive",
    "reduction_rule",
    "sign_rule",
]


@dataclass(frozen=True)
class Verdict:
    """A verdict with the rule that decided it and the reason in words."""

    verdict: str
    rule: str
    reason: str = ""


def finite(*values) -> bool:
    """Whether every value is a finite number."""
    try:
        return all(v is not None and math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def _num(v: float) -> str:
    return f"{float(v):.3f}" if finite(v) else "nan"


def _ci(low: float, high: float) -> str:
    return f"[{_num(low)}, {_num(high)}]"


def inconclusive(rule: str, reason: str) -> Verdict:
    """The verdict when the data cannot decide (missing, too few, flagged or below the AUC floor)."""
    return Verdict(INCONCLUSIVE, rule, reason)


def all_above_zero(differences: Sequence[tuple[str, float, float, float]], *, what: str = "difference") -> Verdict:
    """Reproduced when every ``(label, estimate, low, high)`` interval lies above 0.

    An interval that is missing (fewer than two replicates) makes the verdict inconclusive;
    one that includes or lies below 0 makes it not reproduced.
    """
    rule = f"every {what}'s interval lies above 0"
    if not differences:
        return inconclusive(rule, f"no {what} could be computed (a side is missing)")
    missing = [label for label, _, low, high in differences if not finite(low, high)]
    if missing:
        return inconclusive(rule, f"no interval for {', '.join(missing)} (fewer than two replicates)")
    failing = [(label, est, low, high) for label, est, low, high in differences if not low > 0]
    if failing:
        words = "; ".join(f"{label}: {_num(est)} {_ci(low, high)}" for label, est, low, high in failing)
        return Verdict(NOT_REPRODUCED, rule, f"interval not above 0 for {words}")
    return Verdict(REPRODUCED, rule)


def sign_rule(estimate: float, low: float, high: float, *, expected: int, term: str) -> Verdict:
    """Reproduced when the interval of ``term`` excludes 0 on the side of ``expected`` (+1 or -1)."""
    if expected not in (1, -1):
        raise ValueError("expected must be +1 or -1")
    side = "above" if expected > 0 else "below"
    rule = f"the interval of {term} lies {side} 0"
    if not finite(estimate, low, high):
        return inconclusive(rule, f"{term} has no estimate or interval")
    ok = low > 0 if expected > 0 else high < 0
    if ok:
        return Verdict(REPRODUCED, rule)
    where = "includes 0" if low <= 0 <= high else f"lies {'below' if expected > 0 else 'above'} 0"
    return Verdict(NOT_REPRODUCED, rule, f"{term} = {_num(estimate)} {_ci(low, high)}: its interval {where}")


def includes_zero(estimate: float, low: float, high: float, *, what: str) -> Verdict:
    """Reproduced when the interval of ``what`` includes 0 (the base stops mattering)."""
    rule = f"the interval of {what} includes 0"
    if not finite(estimate, low, high):
        return inconclusive(rule, f"{what} has no interval (fewer than two replicates)")
    if low <= 0 <= high:
        return Verdict(REPRODUCED, rule)
    return Verdict(NOT_REPRODUCED, rule, f"{what} = {_num(estimate)} {_ci(low, high)} excludes 0")


def reduction_rule(gap: tuple[float, float, float], cut: tuple[float, float, float],
                   cost: tuple[float, float, float], *, min_share: float = 0.4, max_cost: float = 0.02) -> Verdict:
    """The curation rule.

    Parameters
    ----------
    gap : (estimate, low, high)
        The gap before curation; its interval must lie above 0 (else there is no gap to cut:
        inconclusive).
    cut : (estimate, low, high)
        The gap before minus the gap after (paired by seed where the rows match).
    cost : (estimate, low, high)
        AUC before minus AUC after.
    min_share : float
        The cut must be at least this share of the gap before (point estimates).
    max_cost : float
        The AUC cost's interval must include 0 or its upper bound stay under this.
    """
    rule = (f"the cut is at least {min_share:.0%} of the gap before curation, and the AUC cost's interval includes 0 "
            f"or stays under {max_cost:g}")
    if not finite(*gap, *cut, *cost):
        return inconclusive(rule, "a gap, cut or AUC cost has no interval (missing cells or fewer than two replicates)")
    if not gap[1] > 0:
        return inconclusive(rule, f"the gap before curation {_num(gap[0])} {_ci(gap[1], gap[2])} does not lie above 0, "
                                  "so there is no bias to cut")
    share = cut[0] / gap[0]
    cheap = cost[1] <= 0 <= cost[2] or cost[2] < max_cost
    problems = []
    if share < min_share:
        problems.append(f"the cut is {share:.0%} of the gap (< {min_share:.0%})")
    if not cheap:
        problems.append(f"the AUC cost {_num(cost[0])} {_ci(cost[1], cost[2])} excludes 0 and reaches {max_cost:g}")
    if problems:
        return Verdict(NOT_REPRODUCED, rule, "; ".join(problems))
    return Verdict(REPRODUCED, rule)


def at_least(estimate: float, low: float, high: float, *, floor: float, what: str) -> Verdict:
    """Reproduced when ``estimate >= floor`` and its interval lies above 0."""
    rule = f"{what} >= {floor:g} and its interval lies above 0"
    if not finite(estimate, low, high):
        return inconclusive(rule, f"{what} has no estimate or interval (too few values)")
    problems = []
    if estimate < floor:
        problems.append(f"{what} = {_num(estimate)} < {floor:g}")
    if not low > 0:
        problems.append(f"its interval {_ci(low, high)} does not lie above 0")
    if problems:
        return Verdict(NOT_REPRODUCED, rule, "; ".join(problems))
    return Verdict(REPRODUCED, rule)
