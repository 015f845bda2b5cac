"""Probe cells on a feature store: subset specs -> batched probes -> metrics -> result records.

One *cell* is (store/backbone, subset spec). All cells of one store are fitted in one
:func:`analyze.probe.fit_probes` call (C chosen per probe on its validation rows), scored
on the test rows, evaluated with :func:`analyze.metrics.evaluate_runs` and written as one
JSON record each (:mod:`analyze.results.records`).

Test rows: by default every row of the store's ``test`` split whose target and sensitive
labels are known; ``test_resample=True`` instead draws :class:`analyze.subsets.TestResample`
(50% positives, 50% per group, at the training pool's natural correlation), seeded with the
cell's seed.

Sign convention of ``fpr_gap_stereotype``: FPR(group over-represented among positives in
the dataset's training pool, i.e. its *natural* direction) - FPR(other group). Using the
natural direction, not the finetuning set's, keeps one sign across a correlation sweep
(at level 0.5 the finetuning set has no direction). ``fpr_gap`` is the raw
FPR(s=1) - FPR(s=0).
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from analyze.config import EvalConfig, RunContext
from analyze.metrics.diagnosis import diagnose_record
from analyze.metrics import (
    TrainingRows,
    UndefinedMetricWarning,
    evaluate_runs,
    natural_over_represented_group,
)
from analyze.probe.config import ProbeConfig
from analyze.probe.engine import ProbeTask, fit_probes
from analyze.results.records import (
    cell_id,
    make_record,
    record_exists,
    rows_digest,
    training_composition,
    write_record,
)
from analyze.subsets import TestResample, natural_level
from extract.errors import UserError
from extract.store.reader import FeatureStore

DEFAULT_POLICY = "top_p"


def natural_direction(meta, target: str, sensitive: str) -> tuple[float, float]:
    """(natural level P(s=1 | y=1) in the train pool, over-represented group 1/0 or NaN);
    the group is :func:`analyze.metrics.natural_over_represented_group`, as in the finetune runner."""
    level = float(natural_level(meta, target, sensitive))
    return level, natural_over_represented_group(meta[target].to_numpy(), meta[sensitive].to_numpy(), meta["split"])


def _test_rows(meta, spec, *, test_resample: bool) -> np.ndarray:
    target, sensitive = _target_of(spec), spec.sensitive
    if test_resample:
        return np.asarray(TestResample(target, sensitive, seed=spec.seed).indices(meta), dtype=np.int64)
    known = (meta[target].to_numpy() >= 0) & (meta[sensitive].to_numpy() >= 0)
    rows = np.flatnonzero((meta["split"].to_numpy() == "test") & known)
    if len(rows) == 0:
        raise UserError(f"the store has no test rows with known {target!r} and {sensitive!r}; check the dataset's split column.")
    return rows


def _target_of(spec) -> str:
    return getattr(spec, "target", None) or f"{spec.attr_a}_or_{spec.attr_b}"


def build_tasks(meta, specs, *, test_resample: bool = False) -> list[ProbeTask]:
    """One :class:`ProbeTask` per spec (training/validation rows, labels, test rows)."""
    tasks = []
    test_splits = {}  # without resampling, the test rows depend only on (target, sensitive)
    for spec in specs:
        split = spec.split_indices(meta)
        labels = np.asarray(spec.labels(meta), dtype=np.int64)
        if test_resample:
            test = _test_rows(meta, spec, test_resample=True)
        else:
            key = (_target_of(spec), spec.sensitive)
            if key not in test_splits:
                test_splits[key] = _test_rows(meta, spec, test_resample=False)
            test = test_splits[key]
        tasks.append(ProbeTask(train=np.asarray(split.train), val=np.asarray(split.val), labels=labels, test=test))
    return tasks


def evaluate_cell(meta, spec, task: ProbeTask, scores: np.ndarray, *, policy: str = DEFAULT_POLICY,
                  direction: tuple[float, float] | None = None) -> dict:
    """Metrics of one fitted probe on its test rows, as a flat dict (NaN where undefined).

    ``direction`` is :func:`natural_direction` of the spec's (target, sensitive), computed
    here when not given (callers evaluating many cells pass it once per pair).
    """
    sensitive = meta[spec.sensitive].to_numpy().astype(np.int64)
    if direction is None:
        direction = natural_direction(meta, spec.target, spec.sensitive) if hasattr(spec, "target") else (np.nan, np.nan)
    level, over = direction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN is recorded; the reason is structural
        row = evaluate_runs(
            task.labels[task.test], scores, sensitive[task.test], policy=policy, threshold=0.0,
            training=TrainingRows(y_true=task.labels[task.train], group=sensitive[task.train],
                                  over_represented=None if np.isnan(over) else over),
        ).iloc[0].to_dict()
    row["natural_level"] = level
    row["natural_over_represented_group"] = over
    return row


def probe_options(section, where: str | None = None) -> tuple[ProbeConfig, EvalConfig, bool]:
    """A grid's ``[probe]`` section parsed once: ``(ProbeConfig, EvalConfig, test_resample)``.

    Keys of :class:`~analyze.probe.ProbeConfig` (``Cs``, ``select``, ``device``, ...), of
    :class:`~analyze.config.EvalConfig` (``policy``, ``auc_floor``) and ``test_resample``; an
    unknown key, or a bad value, raises a :class:`~extract.errors.UserError` that starts with
    ``where`` (e.g. ``"grid.toml [probe]"``) and names the key.
    """
    section = dict(section)
    probe_keys = {f.name for f in dataclasses.fields(ProbeConfig)}
    eval_keys = {f.name for f in dataclasses.fields(EvalConfig)} - {"sensitive"}
    resample = section.pop("test_resample", False)
    if not isinstance(resample, bool):
        raise UserError(f"{where + ': ' if where else ''}`test_resample` must be true or false, got {resample!r}.")
    config = ProbeConfig.from_mapping({k: v for k, v in section.items() if k not in eval_keys}, where)
    evaluation = EvalConfig.from_mapping({k: v for k, v in section.items() if k not in probe_keys}, where,
                                         ignore=probe_keys)
    return config, evaluation, resample


def run_probe_cells(store: FeatureStore, specs, *, config: ProbeConfig = ProbeConfig(),
                    evaluation: EvalConfig = EvalConfig(), context: RunContext = RunContext(),
                    test_resample: bool = False) -> list[dict]:
    """Fit, evaluate and (when ``context.out`` is given) write one record per spec; return the records.

    Parameters
    ----------
    store : FeatureStore
        Features and metadata of one backbone on one dataset.
    specs : iterable of subset specs
        One cell each (:mod:`analyze.subsets`).
    config : ProbeConfig, default=ProbeConfig()
        The probes' C grid, selection rule, solver options, device and parallelism.
    evaluation : EvalConfig, default=EvalConfig()
        Threshold ``policy`` and ``auc_floor`` (``weak_task`` in each record's ``diagnosis``,
        :func:`analyze.metrics.diagnosis.diagnose_record`); probe cells use each spec's own
        ``sensitive``, so ``evaluation.sensitive`` must be None.
    context : RunContext, default=RunContext()
        ``out`` (None: nothing written), ``overwrite`` (False: cells whose valid record
        already exists in ``out`` are skipped) and ``progress``.
    test_resample : bool, default=False
        Score on :class:`analyze.subsets.TestResample` rows instead of the test split.

    Every record carries its ``diagnosis`` and its ``rows_digest``.
    """
    if evaluation.sensitive is not None:
        raise UserError("probe cells take the group column from each spec's `sensitive`; leave `sensitive` unset.")
    policy, out = evaluation.policy, context.out
    backbone = store.provenance["backbone_name"]
    specs = list(specs)
    if out is not None and not context.overwrite:
        specs = [s for s in specs if not record_exists(out, cell_id(runner="probe", backbone=backbone, spec=s.to_dict()))]
    if not specs:
        return []
    meta = store.metadata
    tasks = build_tasks(meta, specs, test_resample=test_resample)
    began = time.perf_counter()
    results = fit_probes(store.features, tasks, config=config)
    fit_seconds = time.perf_counter() - began
    directions = {(s.target, s.sensitive): natural_direction(meta, s.target, s.sensitive)
                  for s in specs if hasattr(s, "target")}
    groups = {s.sensitive: meta[s.sensitive].to_numpy() for s in specs}
    records = []
    for i, (spec, task) in enumerate(tqdm(list(zip(specs, tasks)), desc=f"evaluate {backbone}", unit="cell",
                                          disable=not context.progress)):
        direction = directions.get((getattr(spec, "target", None), spec.sensitive), (np.nan, np.nan))
        metrics = evaluate_cell(meta, spec, task, results.test_scores[i], policy=policy, direction=direction)
        sensitive = groups[spec.sensitive]
        record = make_record(
            runner="probe", backbone=backbone, spec=spec.to_dict(), metrics=metrics,
            hyperparameters={"C": float(results.C[i]), "Cs": list(map(float, results.Cs)), "select": config.select,
                             "policy": policy, "n_iter": int(results.n_iter[i, results.C_index[i]]),
                             "converged": bool(results.converged[i, results.C_index[i]])},
            sections={"backbone_config": store.provenance.get("backbone_config", {}),
                      "dataset": {"name": store.provenance["dataset_name"],
                                  "manifest_hash": store.provenance["manifest_hash"]},
                      "sizes": {"n_train": len(task.train), "n_val": len(task.val), "n_test": len(task.test)},
                      "timings": {"fit_seconds_batch": fit_seconds, "fit_seconds_per_cell": fit_seconds / len(specs)}},
            extra={"store": str(store.path) if hasattr(store, "path") else None, "test_resample": test_resample,
                   "composition": training_composition(task.labels[task.train], sensitive[task.train]),
                   "rows_digest": rows_digest(spec.to_dict(), task.train, task.val, task.test)},
        )
        record["diagnosis"] = diagnose_record(record, auc_floor=evaluation.auc_floor).to_dict()
        if out is not None:
            write_record(out, record)
        records.append(record)
    return records
