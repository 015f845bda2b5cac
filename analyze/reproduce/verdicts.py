"""The rules that turn a finding's numbers into a verdict: reproduced, contradicted or inconclusive.

A verdict is computed from an estimate and its interval, never asserted. Every rule returns
a :class:`Verdict` with the words of the rule and, where the verdict is not "reproduced", the
reason. Three words (``docs/science.md``, "Reproducing the papers' findings"):

``reproduced``
    The interval lies entirely on the paper's side (of 0, or of the bound the finding's rule
    names).
``contradicted``
    The interval lies entirely on the opposite side.
``inconclusive``
    Anything else, with the reason: the interval covers 0 (or the bound), too few clean
    replicates to give an interval, models below the AUC floor, cells left out by the
    diagnosis, or a design that does not identify the term. An interval that covers both 0
    and the paper's effect is never a refutation.

Generic rules: :func:`all_above_zero` (a difference against every comparison lies above 0),
:func:`sign_rule` (a coefficient's interval lies on the expected side of 0) and
:func:`at_least` (an estimate reaches a floor and its interval lies above 0). The rules of
W&R's findings 3 and 4, as the paper measured them, are :func:`shrink_rule` (the biased -
control difference shrinks with n and its remainder is equivalent to 0 within the controls'
spread, two one-sided tests) and :func:`cut_rule` (20% -> 30% minority share cuts the gap by
at least a quarter, about a third or more at the point estimate, at an AUC change within
+-0.02).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
CUT_FLOOR = 0.25        # finding 4: the cut's interval must lie above a quarter of the gap ...
CUT_POINT = 0.35        # ... and its point estimate reach about a third ("almost half" in the summaries)
AUC_TOLERANCE = 0.02    # ... at an AUC change within +-0.02

__all__ = [
    "AUC_TOLERANCE",
    "CONTRADICTED",
    "CUT_FLOOR",
    "CUT_POINT",
    "INCONCLUSIVE",
    "REPRODUCED",
    "VERDICTS",
    "Verdict",
    "all_above_zero",
    "at_least",
    "cut_rule",
    "finite",
    "inconclusive",
    "shrink_rule",
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
    """The verdict when the data cannot decide (missing, too few, flagged, below the AUC floor, covering 0)."""
    return Verdict(INCONCLUSIVE, rule, reason)


def all_above_zero(differences: Sequence[tuple[str, float, float, float]], *, what: str = "difference") -> Verdict:
    """Reproduced when every ``(label, estimate, low, high)`` interval lies above 0.

    Contradicted when some interval lies entirely below 0; inconclusive when an interval is
    missing (fewer than two replicates) or one covers 0 and none lies below it.
    """
    rule = f"every {what}'s interval lies above 0"
    if not differences:
        return inconclusive(rule, f"no {what} could be computed (a side is missing)")
    missing = [label for label, _, low, high in differences if not finite(low, high)]
    if missing:
        return inconclusive(rule, f"no interval for {', '.join(missing)} (fewer than two replicates)")
    below = [d for d in differences if d[3] < 0]
    if below:
        words = "; ".join(f"{label}: {_num(est)} {_ci(low, high)}" for label, est, low, high in below)
        return Verdict(CONTRADICTED, rule, f"interval entirely below 0 for {words}")
    covering = [d for d in differences if not d[2] > 0]
    if covering:
        words = "; ".join(f"{label}: {_num(est)} {_ci(low, high)}" for label, est, low, high in covering)
        return inconclusive(rule, f"the interval covers 0 for {words}")
    return Verdict(REPRODUCED, rule)


def sign_rule(estimate: float, low: float, high: float, *, expected: int, term: str) -> Verdict:
    """Reproduced when the interval of ``term`` lies on the side of ``expected`` (+1 or -1), contradicted
    when it lies on the other side, inconclusive when it covers 0."""
    if expected not in (1, -1):
        raise ValueError("expected must be +1 or -1")
    side = "above" if expected > 0 else "below"
    rule = f"the interval of {term} lies {side} 0"
    if not finite(estimate, low, high):
        return inconclusive(rule, f"{term} has no estimate or interval")
    if (low > 0) if expected > 0 else (high < 0):
        return Verdict(REPRODUCED, rule)
    words = f"{term} = {_num(estimate)} {_ci(low, high)}"
    if (high < 0) if expected > 0 else (low > 0):
        return Verdict(CONTRADICTED, rule, f"{words}: its interval lies {'below' if expected > 0 else 'above'} 0")
    return inconclusive(rule, f"{words}: its interval covers 0")


def at_least(estimate: float, low: float, high: float, *, floor: float, what: str) -> Verdict:
    """Reproduced when ``estimate >= floor`` and its interval lies above 0; contradicted when the
    whole interval lies below ``floor``; inconclusive otherwise."""
    rule = f"{what} >= {floor:g} and its interval lies above 0"
    if not finite(estimate, low, high):
        return inconclusive(rule, f"{what} has no estimate or interval (too few values)")
    words = f"{what} = {_num(estimate)} {_ci(low, high)}"
    if high < floor:
        return Verdict(CONTRADICTED, rule, f"{words}: the whole interval lies below {floor:g}")
    if estimate >= floor and low > 0:
        return Verdict(REPRODUCED, rule)
    return inconclusive(rule, f"{words}: " + ("below the floor" if estimate < floor else "its interval covers 0"))


def shrink_rule(first: tuple[float, float, float], shrink: tuple[float, float, float],
                last90: tuple[float, float, float], *, margin: float) -> Verdict:
    """W&R's finding 3 (R3): the biased - control difference shrinks with n toward equivalence.

    Parameters
    ----------
    first : (estimate, low, high)
        The difference at the smallest n (95% interval); the rule is defined only when it lies
        above 0 (else there is nothing to shrink: inconclusive).
    shrink : (estimate, low, high)
        ``diff(n_min) - diff(n_max)`` with its 95% interval.
    last90 : (estimate, low, high)
        The difference at the largest n with its **90%** interval (two one-sided tests at 5%).
    margin : float
        Equivalence margin: the spread (max - min) of the controls' gaps at the largest n.

    Reproduced when shrink's interval lies above 0 and ``last90`` lies within ``+-margin``;
    contradicted only when shrink's interval lies entirely at or below 0 (no shrinking at all);
    inconclusive otherwise: a difference that remains at the largest n is not a contradiction
    (the paper's models converged near 130k images).
    """
    rule = ("the shrink diff(n_min) - diff(n_max) lies above 0 and the 90% interval of diff(n_max) lies within "
            "+-margin (the controls' spread at n_max; two one-sided tests at 5%)")
    if not finite(*first, *shrink, *last90, margin):
        return inconclusive(rule, "a difference, the shrink or the margin has no interval (missing sizes, controls "
                                  "or fewer than two replicates)")
    if not first[1] > 0:
        return inconclusive(rule, f"the difference at the smallest n {_num(first[0])} {_ci(first[1], first[2])} "
                                  "does not lie above 0, so there is nothing to shrink")
    words = f"shrink {_num(shrink[0])} {_ci(shrink[1], shrink[2])}"
    if shrink[2] <= 0:
        return Verdict(CONTRADICTED, rule, f"{words}: the difference does not shrink at all")
    equivalent = -margin < last90[1] and last90[2] < margin
    if shrink[1] > 0 and equivalent:
        return Verdict(REPRODUCED, rule, f"{words}; diff(n_max) {_num(last90[0])}, 90% "
                                         f"{_ci(last90[1], last90[2])} within +-{_num(margin)}")
    problems = [] if shrink[1] > 0 else [f"{words} covers 0"]
    if not equivalent:
        problems.append(f"diff(n_max) {_num(last90[0])}, 90% {_ci(last90[1], last90[2])} is not within "
                        f"+-{_num(margin)} (a remaining difference, not a contradiction: the paper converged "
                        "near 130k images)")
    return inconclusive(rule, "; ".join(problems))


def cut_rule(gap_before: tuple[float, float, float], cut: tuple[float, float, float],
             auc_change: tuple[float, float, float], *, floor: float = CUT_FLOOR, point: float = CUT_POINT,
             tolerance: float = AUC_TOLERANCE) -> Verdict:
    """W&R's finding 4 (R4): 20% -> 30% minority share among positives cuts the gap cheaply.

    Parameters
    ----------
    gap_before : (estimate, low, high)
        The gap at 20%; the cut is defined only when its interval lies above 0.
    cut : (estimate, low, high)
        ``1 - gap30 / gap20`` with an interval that carries both gaps' uncertainty (a bootstrap
        over seeds, and targets where pooled).
    auc_change : (estimate, low, high)
        ``AUC(30%) - AUC(20%)`` with its interval.
    floor, point, tolerance : float
        The cut's interval must lie above ``floor`` with a point estimate >= ``point``, and the
        AUC change's interval within ``+-tolerance``.

    Contradicted when the cut's interval lies below ``floor`` or the AUC change's interval lies
    entirely below ``-tolerance``; inconclusive otherwise.
    """
    rule = (f"the cut 1 - gap30/gap20 lies above {floor:g} with a point estimate >= {point:g}, and the AUC change's "
            f"interval lies within +-{tolerance:g}")
    if not finite(*gap_before, *cut, *auc_change):
        return inconclusive(rule, "a gap, the cut or the AUC change has no interval (missing cells or fewer than two "
                                  "replicates)")
    if not gap_before[1] > 0:
        return inconclusive(rule, f"the gap at 20% {_num(gap_before[0])} {_ci(gap_before[1], gap_before[2])} does "
                                  "not lie above 0, so there is no bias to cut")
    cut_words = f"cut {_num(cut[0])} {_ci(cut[1], cut[2])}"
    auc_words = f"AUC change {_num(auc_change[0])} {_ci(auc_change[1], auc_change[2])}"
    if cut[2] < floor or auc_change[2] < -tolerance:
        return Verdict(CONTRADICTED, rule, f"{cut_words}; {auc_words}")
    if cut[1] > floor and cut[0] >= point and -tolerance < auc_change[1] and auc_change[2] < tolerance:
        return Verdict(REPRODUCED, rule, f"{cut_words}; {auc_words}")
    return inconclusive(rule, f"{cut_words}; {auc_words}: neither inside the rule nor entirely outside it")
