"""The geographic-representation experiment: bases x domain-mix shares, and its finding.

Wang & Russakovsky finetune a base pretrained on geographically diverse images (GeoDE) and
a size-matched ImageNet base on mixes of Dollar Street and COCO (share of Dollar Street 0,
0.1, ..., 1; n = 128; several seeds) and score top-5 accuracy on held-out Dollar Street
images (overall and per income bucket) and macro AP on COCO. Their finding (R8): the
diverse base with only 10% Dollar Street data reaches an accuracy that the ImageNet base
needs a much larger share to reach, and the reverse on COCO.

Here every base is a set of feature stores (one per source, same backbone) and every cell a
:class:`analyze.subsets.DomainMix` fitted as multi-label probes
(:func:`analyze.probe.multilabel.run_domain_mix_cells`). :func:`summarize` gives the mean and
replicate interval over seeds of each metric per base and share; :func:`share_to_match`
states the finding: the reference base's mean at a small share of a source (default 0.1),
and the smallest share at which the other base's mean reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.probe.engine import DEFAULT_CS
from analyze.probe.multilabel import (
    DEFAULT_GROUP_PREFIXES,
    run_domain_mix_cells,
    summarize_over_seeds,
)
from analyze.results import collect
from analyze.subsets import DomainMix
from extract.errors import UserError
from extract.io import write_text

DEFAULT_SHARES = tuple(round(0.1 * i, 1) for i in range(11))
FINDING_COLUMNS = ("metric", "base", "other", "at_share", "reference", "reference_low", "reference_high",
                   "other_at_same_share", "other_low", "other_high", "share_needed", "status")


def run_cells(stores: Mapping[str, Mapping], *, sources: tuple[str, str], classes: Sequence[str],
              shares: Sequence[float] = DEFAULT_SHARES, n: int = 128, seeds: Sequence[int] = range(5), k: int = 5,
              out: str | Path, size: int | None = None, group_prefixes: Sequence[str] = DEFAULT_GROUP_PREFIXES, Cs=DEFAULT_CS,
              select: str = "val_loss", device: str = "cpu", n_jobs: int = 1, test="split",
              annotations: Mapping[str, Mapping] | None = None, skip_existing: bool = True, pool: str = "train",
              val_fraction: float = 0.2) -> pd.DataFrame:
    """Run every (base, share, seed) cell and return the collected table of ``out``.

    Parameters
    ----------
    stores : mapping of base name -> (mapping of source name -> FeatureStore)
        For every base, its feature store of each source.
    sources : (str, str)
        The two sources; ``share`` is the share of ``sources[0]``.
    classes : sequence of str
        The multi-label target set (columns of every store).
    shares, n, seeds, k
        The grid: shares of ``sources[0]``, training rows, replicate seeds, top-k's k.
    out : path
        Results folder (one JSON record per cell; cells already there are kept).
    size : int, optional
        Rows of each whole set before ``n`` training rows are kept (W&R: 165); default the
        largest set the pools support (see :class:`analyze.subsets.DomainMix`).
    group_prefixes, Cs, select, device, n_jobs, test, skip_existing
        As in :func:`analyze.probe.multilabel.run_domain_mix_cells` (``test``: which rows of
        each source are scored, ``"split"`` or ``"unused"``).
    annotations : mapping of base name -> dict, optional
        Each base's ``sweep`` annotation (``grid``, ``backbone``, ``base_kind``).
    pool, val_fraction
        As in :class:`analyze.subsets.DomainMix`.

    Returns
    -------
    DataFrame
        :func:`analyze.results.collect` of ``out``.
    """
    if not stores:
        raise UserError("no base to run; give at least one base with a store per source.")
    out = Path(out)
    for base, by_source in stores.items():
        for share in shares:  # one engine call per share: the test scores of its seeds stay small
            specs = [DomainMix(tuple(sources), float(share), n=n, seed=int(seed), targets=tuple(classes),
                               size=size, pool=pool, val_fraction=val_fraction) for seed in seeds]
            run_domain_mix_cells(by_source, specs, classes=classes, k=k, group_prefixes=group_prefixes, out=out,
                                 Cs=Cs, select=select, device=device, n_jobs=n_jobs, backbone=base, test=test,
                                 annotation=(annotations or {}).get(base), skip_existing=skip_existing)
    return collect(out)


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


__all__ = ["DEFAULT_SHARES", "finding_sentence", "run_cells", "share_to_match", "summarize", "summary_markdown",
           "write_summary"]
