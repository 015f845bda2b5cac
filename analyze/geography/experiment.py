"""The geographic-representation experiment: bases x domain-mix shares, and its finding.

Wang & Russakovsky finetune a base pretrained on geographically diverse images (GeoDE) and
a size-matched ImageNet base on mixes of Dollar Street and COCO (share of Dollar Street 0,
0.1, ..., 1; n = 128; several seeds) and score top-5 accuracy on held-out Dollar Street
images (overall and per income bucket) and macro AP on COCO. Their finding (R8): the
diverse base with only 10% Dollar Street data reaches an accuracy that the ImageNet base
needs a much larger share to reach, and the reverse on COCO.

Here every base is a set of feature stores (one per source, same backbone) and every cell a
:class:`analyze.subsets.DomainMix` fitted as multi-label probes by the sweep's ``domain_mix``
runner (:mod:`analyze.runners.domain_mix`, :func:`analyze.geography.grid.run_geography_grid`).
:func:`summarize` gives the mean and replicate interval over seeds of each metric per base and
share; :func:`share_to_match` states the finding: the reference base's mean at a small share of
a source (default 0.1), and the smallest share at which the other base's mean reaches it.
:func:`conclude` is the one ending of every geography run (the grid, ``biastransfer
geography`` and the avatar experiment): summary, the two findings, the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.probe.multilabel import summarize_over_seeds
from extract.errors import UserError
from extract.io import write_text

DEFAULT_SHARES = tuple(round(0.1 * i, 1) for i in range(11))
FINDING_COLUMNS = ("metric", "base", "other", "at_share", "reference", "reference_low", "reference_high",
                   "other_at_same_share", "other_low", "other_high", "share_needed", "status")


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% replicate interval over seeds of every domain-mix metric, per base and share."""
    mix = table[table["spec_kind"] == "domain_mix"]
    if mix.empty:
        raise UserError("the table has no domain-mix cells; run `biastransfer geography` first.")
    metrics = [c for c in mix.columns if c.startswith(("top", "macro_ap_")) and mix[c].notna().any()]
    return summarize_over_seeds(mix, metrics, by=["backbone", "n", "share"])


def share_to_match(summary: pd.DataFrame, *, metric: str, base: str, other: str, at_share: float = 0.1,
                   source_index: int = 0) -> dict:
    """How much more of a source ``other`` needs to reach ``base``'s level at ``at_share``.

    Parameters
    ----------
    summary : DataFrame
        From :func:`summarize`.
    metric : str
        E.g. ``top5_accuracy_dollarstreet`` or ``macro_ap_coco``.
    base, other : str
        The reference base (expected to need less of the source) and the other base.
    at_share : float, default 0.1
        Share of the evaluated source in the reference base's finetuning set.
    source_index : {0, 1}
        Which source the shares count: 0 for ``sources[0]`` (the table's ``share``), 1 for
        ``sources[1]`` (``1 - share``).

    Returns
    -------
    dict
        ``metric``, ``base``, ``other``, ``at_share``, ``reference`` (and its ``reference_low``
        / ``reference_high`` interval), ``other_at_same_share`` (and interval),
        ``share_needed`` (smallest share at which ``other``'s mean reaches the reference; None
        when none does) and ``status``: ``"holds"`` (``other`` needs a larger share and the
        two intervals at ``at_share`` are disjoint), ``"holds (overlapping intervals)"`` or
        ``"does not hold"``.
    """
    rows = summary[summary["metric"] == metric].copy()
    if rows.empty:
        raise UserError(f"the summary has no metric {metric!r}; choose one of {sorted(summary['metric'].unique())}.")
    rows["source_share"] = rows["share"] if source_index == 0 else (1.0 - rows["share"]).round(10)
    mine = rows[(rows["backbone"] == base) & np.isclose(rows["source_share"], at_share)]
    theirs = rows[rows["backbone"] == other].sort_values("source_share")
    if mine.empty or theirs.empty:
        raise UserError(f"the summary lacks {base!r} at share {at_share} or any share of {other!r} for {metric}; "
                        "run both bases over the same shares.")
    reference = mine.iloc[0]
    same = theirs[np.isclose(theirs["source_share"], at_share)]
    reached = theirs[theirs["mean"] >= reference["mean"]]
    needed = float(reached["source_share"].iloc[0]) if len(reached) else None
    larger = needed is None or needed > at_share + 1e-9
    disjoint = bool(len(same)) and float(reference["low"]) > float(same["high"].iloc[0])
    status = ("holds" if disjoint else "holds (overlapping intervals)") if larger else "does not hold"
    return {"metric": metric, "base": base, "other": other, "at_share": at_share,
            "reference": float(reference["mean"]), "reference_low": float(reference["low"]),
            "reference_high": float(reference["high"]),
            "other_at_same_share": float(same["mean"].iloc[0]) if len(same) else None,
            "other_low": float(same["low"].iloc[0]) if len(same) else None,
            "other_high": float(same["high"].iloc[0]) if len(same) else None,
            "share_needed": needed, "status": status}


def finding_sentence(result: dict) -> str:
    """One sentence stating a :func:`share_to_match` result."""
    needed = ("does not reach it at any share" if result["share_needed"] is None
              else f"needs a share of {result['share_needed']:.2f} to reach it")
    other = result["other_at_same_share"]
    at_same = "" if other is None else f" (at {result['at_share']:.2f} it has {other:.3f})"
    return (f"{result['metric']}: {result['base']} with a share of {result['at_share']:.2f} reaches "
            f"{result['reference']:.3f} [{result['reference_low']:.3f}, {result['reference_high']:.3f}]; "
            f"{result['other']} {needed}{at_same}: {result['status']}.")


def summary_markdown(summary: pd.DataFrame, findings: Sequence[dict], *, metrics: Sequence[str]) -> str:
    """A Markdown page: the findings, then one table per metric (bases as columns, shares as rows)."""
    lines = ["# Geographic representation: domain-mix finetuning", "", "## Findings", ""]
    lines += [f"- {finding_sentence(f)}" for f in findings] + [""]
    for metric in metrics:
        rows = summary[summary["metric"] == metric]
        if rows.empty:
            continue
        cell = rows.assign(text=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                 zip(rows["mean"], rows["low"], rows["high"])])
        wide = cell.pivot_table(index="share", columns="backbone", values="text", aggfunc="first")
        lines += [f"## {metric} (mean [95% interval over seeds])", "",
                  "| share | " + " | ".join(wide.columns) + " |", "|---|" + "---|" * len(wide.columns)]
        lines += [f"| {share:.2f} | " + " | ".join(str(v) for v in wide.loc[share]) + " |" for share in wide.index]
        lines.append("")
    return "\n".join(lines)


def write_summary(summary: pd.DataFrame, findings: Sequence[dict], out_dir: str | Path, *,
                  metrics: Sequence[str]) -> dict[str, Path]:
    """Write ``summary.csv``, ``findings.csv`` and ``summary.md`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    paths = {"summary": out_dir / "summary.csv", "findings": out_dir / "findings.csv",
             "markdown": out_dir / "summary.md"}
    write_text(paths["summary"], summary.to_csv(index=False))
    # with the header even when empty (one base: no finding), so readers see "no finding", not an empty file
    write_text(paths["findings"], pd.DataFrame(list(findings), columns=list(FINDING_COLUMNS)).to_csv(index=False))
    write_text(paths["markdown"], summary_markdown(summary, findings, metrics=metrics))
    return paths


def conclude(table: pd.DataFrame, out: str | Path, *, names: Sequence[str], reference: str | None,
             at_share: float, metrics: tuple[str, str], shown: Sequence[str] | None = None) -> dict:
    """Summarise ``table``, state the finding both ways and write the summary files into ``out``.

    Parameters
    ----------
    table : DataFrame
        The collected domain-mix records of the bases ``names`` (one ``n``).
    out : path
        Folder of ``summary.csv``, ``findings.csv`` and ``summary.md``.
    names : sequence of str
        The bases, in the grid's order; with fewer than two there is no finding.
    reference : str, optional
        The base expected to need less of the first source (default: the first of ``names``).
    at_share : float
        Share at which the finding compares the bases.
    metrics : (str, str)
        The metric of the first source (``reference`` is the base of its finding) and of the
        second (the other base is), e.g. ``top5_accuracy_dollarstreet``, ``macro_ap_coco``.
    shown : sequence of str, optional
        Metrics tabulated in ``summary.md`` (default ``metrics``).

    Returns
    -------
    dict
        ``summary``, ``findings`` (two :func:`share_to_match` results, or none) and ``paths``.
    """
    summary = summarize(table)
    findings = []
    if len(names) >= 2:
        reference = reference or names[0]
        other = next(n for n in names if n != reference)
        findings = [share_to_match(summary, metric=metrics[0], base=reference, other=other, at_share=at_share),
                    share_to_match(summary, metric=metrics[1], base=other, other=reference, at_share=at_share,
                                   source_index=1)]
    paths = write_summary(summary, findings, out, metrics=list(shown or metrics))
    return {"summary": summary, "findings": findings, "paths": paths}


__all__ = ["DEFAULT_SHARES", "conclude", "finding_sentence", "share_to_match", "summarize", "summary_markdown",
           "write_summary"]
