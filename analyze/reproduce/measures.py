"""W&R's measurements as the paper's analysis code computes them (digest sections 3-6 and 12).

Pure functions of arrays or small tables; the findings (:mod:`analyze.reproduce.claims`) read
them. Sign conventions, with ``y`` the target and ``s`` the sensitive attribute (0/1):

- :func:`orientation` is ``sign(P(s=1 | y=1) - P(s=1))`` over **all** images of the dataset
  (``regress.py``: ``skew > fem_num``); a natural row's gap is multiplied by it so that positive
  means stereotype-consistent. A skewz row puts the fixed group ``s = 1`` (here ``dark_skin``)
  at 80% of the positives, so its gap is ``FPR(s=1) - FPR(s=0)`` unoriented.
- :func:`paper_skew`: ``|P(s=1 | y=1) - P(s=1)|`` over the dataset (natural) and
  ``|0.8 - P(s=1)|`` (skewz).
- :func:`paper_value`: ``Value = v_biased / max control v`` with ``regress.py``'s clipping,
  the difference beside it and a note where the ratio means little.
- :func:`validation_threshold_gaps`: finding 4's measurement (``vary_corr.py``): threshold
  from the run's validation set (top-P there), applied to the test set resampled to the
  natural level (:func:`natural_test_rows`); the TPR gap is primary (the code plots it under
  the label "FPR Difference"), the FPR gap beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze.metrics.rates import confusion_by_group, roc_auc
from analyze.metrics.threshold import predict
from analyze.subsets import Skew, TestResample
from extract.errors import UserError

SKEWZ_GROUP = "dark_skin"    # the fixed group of the skewz sets (the paper: female)
SKEWZ_SHARE = 0.8            # its share of the positives, and the other group's share of the negatives
SMALL_CONTROL = 0.01         # |max control v| below this makes Value's ratio meaningless
COMPETENCE_GAP = 0.05        # two bases' AUCs further apart than this: a competence caveat
CONDITIONS = ("natural", "skewz")

__all__ = ["COMPETENCE_GAP", "CONDITIONS", "SKEWZ_GROUP", "SKEWZ_SHARE", "SMALL_CONTROL", "PaperValue",
           "competence_note", "natural_test_rows", "orientation", "oriented_column", "paper_condition", "paper_gap",
           "paper_gap_column", "paper_skew", "paper_value", "skewz_spec", "target_table", "validation_threshold_gaps"]


def _binary(name: str, values) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or not np.isin(values, (0, 1)).all():
        raise UserError(f"`{name}` must be a 1-D array of 0/1 values; drop the rows with unknown labels first.")
    return values.astype(np.int8)


def orientation(y, s) -> int:
    """``sign(P(s=1 | y=1) - P(s=1))`` over the rows given (pass every image of the dataset): +1, -1 or 0."""
    y, s = _binary("y", y), _binary("s", s)
    if not y.any():
        raise UserError("`y` has no positive row, so P(s=1 | y=1) is undefined; choose another target.")
    return int(np.sign(s[y == 1].mean() - s.mean()))


def paper_skew(y, s, *, condition: str, share: float = SKEWZ_SHARE) -> float:
    """W&R's Skew: ``|P(s=1 | y=1) - P(s=1)|`` over the dataset (natural), ``|share - P(s=1)|`` (skewz)."""
    s = _binary("s", s)
    if condition == "skewz":
        return abs(share - float(s.mean()))
    if condition != "natural":
        raise UserError(f"`condition` must be one of {CONDITIONS}, got {condition!r}.")
    y = _binary("y", y)
    return abs(float(s[y == 1].mean()) - float(s.mean()))


def skewz_spec(target: str, sensitive: str = SKEWZ_GROUP, *, n: int | None = None, seed: int = 0,
               pool: str = "train") -> Skew:
    """The paper's skewz set: ``sensitive = 1`` at 80% of the positives and 20% of the negatives.

    The same fixed group for every target, as the paper's female group (digest 3.4): targets
    naturally associated with the other group are reversed.
    """
    return Skew(target, sensitive, p=SKEWZ_SHARE, n=n, seed=seed, pool=pool)


def paper_gap(y_true, y_pred, s, *, condition: str, sign: int, rate: str = "fpr") -> tuple[float, float]:
    """``(oriented, raw)`` gap of ``rate`` ("fpr" or "tpr"): raw = rate(s=1) - rate(s=0).

    Natural rows: oriented = ``sign`` (:func:`orientation`) x raw; skewz rows: oriented = raw
    (the fixed group ``s = 1`` is over-represented among the positives).
    """
    if rate not in ("fpr", "tpr"):
        raise UserError(f"`rate` must be 'fpr' or 'tpr', got {rate!r}.")
    if condition not in CONDITIONS:
        raise UserError(f"`condition` must be one of {CONDITIONS}, got {condition!r}.")
    counts = confusion_by_group(_binary("y_true", y_true), np.asarray(y_pred, dtype=bool), _binary("s", s))
    values = np.asarray(getattr(counts, rate), dtype=float)
    raw = float(values[..., 1] - values[..., 0])
    return (raw if condition == "skewz" else float(sign) * raw), raw


def oriented_column(table: pd.DataFrame, column: str) -> pd.Series:
    """A collected raw ``rate(s=1) - rate(s=0)`` column signed by ``natural_over_represented_group``."""
    for name in (column, "natural_over_represented_group"):
        if name not in table.columns:
            raise UserError(f"the table has no {name!r} column; pass the table `biastransfer collect` wrote.")
    group = pd.to_numeric(table["natural_over_represented_group"], errors="coerce")
    return table[column].astype(float) * group.map({1.0: 1.0, 0.0: -1.0})


@dataclass(frozen=True)
class PaperValue:
    """One row's ``Value`` (clipped as ``regress.py``), ``difference = v_biased - max control v`` and a note."""

    value: float
    difference: float
    control_max: float
    note: str = ""


def paper_value(v_biased: float, v_controls) -> PaperValue:
    """``Value = v_biased / max control v``; 0 when v_biased < 0 < max, 5 when v_biased > 0 > max.

    Rows where both are negative (a ratio of two anti-stereotypical gaps) or where
    ``|max control v| < 0.01`` (a ratio near a division by 0) keep the ratio, as the paper,
    and say so in ``note``; the difference is reported beside every Value.
    """
    v_controls = np.asarray(v_controls, dtype=float)
    if v_controls.size == 0 or not np.isfinite(v_controls).all() or not np.isfinite(v_biased):
        raise UserError("`v_biased` and `v_controls` must be finite numbers, with at least one control.")
    top = float(v_controls.max())
    value = v_biased / top if top != 0 else float("nan")
    notes = []
    if v_biased < 0 < top:
        value = 0.0
    elif v_biased > 0 > top:
        value = 5.0
    elif v_biased < 0 and top < 0:
        notes.append("both gaps negative: Value is a ratio of two anti-stereotypical gaps")
    if abs(top) < SMALL_CONTROL:
        notes.append(f"|max control v| = {abs(top):.4f} < {SMALL_CONTROL:g}: the ratio is unstable")
    return PaperValue(float(value), float(v_biased - top), top, "; ".join(notes))


def natural_test_rows(meta: pd.DataFrame, target: str, sensitive: str, *, seed: int = 0) -> np.ndarray:
    """Test rows resampled to the natural level (50% positives, 50% per group, the dataset's
    ``P(s=1 | y=1)`` over all images), as ``vary_corr.py`` resamples each run's test set."""
    return TestResample(target, sensitive, level=None, seed=seed, natural_pool="all").indices(meta)


def validation_threshold_gaps(test: tuple, val: tuple, *, sign: int) -> dict:
    """Finding 4's gaps: top-P threshold on the run's validation set, applied to the test rows.

    Parameters
    ----------
    test : (y, s, scores)
        The (resampled, :func:`natural_test_rows`) test rows.
    val : (y, scores)
        The run's validation rows (drawn from its finetuning distribution).
    sign : int
        :func:`orientation` of the target.

    Returns
    -------
    dict with ``tpr_gap`` (oriented, primary), ``tpr_gap_raw``, ``fpr_gap``, ``fpr_gap_raw``,
    ``auc`` and ``threshold``.
    """
    y, s, scores = (np.asarray(a) for a in test)
    val_y, val_scores = (np.asarray(a) for a in val)
    y_pred, threshold = predict(np.asarray(scores, dtype=float), policy="val_top_p",
                                val_scores=np.asarray(val_scores, dtype=float), val_y_true=_binary("val y", val_y))
    tpr, tpr_raw = paper_gap(y, y_pred, s, condition="natural", sign=sign, rate="tpr")
    fpr, fpr_raw = paper_gap(y, y_pred, s, condition="natural", sign=sign, rate="fpr")
    return {"tpr_gap": tpr, "tpr_gap_raw": tpr_raw, "fpr_gap": fpr, "fpr_gap_raw": fpr_raw,
            "auc": float(roc_auc(_binary("y", y), np.asarray(scores, dtype=float))), "threshold": float(threshold)}


def competence_note(auc_a: float, auc_b: float, *, name_a: str, name_b: str, gap: float = COMPETENCE_GAP) -> str:
    """Both AUCs, and where they differ by more than ``gap`` the competence caveat in words."""
    words = f"AUC {name_a} {auc_a:.3f}, {name_b} {auc_b:.3f}"
    if not (np.isfinite(auc_a) and np.isfinite(auc_b)) or abs(auc_a - auc_b) <= gap:
        return words
    weaker = name_a if auc_a < auc_b else name_b
    return (f"{words}: they differ by more than {gap:g}, so the weaker model's ({weaker}) larger gap may be a "
            "competence effect (compare at matched AUC, e.g. the stronger base at a smaller n)")


def target_table(meta: pd.DataFrame, targets, sensitive: str, *, saliency: dict | None = None) -> pd.DataFrame:
    """Per target, over **all** images of ``meta``: ``orientation``, ``skew_natural``, ``skew_skewz``
    (:func:`orientation`, :func:`paper_skew`) and ``saliency`` where given (the paper's estimator,
    models trained from scratch on the aligned and inverted sets)."""
    rows = []
    for target in targets:
        known = (meta[target] >= 0) & (meta[sensitive] >= 0)
        y, s = meta.loc[known, target].to_numpy(), meta.loc[known, sensitive].to_numpy()
        rows.append({"target": target, "orientation": orientation(y, s),
                     "skew_natural": paper_skew(y, s, condition="natural"),
                     "skew_skewz": paper_skew(y, s, condition="skewz"),
                     "saliency": float("nan") if saliency is None else float(saliency.get(target, float("nan")))})
    return pd.DataFrame(rows).set_index("target")


def paper_condition(cells: pd.DataFrame) -> pd.Series:
    """``natural`` for natural cells, ``skewz`` for skew cells at p = 0.8, "" for every other cell."""
    kind = cells["spec_kind"].astype(str) if "spec_kind" in cells.columns else pd.Series("", index=cells.index)
    p = pd.to_numeric(cells["p"], errors="coerce") if "p" in cells.columns else pd.Series(np.nan, index=cells.index)
    return pd.Series(np.where(kind == "natural", "natural",
                              np.where((kind == "skew") & np.isclose(p, SKEWZ_SHARE), "skewz", "")), index=cells.index)


def paper_gap_column(cells: pd.DataFrame, orientations, *, column: str = "fpr_gap") -> pd.Series:
    """The gap ``regress.py`` regresses, from a collected raw ``rate(s=1) - rate(s=0)`` column.

    Natural cells: the raw gap times the target's :func:`orientation` over the dataset
    (``orientations``: target -> +1/-1); skewz cells: the raw gap (the fixed group ``s = 1`` is
    at 80% of the positives); NaN elsewhere.
    """
    if column not in cells.columns:
        raise UserError(f"the table has no {column!r} column; pass the table `biastransfer collect` wrote.")
    condition = paper_condition(cells)
    sign = cells["target"].map(dict(orientations)).astype(float)
    raw = cells[column].astype(float)
    return raw.where(condition == "skewz", (raw * sign).where(condition == "natural"))
