"""Multi-label probes: one linear probe per class, all fitted in the batched engine.

A multi-label model here is a set of independent binary L2 logistic probes, one per class
of a target set (e.g. COCO's 80 object classes), like the sigmoid outputs of Wang &
Russakovsky's multi-label heads. Every class of one replicate shares the same training,
validation and test rows, so all classes x replicates are handed to
:func:`analyze.probe.fit_probes` as one batch of tasks that differ only in their labels; the
shared test rows are scored once for all of them (the engine's shared-test path).

A class with a single label value in a replicate's training rows (no positive image of a
rare class in 128 rows) cannot be fitted; it gets the constant score of the smoothed
training log-odds ``log((positives + 0.5) / (negatives + 0.5))`` on every row, the score
an intercept-only model would give, so it ranks low in top-k accuracy and contributes an
uninformative ranking to average precision. ``fitted`` records which classes were fitted.

:func:`run_domain_mix_cells` runs :class:`analyze.subsets.DomainMix` cells on two feature
stores of one backbone (e.g. Dollar Street and COCO): for each spec (one seed, one share)
it fits the probes on the mixed rows and writes one record with, per source, top-k
accuracy and macro average precision on that source's test split, overall and per group
of each grouping column (one-hot columns such as ``income_bucket_1``, ``income_bucket_2``,
...; rows of an unknown group are left out of the groups). :func:`summarize_over_seeds`
adds the replicate intervals (:func:`analyze.metrics.intervals.replicate_ci`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.metrics.base import UndefinedMetricWarning
from analyze.metrics.intervals import replicate_ci
from analyze.metrics.multilabel import by_group, macro_average_precision, top_k_accuracy
from analyze.probe.engine import DEFAULT_CS, ProbeTask, fit_probes
from analyze.results.records import cell_id, make_record, record_exists, write_record
from analyze.subsets.core import SubsetSplit
from extract.errors import UserError

DEFAULT_GROUP_PREFIXES = ("income_bucket_", "region_")


@dataclass(frozen=True)
class MultilabelProbes:
    """Probes of R replicates x C classes, scored on shared test rows.

    Attributes
    ----------
    scores : ndarray of shape (R, n_test, C), float32
        Log-odds of each class on each test row.
    fitted : ndarray of shape (R, C), bool
        Whether the class had both labels in the replicate's training rows (else a constant score).
    C : ndarray of shape (R, C)
        Chosen inverse regularisation strength (NaN where not fitted).
    seconds : float
        Wall time of the fit.
    """

    scores: np.ndarray
    fitted: np.ndarray
    C: np.ndarray
    seconds: float


def fit_multilabel_probes(features, labels, splits: Sequence[SubsetSplit], *, test, Cs=DEFAULT_CS,
                          select: str = "val_loss", device: str = "cpu", n_jobs: int = 1,
                          **engine_options) -> MultilabelProbes:
    """Fit one probe per (replicate, class) and score the shared test rows.

    Parameters
    ----------
    features : ndarray or torch.Tensor of shape (n_rows, d)
    labels : array-like of shape (n_rows, n_classes)
        0/1 per row and class (-1 allowed on rows no replicate uses).
    splits : sequence of SubsetSplit
        Training and validation rows of each replicate, shared by all classes.
    test : array-like of int
        Rows to score, shared by every probe.
    Cs, select, device, n_jobs, **engine_options
        Passed to :func:`analyze.probe.fit_probes`.

    Returns
    -------
    MultilabelProbes
    """
    began = time.perf_counter()
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] != len(features):
        raise UserError(f"labels must have shape (n_rows={len(features)}, n_classes), got {labels.shape}.")
    test = np.asarray(test, dtype=np.int64)
    splits = list(splits)
    if not splits:
        raise UserError("no replicate to fit; give at least one SubsetSplit.")
    n_reps, n_classes = len(splits), labels.shape[1]
    scores = np.zeros((n_reps, len(test), n_classes), np.float32)
    fitted = np.zeros((n_reps, n_classes), bool)
    chosen = np.full((n_reps, n_classes), np.nan)
    tasks, where = [], []
    columns = [np.ascontiguousarray(labels[:, c]) for c in range(n_classes)]
    for r, split in enumerate(splits):
        train = np.asarray(split.train, dtype=np.int64)
        y_train = labels[train]
        if ((y_train != 0) & (y_train != 1)).any():
            raise UserError(f"replicate {r} has training rows with an unknown (-1) label; leave them out of the set "
                            "(DomainMix(targets=...) does).")
        positives = y_train.sum(axis=0)
        for c in range(n_classes):
            if 0 < positives[c] < len(train):
                tasks.append(ProbeTask(train=train, val=np.asarray(split.val, dtype=np.int64), labels=columns[c]))
                where.append((r, c))
            else:
                scores[r, :, c] = np.log((positives[c] + 0.5) / (len(train) - positives[c] + 0.5))
    if tasks:
        results = fit_probes(features, tasks, test=test, Cs=Cs, select=select, device=device, n_jobs=n_jobs,
                             **engine_options)
        for i, (r, c) in enumerate(where):
            scores[r, :, c] = results.test_scores[i]
            fitted[r, c] = True
            chosen[r, c] = results.C[i]
    return MultilabelProbes(scores=scores, fitted=fitted, C=chosen, seconds=time.perf_counter() - began)


def one_hot_groups(meta: pd.DataFrame, prefix: str) -> np.ndarray | None:
    """The group of each row from one-hot columns ``<prefix><value>``; None where unknown.

    Returns None when ``meta`` has no such column (e.g. ``income_bucket_`` on COCO).
    """
    columns = [c for c in meta.columns if c.startswith(prefix) and len(c) > len(prefix)]
    if not columns:
        return None
    hot = meta[columns].to_numpy()
    one = (hot == 1).sum(axis=1) == 1
    names = np.array([c[len(prefix):] for c in columns], dtype=object)
    out = np.full(len(meta), None, dtype=object)
    out[one] = names[(hot[one] == 1).argmax(axis=1)]
    return out


def source_metrics(y_true: np.ndarray, scores: np.ndarray, groups: Mapping[str, np.ndarray], *, k: int,
                   name: str) -> dict[str, np.ndarray]:
    """Top-k accuracy and macro AP of R replicates on one source, overall and per group.

    ``y_true`` (n, C); ``scores`` (R, n, C); ``groups`` maps a prefix to a per-row group
    array (None = unknown). Keys: ``top{k}_accuracy_<name>``, ``macro_ap_<name>`` and
    ``..._<name>_<prefix><group>`` per group; values have shape (R,).
    """
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN is recorded; the reason is structural
        out[f"top{k}_accuracy_{name}"] = top_k_accuracy(y_true, scores, k=k)
        out[f"macro_ap_{name}"] = macro_average_precision(y_true, scores)
        for prefix, group in groups.items():
            known = np.array([g is not None for g in group])
            labels = np.where(known, group, "").astype(str)
            for metric, key in ((top_k_accuracy, f"top{k}_accuracy"), (macro_average_precision, "macro_ap")):
                options = {"k": k} if metric is top_k_accuracy else {}
                for value, result in by_group(metric, y_true, scores, labels, mask=known, **options).items():
                    out[f"{key}_{name}_{prefix}{value}"] = result
    return out


def _combined_rows(metas, parts, sources, tests):
    """Per source, the sorted store rows any cell uses (train/val of every spec, and the test split)."""
    rows = {}
    for source in sources:
        if len(tests[source]) == 0:
            raise UserError(f"source {source!r} has no test rows; check its split column.")
        used = [tests[source]] + [p[source].train for p in parts] + [p[source].val for p in parts]
        rows[source] = np.unique(np.concatenate(used)).astype(np.int64)
    return rows


def _check_stores(stores: Mapping, sources: Sequence[str], classes: Sequence[str]) -> None:
    missing = [s for s in sources if s not in stores]
    if missing:
        raise UserError(f"no feature store for source {missing[0]!r}; give one store per source of the specs.")
    first = stores[sources[0]]
    for source in sources[1:]:
        a, b = first.provenance, stores[source].provenance
        if (a.get("backbone_name"), a.get("weights_sha256"), a.get("feature_dim")) != (
                b.get("backbone_name"), b.get("weights_sha256"), b.get("feature_dim")):
            raise UserError(f"the stores of {sources[0]!r} and {source!r} come from different backbones; extract both "
                            "datasets with the same backbone and weights.")
    for source in sources:
        lacking = [c for c in classes if c not in stores[source].metadata.columns]
        if lacking:
            raise UserError(f"the store of {source!r} lacks the class column(s) {lacking[:5]}; extract it from an "
                            "adapter that writes the whole target set (e.g. coco-objects).")


def run_domain_mix_cells(stores: Mapping, specs, *, classes: Sequence[str], k: int = 5,
                         group_prefixes: Sequence[str] = DEFAULT_GROUP_PREFIXES, out: str | Path | None = None,
                         Cs=DEFAULT_CS, select: str = "val_loss", device: str = "cpu", n_jobs: int = 1,
                         skip_existing: bool = True, backbone: str | None = None) -> list[dict]:
    """Fit, evaluate and (when ``out`` is given) write one record per :class:`DomainMix` spec.

    Parameters
    ----------
    stores : mapping of source name -> FeatureStore
        One store per source named in the specs, all of one backbone.
    specs : sequence of DomainMix
        The cells (typically shares x seeds at one ``n``); all must name the same sources.
    classes : sequence of str
        The target set's columns (e.g. :func:`extract.datasets.targets.target_set`).
    k : int, default 5
        Top-k accuracy's k.
    group_prefixes : sequence of str
        One-hot prefixes of grouping columns, evaluated per group where a source has them.
    out : path, optional
        Results folder; records are written there atomically.
    Cs, select, device, n_jobs
        Passed to the engine.
    skip_existing : bool, default True
        Leave out cells whose valid record already exists in ``out``.
    backbone : str, optional
        The records' backbone name; default the stores' ``backbone_name``.

    Returns
    -------
    list of dict
        The records, in spec order.
    """
    specs = list(specs)
    if not specs:
        return []
    sources = specs[0].sources
    if any(s.sources != sources for s in specs):
        raise UserError("the domain-mix specs name different sources; run each pair of sources separately.")
    classes = list(classes)
    _check_stores(stores, sources, classes)
    backbone = backbone or stores[sources[0]].provenance["backbone_name"]
    if out is not None and skip_existing:
        specs = [s for s in specs if not record_exists(out, cell_id(runner="probe", backbone=backbone,
                                                                     spec=s.to_dict()))]
    if not specs:
        return []
    metas = {s: stores[s].metadata for s in sources}
    parts = [spec.split_indices(metas) for spec in specs]
    tests = {s: np.flatnonzero(metas[s]["split"].to_numpy() == "test") for s in sources}
    rows = _combined_rows(metas, parts, sources, tests)
    offsets = dict(zip(sources, np.cumsum([0] + [len(rows[s]) for s in sources])[:-1]))
    features = np.concatenate([stores[s].rows(rows[s], dtype=np.float32) for s in sources])
    labels = np.concatenate([metas[s][classes].to_numpy()[rows[s]] for s in sources]).astype(np.int8)
    place = lambda s, positions: offsets[s] + np.searchsorted(rows[s], positions)  # noqa: E731
    splits = [SubsetSplit(train=np.concatenate([place(s, p[s].train) for s in sources]),
                          val=np.concatenate([place(s, p[s].val) for s in sources])) for p in parts]
    test = np.concatenate([place(s, tests[s]) for s in sources])
    fit = fit_multilabel_probes(features, labels, splits, test=test, Cs=Cs, select=select, device=device,
                                n_jobs=n_jobs)
    metrics, start = {}, 0
    for s in sources:
        stop = start + len(tests[s])
        groups = {p: g[tests[s]] for p in group_prefixes if (g := one_hot_groups(metas[s], p)) is not None}
        metrics |= source_metrics(metas[s][classes].to_numpy()[tests[s]], fit.scores[:, start:stop], groups,
                                  k=k, name=s)
        start = stop
    records = []
    for r, (spec, part) in enumerate(zip(specs, parts)):
        record = make_record(
            runner="probe", backbone=backbone, spec=spec.to_dict(),
            metrics={name: values[r] for name, values in metrics.items()},
            hyperparameters={"C_median": float(np.nanmedian(fit.C[r])) if fit.fitted[r].any() else None,
                             "Cs": list(map(float, Cs)), "select": select, "k": k,
                             "classes_fitted": int(fit.fitted[r].sum()), "classes": len(classes)},
            backbone_config=stores[sources[0]].provenance.get("backbone_config", {}),
            dataset={"name": "+".join(stores[s].provenance["dataset_name"] for s in sources),
                     "sources": {s: {"name": stores[s].provenance["dataset_name"],
                                     "manifest_hash": stores[s].provenance["manifest_hash"]} for s in sources}},
            sizes={"n_train": len(splits[r].train), "n_val": len(splits[r].val), "n_test": len(test)},
            timings={"fit_seconds_batch": fit.seconds, "fit_seconds_per_cell": fit.seconds / len(specs)},
            extra={"stores": {s: str(getattr(stores[s], "path", "")) for s in sources},
                   "rows": {s: {"train": len(part[s].train), "val": len(part[s].val), "test": len(tests[s])}
                            for s in sources}},
        )
        if out is not None:
            write_record(out, record)
        records.append(record)
    return records


def summarize_over_seeds(table: pd.DataFrame, metrics: Sequence[str], *, by: Sequence[str]) -> pd.DataFrame:
    """Mean and 95% replicate interval of ``metrics`` per ``by`` group (one row per replicate seed).

    Returns one row per group and metric: the ``by`` columns, ``metric``, ``mean``, ``low``,
    ``high`` and ``seeds`` (finite replicates), from :func:`replicate_ci`.
    """
    missing = [c for c in [*by, *metrics] if c not in table.columns]
    if missing:
        raise UserError(f"the table lacks the column(s) {missing}; collect the domain-mix records first.")
    rows = []
    for keys, part in table.groupby(list(by), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for metric in metrics:
            values = part[metric].to_numpy(dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                ci = replicate_ci(values)
            rows.append({**dict(zip(by, keys)), "metric": metric, "mean": float(ci.estimate), "low": float(ci.low),
                         "high": float(ci.high), "seeds": int(np.isfinite(values).sum())})
    return pd.DataFrame(rows)


__all__ = ["DEFAULT_GROUP_PREFIXES", "MultilabelProbes", "fit_multilabel_probes", "one_hot_groups",
           "run_domain_mix_cells", "source_metrics", "summarize_over_seeds"]
