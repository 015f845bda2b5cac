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

Which rows of a source are scored (``test``, per source):

- ``"split"`` (default): the source's test split, shared by every cell. The cells' training
  and validation rows must lie outside it (they do with ``pool="train"``); a cell that
  draws a test row is refused.
- ``"unused"``: every row of the source with known labels that the cell did not draw for
  training or validation, so each cell has its own test rows. This is Wang & Russakovsky's
  Dollar Street test set ("all images of the 15 topics not used in train/val"); the rows are
  scored once for all cells and each cell's metrics leave out its own draws (a per-cell
  row mask, :mod:`analyze.metrics.multilabel`).
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
from analyze.probe.config import DEFAULT_CS, ProbeConfig
from analyze.probe.engine import ProbeTask, fit_probes
from analyze.results.records import (
    cell_id,
    make_record,
    read_record,
    record_exists,
    write_record,
)
from analyze.subsets.core import SubsetSplit
from extract.errors import UserError

DEFAULT_GROUP_PREFIXES = ("income_bucket_", "region_")
TEST_MODES = ("split", "unused")


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
                          select: str = "val_loss", device: str = "cpu", n_jobs: int = 1) -> MultilabelProbes:
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
    Cs, select, device, n_jobs
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
        results = fit_probes(features, tasks, test=test, config=ProbeConfig(Cs=Cs, select=select, device=device,
                                                                           n_jobs=n_jobs))
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
                   name: str, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Top-k accuracy and macro AP of R replicates on one source, overall and per group.

    ``y_true`` (n, C); ``scores`` (R, n, C); ``groups`` maps a prefix to a per-row group
    array (None = unknown); ``mask`` (R, n), optional, the rows each replicate is scored on
    (default all). Keys: ``top{k}_accuracy_<name>``, ``macro_ap_<name>`` and
    ``..._<name>_<prefix><group>`` per group; values have shape (R,).
    """
    out = {}
    rows = np.ones(scores.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN is recorded; the reason is structural
        out[f"top{k}_accuracy_{name}"] = top_k_accuracy(y_true, scores, k=k, mask=rows)
        out[f"macro_ap_{name}"] = macro_average_precision(y_true, scores, mask=rows)
        for prefix, group in groups.items():
            known = np.array([g is not None for g in group])
            labels = np.where(known, group, "").astype(str)
            for metric, key in ((top_k_accuracy, f"top{k}_accuracy"), (macro_average_precision, "macro_ap")):
                options = {"k": k} if metric is top_k_accuracy else {}
                for value, result in by_group(metric, y_true, scores, labels, mask=known & rows, **options).items():
                    out[f"{key}_{name}_{prefix}{value}"] = result
    return out


def check_test_modes(test, sources: Sequence[str]) -> dict[str, str]:
    """Per source, which rows are scored: ``"split"`` or ``"unused"`` (module docstring).

    ``test`` is one mode for every source or a mapping source -> mode (sources it leaves
    out: ``"split"``).
    """
    if isinstance(test, str):
        modes = dict.fromkeys(sources, test)
    elif isinstance(test, Mapping):
        unknown = sorted(set(map(str, test)) - set(sources))
        if unknown:
            raise UserError(f"test names the source {unknown[0]!r}, which is not one of the sources {list(sources)}.")
        modes = {s: test.get(s, "split") for s in sources}
    else:
        raise UserError(f"test = {test!r} must be 'split', 'unused' or a table source -> mode, e.g. "
                        '{ dollarstreet = "unused" }.')
    for source, mode in modes.items():
        if mode not in TEST_MODES:
            raise UserError(f"the test rows of source {source!r} are {mode!r}; choose one of {list(TEST_MODES)}.")
    return modes


def _scored_rows(metas, specs, parts, sources, classes, modes):
    """Per source, the rows scored for every cell, and per cell a mask of those it is scored on.

    ``"split"``: the test split (every cell; a cell drawing a test row is refused);
    ``"unused"``: every row with known labels, masked per cell to those it did not draw.
    """
    tests, masks = {}, {}
    for source in sources:
        meta = metas[source]
        drawn = [np.concatenate([p[source].train, p[source].val]) for p in parts]
        if modes[source] == "split":
            tests[source] = np.flatnonzero(meta["split"].to_numpy() == "test").astype(np.int64)
            for spec, rows in zip(specs, drawn):
                overlap = np.intersect1d(rows, tests[source])
                if len(overlap):
                    raise UserError(f"the cell at share {spec.share}, seed {spec.seed} draws {len(overlap)} rows of "
                                    f"source {source!r} from its test split (pool={spec.pool!r}); draw from "
                                    f"pool 'train' or score {source!r} on its unused rows.")
            masks[source] = None
        else:
            tests[source] = np.flatnonzero((meta[list(classes)].to_numpy() >= 0).all(axis=1)).astype(np.int64)
            masks[source] = np.stack([~np.isin(tests[source], rows) for rows in drawn])
        if len(tests[source]) == 0 or (masks[source] is not None and not masks[source].any(axis=1).all()):
            raise UserError(f"source {source!r} has no {'test' if modes[source] == 'split' else 'unused'} rows to "
                            "score; check its split column (or draw fewer rows).")
    return tests, masks


def _combined_rows(parts, sources, tests):
    """Per source, the sorted store rows any cell uses (train/val of every spec, and the scored rows)."""
    rows = {}
    for source in sources:
        used = [tests[source]] + [p[source].train for p in parts] + [p[source].val for p in parts]
        rows[source] = np.unique(np.concatenate(used)).astype(np.int64)
    return rows


def _check_existing(out, specs, backbone, modes) -> list:
    """The specs still to run; a record scored on other test rows is an error (it would be kept)."""
    todo = []
    for spec in specs:
        path = Path(out) / f"{cell_id(runner='probe', backbone=backbone, spec=spec.to_dict())}.json"
        if not record_exists(out, path.stem):
            todo.append(spec)
            continue
        recorded = read_record(path).get("test_rows") or dict.fromkeys(modes, "split")
        if recorded != modes:
            raise UserError(f"{path} was scored on other test rows ({recorded}, now {modes}); give another results "
                            "folder or delete those records.")
    return todo


def check_stores(stores: Mapping, sources: Sequence[str], classes: Sequence[str]) -> None:
    """Refuse stores that miss a source, come from different backbones or lack a class column."""
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


@dataclass(frozen=True)
class DomainMixConfig:
    """How domain-mix cells are fitted and scored (passed whole to :func:`run_domain_mix_cells`).

    Attributes
    ----------
    classes : tuple of str
        The target set's columns (e.g. :func:`extract.datasets.targets.target_set`).
    k : int, default 5
        Top-k accuracy's k.
    group_prefixes : tuple of str
        One-hot prefixes of grouping columns, evaluated per group where a source has them.
    test : {"split", "unused"} or mapping of source -> mode, default "split"
        Which rows of each source are scored (module docstring); recorded as ``test_rows``.
    Cs, select, device, n_jobs
        Passed to the engine (:func:`analyze.probe.fit_probes`).
    """

    classes: tuple
    k: int = 5
    group_prefixes: tuple = DEFAULT_GROUP_PREFIXES
    test: object = "split"
    Cs: tuple = tuple(DEFAULT_CS)
    select: str = "val_loss"
    device: str = "cpu"
    n_jobs: int = 1


def run_domain_mix_cells(stores: Mapping, specs, config: DomainMixConfig, *, out: str | Path | None = None,
                         skip_existing: bool = True, backbone: str | None = None,
                         annotation: Mapping | None = None) -> list[dict]:
    """Fit, evaluate and (when ``out`` is given) write one record per :class:`DomainMix` spec.

    Parameters
    ----------
    stores : mapping of source name -> FeatureStore
        One store per source named in the specs, all of one backbone.
    specs : sequence of DomainMix
        The cells (typically shares x seeds at one ``n``); all must name the same sources.
    config : DomainMixConfig
        Classes, k, grouping columns, test rows and the engine's options.
    out : path, optional
        Results folder; records are written there atomically.
    skip_existing : bool, default True
        Leave out cells whose valid record already exists in ``out``.
    backbone : str, optional
        The records' backbone name; default the stores' ``backbone_name``.
    annotation : mapping, optional
        Written as each record's ``sweep`` annotation (``grid``, ``backbone``, ``base_kind``),
        which the collected table reads.

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
    classes = list(config.classes)
    check_stores(stores, sources, classes)
    modes = check_test_modes(config.test, sources)
    backbone = backbone or stores[sources[0]].provenance["backbone_name"]
    if out is not None and skip_existing:
        specs = _check_existing(out, specs, backbone, modes)
    if not specs:
        return []
    metas = {s: stores[s].metadata for s in sources}
    parts = [spec.split_indices(metas) for spec in specs]
    tests, masks = _scored_rows(metas, specs, parts, sources, classes, modes)
    rows = _combined_rows(parts, sources, tests)
    offsets = dict(zip(sources, np.cumsum([0] + [len(rows[s]) for s in sources])[:-1]))
    features = np.concatenate([stores[s].rows(rows[s], dtype=np.float32) for s in sources])
    labels = np.concatenate([metas[s][classes].to_numpy()[rows[s]] for s in sources]).astype(np.int8)
    place = lambda s, positions: offsets[s] + np.searchsorted(rows[s], positions)  # noqa: E731
    splits = [SubsetSplit(train=np.concatenate([place(s, p[s].train) for s in sources]),
                          val=np.concatenate([place(s, p[s].val) for s in sources])) for p in parts]
    test = np.concatenate([place(s, tests[s]) for s in sources])
    fit = fit_multilabel_probes(features, labels, splits, test=test, Cs=config.Cs, select=config.select,
                                device=config.device, n_jobs=config.n_jobs)
    metrics, start = {}, 0
    for s in sources:
        stop = start + len(tests[s])
        groups = {p: g[tests[s]] for p in config.group_prefixes if (g := one_hot_groups(metas[s], p)) is not None}
        metrics |= source_metrics(metas[s][classes].to_numpy()[tests[s]], fit.scores[:, start:stop], groups,
                                  k=config.k, name=s, mask=masks[s])
        start = stop
    scored = {s: [len(tests[s]) if masks[s] is None else int(masks[s][r].sum()) for r in range(len(specs))]
              for s in sources}
    cells = _Cells(specs=specs, parts=parts, splits=splits, scored=scored, modes=modes)
    records = [_record(stores, cells, r, fit, metrics, config, backbone=backbone, annotation=annotation)
               for r in range(len(specs))]
    for record in records if out is not None else ():
        write_record(out, record)
    return records


@dataclass(frozen=True)
class _Cells:
    """What :func:`_record` needs of the fitted cells: specs, their draws, splits, scored rows, test modes."""

    specs: list
    parts: list
    splits: list
    scored: dict
    modes: dict


def _record(stores, cells: _Cells, r: int, fit: MultilabelProbes, metrics: dict, config: DomainMixConfig, *,
            backbone: str, annotation) -> dict:
    """The record of cell ``r``."""
    sources, spec, part = cells.specs[0].sources, cells.specs[r], cells.parts[r]
    first = stores[sources[0]].provenance
    return make_record(
        runner="probe", backbone=backbone, spec=spec.to_dict(),
        metrics={name: values[r] for name, values in metrics.items()},
        hyperparameters={"C_median": float(np.nanmedian(fit.C[r])) if fit.fitted[r].any() else None,
                         "Cs": list(map(float, config.Cs)), "select": config.select, "k": config.k,
                         "classes_fitted": int(fit.fitted[r].sum()), "classes": len(config.classes)},
        sections=dict(
            backbone_config=first.get("backbone_config", {}),
            dataset={"name": "+".join(stores[s].provenance["dataset_name"] for s in sources),
                     "sources": {s: {"name": stores[s].provenance["dataset_name"],
                                     "manifest_hash": stores[s].provenance["manifest_hash"]} for s in sources}},
            sizes={"n_train": len(cells.splits[r].train), "n_val": len(cells.splits[r].val),
                   "n_test": sum(cells.scored[s][r] for s in sources)},
            timings={"fit_seconds_batch": fit.seconds, "fit_seconds_per_cell": fit.seconds / len(cells.specs)}),
        extra={"stores": {s: str(getattr(stores[s], "path", "")) for s in sources},
               "rows": {s: {"train": len(part[s].train), "val": len(part[s].val), "test": cells.scored[s][r]}
                        for s in sources},
               "test_rows": cells.modes, **({"sweep": dict(annotation)} if annotation else {})},
    )


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


__all__ = [
    "DEFAULT_GROUP_PREFIXES",
    "TEST_MODES",
    "DomainMixConfig",
    "check_stores",
    "MultilabelProbes",
    "check_test_modes",
    "fit_multilabel_probes",
    "one_hot_groups",
    "run_domain_mix_cells",
    "source_metrics",
    "summarize_over_seeds",
]
