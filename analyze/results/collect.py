"""``biastransfer collect``: fold a folder of result records into one tidy table.

One row per cell (one JSON record written by a runner or a sweep), sorted by ``cell_id``;
the single input of ``effects``, ``plots``, ``plan`` and the report. A cell recorded more
than once (folders collected together, a copied file) is an error; when its records were
made with different settings (``settings_digest``) the error says so. So are the records of
one grid's runner made with different runner settings (another C grid or learning rates for
some of its cells). ``keep`` (``--keep newest`` or ``oldest``, by the records' ``created``
time) resolves both instead: one record per cell, and one runner setting per grid. Unreadable
(truncated), foreign or other-schema ``*.json`` files are an error naming the first of them
(``skip_bad``, ``--skip-bad``: skipped with one warning that lists them);
temporary files (``.tmp-*``) and sub-folders (e.g. the sweep's ``_grids/``) are ignored.

Schema (NaN where a value does not apply or is unknown):

=============================== ==============================================================
column                          meaning
=============================== ==============================================================
``cell_id``                     the record's id (file name without ``.json``)
``runner``                      ``probe`` (linear probe on frozen features) or ``finetune``
``backbone``                    backbone name: the store's backbone for probes; for finetunes
                                the base's registered or checkpoint name (so the two runners'
                                rows of one base share it), the path in ``base_checkpoint``
``base_name``                   the grid's label of the backbone (sweeps only)
``base_kind``                   ``biased``, ``control``, ``scratch``, ``imagenet``, ... (the sweep's
                                label, else the role a toolkit checkpoint records)
``grid``                        grid name (sweeps only)
``dataset``                     dataset name
``spec_kind``                   ``correlation``, ``subselection``, ``natural``, ``skew``,
                                ``underrepresentation``, ``domain_mix``
``target``                      target attribute y (``A_or_B`` for underrepresentation cells)
``sensitive``                   sensitive attribute s (the metrics' groups)
``attr_a``, ``attr_b``          the pair of an underrepresentation cell
``level``                       correlation level P(s=1 | y=1) = P(s=0 | y=0) of the set
``p``                           P(s=1 | y=1) = P(s=0 | y=0) of a skewed set
``share_a``                     share of A-only positives (underrepresentation)
``share``                       share of the first source in a domain mix (``domain_mix``)
``n``                           training rows requested; for ``n = "all"`` (and sub-selection
                                sets) the rows used, i.e. ``n_train``
``n_all``                       True when the whole training part was requested
``n_train``, ``n_val``,         rows used for training, validation (choosing C / lr / wd)
``n_test``                      and testing
``seed``                        replicate seed
``C``                           the probe's chosen inverse regularisation strength
``lr``, ``weight_decay``        the finetune's chosen learning rate and weight decay
metric columns                  flattened ``metrics`` of the record, names as there
                                (:func:`analyze.metrics.evaluate_runs`): ``auc``,
                                ``auc_group0/1``, ``accuracy``, ``fpr_group0/1``,
                                ``tpr_group0/1``, ``fpr_gap`` = FPR(s=1) - FPR(s=0),
                                ``tpr_gap``, ``fpr_gap_stereotype`` (positive =
                                stereotype-consistent), ``equalized_odds_difference``,
                                ``demographic_parity_difference``, ``worst_group_accuracy``,
                                ``worst_sensitive_group_accuracy``,
                                ``bias_amplification_a_to_t``, ``over_represented_group``,
                                ``threshold``, ...
``r4_tpr_gap``, ``r4_fpr_gap``, finetune records: finding 4's measurement (W&R vary_corr.py,
``r4_auc``                      :mod:`analyze.finetune.evaluate`): TPR(s=1) - TPR(s=0),
                                FPR(s=1) - FPR(s=0) and AUC with the threshold set on the
                                run's validation rows, on its test rows resampled to the
                                dataset's P(s=1 | y=1) (``r4_level``, seeded ``r4_seed``,
                                ``r4_n_test`` rows; ``r4_threshold``); empty for probes
``stereotype_level``            the finetuning set's correlation measured toward the stereotype:
                                P(g | y=1) where g is ``over_represented_group``, the group
                                that sets the sign of ``fpr_gap_stereotype`` (the target's
                                natural direction): ``level`` (or ``p``) when g = 1, one minus
                                it when g = 0. 1 = every positive in the stereotypical group,
                                0.5 = balance, 0 = the counter-stereotypical extreme; natural
                                cells take the training rows' share (``train_share_s_given_y``,
                                else ``natural_level``). Use it, not ``level``, to pool targets
                                whose natural directions differ.
``natural_level``               P(s=1 | y=1) over the dataset's train split
``natural_over_represented_group`` 1 or 0: the group over-represented among natural positives
``skew``                        ``|P(s=1 | y=1) - P(s=1)|`` of the training rows (the paper's
                                ``Skew``): from the record's ``composition`` (written by both
                                runners) or the sweep annotation; for older records without
                                either, ``|level - 0.5|`` for balanced kinds (exact up to
                                rounding)
``train_share_s_given_y``,      P(s=1 | y=1) and P(s=1) of the training rows
``train_share_s``
``store``                       feature store path (probes)
``dataset_hash``                the dataset's manifest hash, first 12 characters (ids, paths,
                                splits and attributes in row order): two rows with the same
                                ``dataset`` but another hash come from different data
``cross_dataset``               True when the sweep's grid set ``cross_dataset = true`` (bases
                                meant to be compared across datasets)
``settings_digest``             digest of the settings that decided the cell's numbers
                                (:mod:`analyze.sweep.settings`; sweeps only)
``base_checkpoint``             the checkpoint a finetune started from, as recorded (finetunes
                                of a toolkit checkpoint)
``created``                     when the record was written (UTC)
``rows_digest``                 hash of the cell's spec and rows (:func:`~analyze.results.records.rows_digest`):
                                equal digests pair replicates across bases (NaN for old records)
``flag_degenerate``, ...        the diagnosis of the cell (:mod:`analyze.metrics.diagnosis`; one boolean
                                column per flag: ``degenerate``, ``c_at_edge``, ``lr_at_edge``,
                                ``epochs_at_edge``, ``not_converged``, ``weak_task``), recomputed
                                from the record with collect's ``auc_floor``
``flagged``                     any flag set
``diagnosis``                   the reasons in words (empty when no flag is set)
=============================== ==============================================================
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from analyze.metrics.diagnosis import (
    DEFAULT_AUC_FLOOR,
    FLAG_COLUMNS,
    check_floor,
    diagnose_record,
)
from analyze.results.records import read_record
from analyze.runners import RUNNERS
from extract.errors import UserError

ID_COLUMNS = ["cell_id", "runner", "backbone", "base_name", "base_kind", "grid", "dataset", "spec_kind", "target",
              "sensitive", "attr_a", "attr_b", "level", "p", "share_a", "share", "n", "n_all", "n_train", "n_val",
              "n_test", "seed", "C", "lr", "weight_decay"]
METRIC_ORDER = ["auc", "auc_group0", "auc_group1", "accuracy", "accuracy_group0", "accuracy_group1",
                "fpr_group0", "fpr_group1", "tpr_group0", "tpr_group1", "fnr_group0", "fnr_group1",
                "selection_rate_group0", "selection_rate_group1", "fpr_gap", "tpr_gap", "fpr_gap_stereotype",
                "equalized_odds_difference", "demographic_parity_difference", "worst_group_accuracy",
                "worst_sensitive_group_accuracy", "bias_amplification_a_to_t", "over_represented_group", "threshold"]
TAIL_COLUMNS = ["stereotype_level", "natural_level", "natural_over_represented_group", "skew", "train_share_s_given_y", "train_share_s",
                "store", "dataset_hash", "cross_dataset", "base_checkpoint", "created", "rows_digest", "settings_digest",
                *FLAG_COLUMNS, "flagged", "diagnosis"]
BALANCED_KINDS = ("correlation", "subselection")
INTEGER_COLUMNS = ["n", "n_train", "n_val", "n_test", "seed"]
KEEP_CHOICES = ("newest", "oldest")


class SkippedRecordsWarning(UserWarning):
    """Some files in a results folder were not collected (truncated or foreign)."""


def record_files(folders) -> list[Path]:
    """The ``*.json`` files directly inside ``folders`` (temporary ``.tmp-*`` files excluded)."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    files = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(f"results folder {folder} does not exist; pass the output folder of a sweep or probe run.")
        files += [p for p in folder.glob("*.json") if not p.name.startswith(".") and p.is_file()]
    return sorted(files)


def collect(folder, *, skip_bad: bool = False, warn: bool = True, auc_floor: float = DEFAULT_AUC_FLOOR,
            keep: str | None = None) -> pd.DataFrame:
    """One row per valid record in ``folder`` (a path or a list of paths); schema in the module docstring.

    An unreadable, truncated, foreign or other-schema ``*.json`` file is a :class:`UserError`
    naming it (a table one row short would pass silently into every later step). With
    ``skip_bad`` (``--skip-bad``) such files are skipped instead and listed in one
    :class:`SkippedRecordsWarning` (when ``warn``). ``auc_floor`` sets the ``weak_task``
    flag of every row's diagnosis.

    A cell recorded twice is a :class:`UserError` (naming the two settings digests when they
    differ) unless ``keep`` says which record to keep: ``"newest"`` or ``"oldest"`` by the
    records' ``created`` time (ties: the later file in path order for ``newest``). Records of
    one grid and runner made with different runner settings (the probe's C grid, the finetune
    protocol, ...) are a :class:`UserError` too, unless ``keep`` says which settings' records
    to keep (those whose newest record is the newest, or the oldest).
    """
    auc_floor = check_floor(auc_floor)
    if keep is not None and keep not in KEEP_CHOICES:
        raise UserError(f"keep must be one of {list(KEEP_CHOICES)} (which record of a cell recorded twice to keep), "
                        f"got {keep!r}.")
    records, skipped, first_problem = {}, [], None
    for path in record_files(folder):
        try:
            record = read_record(path)
        except UserError as exc:
            skipped.append(path)
            first_problem = first_problem or str(exc).removesuffix("; delete it and rerun the cell.")
            continue
        entry = _Entry(path, record.get("settings_digest"), str(record.get("created") or ""),
                       record_row(record, auc_floor=auc_floor), *_runner_settings(record))
        cell = record["cell_id"]
        records[cell] = _one_of(cell, records[cell], entry, keep) if cell in records else entry
    rows = [entry.row for entry in _one_setting_per_grid(list(records.values()), keep)]
    if skipped and not skip_bad:
        more = f" (and {len(skipped) - 1} more bad file(s))" if len(skipped) > 1 else ""
        raise UserError(f"{first_problem}{more}; delete {'them' if more else 'it'} and rerun the sweep (it redoes those "
                        + (f"cells), or pass `skip_bad=True` to collect the other {len(rows)} record(s)." if rows else
                           "cells); no other record there is readable."))
    if skipped and warn:
        names = ", ".join(str(p) for p in skipped[:10])
        names += f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warnings.warn(SkippedRecordsWarning(
            f"skipped {len(skipped)} unreadable or foreign result file(s): {names}; delete them and rerun the sweep "
            "(it redoes those cells)."), stacklevel=2)
    if not rows:
        raise UserError(f"no result records in {folder}; run `biastransfer sweep` (or probe/finetune) first.")
    table = pd.DataFrame(rows)
    metrics = [c for c in METRIC_ORDER if c in table.columns]
    metrics += sorted(set(table.columns) - set(ID_COLUMNS) - set(TAIL_COLUMNS) - set(metrics))
    table = table.reindex(columns=ID_COLUMNS + metrics + TAIL_COLUMNS)
    table = table.astype({c: "Int64" for c in INTEGER_COLUMNS}).astype({"n_all": bool, "flagged": bool,
                                                                         "cross_dataset": bool,
                                                                         **dict.fromkeys(FLAG_COLUMNS, bool)})
    return table.sort_values("cell_id", kind="stable").reset_index(drop=True)


class _Entry(NamedTuple):
    """One collected record: its file, settings digest, creation time, table row, and the
    (grid, runner) it belongs to with the digest of that runner's settings (sweeps only)."""

    path: Path
    digest: str | None
    created: str
    row: dict
    family: tuple | None = None
    runner_digest: str | None = None
    runner_settings: dict | None = None


def _runner_settings(record: dict) -> tuple:
    """((grid, runner), digest of the runner's settings, those settings), or Nones for records without settings.

    The runner's settings are what every cell of a grid's runner shares (the probe's C grid,
    selection and policy; the finetune's protocol), not the store, base or spec of the cell.
    """
    from analyze.sweep.settings import settings_digest

    settings, grid = record.get("settings"), (record.get("sweep") or {}).get("grid")
    runner = record.get("runner")
    if not isinstance(settings, dict) or not grid or not isinstance(settings.get(runner), dict):
        return None, None, None
    shared = {"version": settings.get("version"), runner: settings[runner]}
    return (grid, runner), settings_digest(shared), shared


def _one_setting_per_grid(entries: list, keep: str | None) -> list:
    """The entries, refusing (or, with ``keep``, resolving) a grid's runner swept with two settings.

    Records of one grid and runner made with different runner settings (e.g. a sweep rerun
    with another C grid for only some backbones, or after dropping cells from the grid) would
    compare cells fitted differently. ``keep="newest"`` keeps the records of the settings
    whose newest record is the most recent (``"oldest"``: the earliest), dropping the others.
    """
    from analyze.sweep.settings import changed_keys

    groups: dict[tuple, dict[str, list]] = {}
    for entry in entries:
        if entry.family is not None:
            groups.setdefault(entry.family, {}).setdefault(entry.runner_digest, []).append(entry)
    dropped = set()
    for (grid, runner), by_digest in sorted(groups.items()):
        if len(by_digest) < 2:
            continue
        ranked = sorted(by_digest.values(), key=lambda members: max(e.created for e in members))
        if keep is None:
            a, b = ranked[0], ranked[-1]
            keys = ", ".join(changed_keys(a[0].runner_settings, b[0].runner_settings)) or "settings"
            raise UserError(f"the {runner} records of grid {grid!r} were made with {len(ranked)} different settings "
                            f"({keys} differ: {len(a)} record(s) like {a[0].path}, {len(b)} like {b[0].path}), so "
                            "the table would compare cells fitted differently; rerun the sweep for every backbone "
                            "with one grid, or pass `keep='newest'` to keep only the records of the "
                            "newest settings.")
        kept = ranked[-1] if keep == "newest" else ranked[0]
        dropped.update(id(e) for members in ranked if members is not kept for e in members)
    return [e for e in entries if id(e) not in dropped]


def _one_of(cell: str, first: _Entry, second: _Entry, keep: str | None) -> _Entry:
    """Of two records of ``cell``, the one ``keep`` names; without ``keep``, a :class:`UserError`."""
    if keep is None:
        if first.digest != second.digest:
            raise UserError(f"cell {cell} is recorded with different settings (digest {first.digest or 'none'} in "
                            f"{first.path}, {second.digest or 'none'} in {second.path}), so the table would mix "
                            "results of two settings; pass `keep='newest'` or `keep='oldest'` to keep "
                            "one record per cell, or collect one folder.")
        raise UserError(f"cell {cell} is recorded twice ({first.path} and {second.path}); collect each folder once, "
                        "delete one of them, or pass `keep='newest'`.")
    newer = second.created >= first.created
    return second if newer == (keep == "newest") else first


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def record_row(record: dict, *, auc_floor: float = DEFAULT_AUC_FLOOR) -> dict:
    """The table row of one record (module docstring)."""
    spec, sizes, hyper = record.get("spec", {}), record.get("sizes", {}), record.get("hyperparameters", {})
    annotation = {**(record.get("composition") or {}), **(record.get("sweep") or {})}
    kind = spec.get("kind")
    target = spec.get("target") or (f"{spec['attr_a']}_or_{spec['attr_b']}" if "attr_a" in spec else None)
    sensitive = (spec.get("sensitive") or annotation.get("group_column")
                 or (record.get("finetune") or {}).get("sensitive"))
    n_all = "n" in spec and spec["n"] is None
    backbone, checkpoint = record["backbone"], None
    name = (record.get("backbone_config") or {}).get("name")
    runner = RUNNERS.get(record["runner"])
    if runner is not None and runner.records_base_path and isinstance(name, str) and name \
            and str(backbone).endswith(".pt"):
        backbone, checkpoint = name, backbone
    row = {
        "cell_id": record["cell_id"], "runner": record["runner"], "backbone": backbone,
        "base_checkpoint": checkpoint,
        "base_name": annotation.get("backbone"), "base_kind": base_kind(record, annotation),
        "grid": annotation.get("grid"), "dataset": (record.get("dataset") or {}).get("name"), "spec_kind": kind,
        "target": target, "sensitive": sensitive, "attr_a": spec.get("attr_a"), "attr_b": spec.get("attr_b"),
        "level": _number(spec.get("level")), "p": _number(spec.get("p")), "share_a": _number(spec.get("share_a")),
        "share": _number(spec.get("share")),
        "n": _number(spec.get("n")) if spec.get("n") is not None else _number(sizes.get("n_train")),
        "n_all": n_all, "n_train": _number(sizes.get("n_train")), "n_val": _number(sizes.get("n_val")),
        "n_test": _number(sizes.get("n_test")), "seed": _number(spec.get("seed", record.get("seed"))),
        "C": _number(hyper.get("C")), "lr": _number(hyper.get("lr")),
        "weight_decay": _number(hyper.get("weight_decay")),
    }
    row.update({name: _number(value) for name, value in (record.get("metrics") or {}).items()})
    if math.isnan(row.get("natural_level", math.nan)):
        row["natural_level"] = _number(annotation.get("natural_level"))
    skew = _number(annotation.get("skew"))
    if math.isnan(skew) and kind in BALANCED_KINDS:
        skew = abs(row["level"] - 0.5)
    row.update(skew=skew, train_share_s_given_y=_number(annotation.get("train_share_s_given_y")),
               train_share_s=_number(annotation.get("train_share_s")), store=record.get("store"),
               created=record.get("created"), dataset_hash=dataset_hash(record),
               cross_dataset=bool((record.get("sweep") or {}).get("cross_dataset", False)),
               settings_digest=record.get("settings_digest"))
    row["stereotype_level"] = stereotype_level(row, kind)
    row["rows_digest"] = record.get("rows_digest")
    row.update(diagnose_record(record, auc_floor=auc_floor).columns())
    return row


def dataset_hash(record: dict) -> str | None:
    """The first 12 characters of the record's dataset manifest hash (None when it has none)."""
    value = (record.get("dataset") or {}).get("manifest_hash")
    return str(value)[:12] if value else None


def base_kind(record: dict, annotation: dict | None = None) -> str | None:
    """The base's kind: the sweep's label, else the record's, else the role its toolkit checkpoint records.

    Bases built by ``biastransfer pretrain`` record their role (``biased``, ``control``,
    ``scratch``) in the checkpoint, which every store and result record carries in
    ``backbone_config.checkpoint_meta``; registered backbones record none (None).
    """
    annotation = annotation if annotation is not None else (record.get("sweep") or {})
    kind = annotation.get("base_kind") or record.get("base_kind")
    if not kind:
        meta = (record.get("backbone_config") or {}).get("checkpoint_meta") or {}
        kind = meta.get("role") if isinstance(meta, dict) else None
    return str(kind) if kind else None


def stereotype_level(row: dict, kind: str | None) -> float:
    """P(over-represented group | y=1) of the finetuning set (``stereotype_level``, module docstring)."""
    share = row["level"] if math.isfinite(row["level"]) else row["p"] if kind == "skew" else math.nan
    if kind == "natural":
        share = row["train_share_s_given_y"]
        share = share if math.isfinite(share) else row.get("natural_level", math.nan)
    over = row.get("over_represented_group", math.nan)
    if not math.isfinite(share) or over not in (0.0, 1.0):
        return math.nan
    return share if over == 1.0 else 1.0 - share


__all__ = ["SkippedRecordsWarning", "collect", "record_row"]
