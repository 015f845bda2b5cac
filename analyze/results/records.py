"""Result records: one JSON file per cell, written atomically, the same for every runner.

A record (``schema`` = :data:`RESULT_SCHEMA`) holds:

- ``cell_id``: a file-name-safe id built from the cell's keys (runner, backbone, spec);
- ``runner``: ``"probe"`` or ``"finetune"``;
- ``backbone``: name; ``backbone_config``: its provenance (weights sha256, preprocessing);
- ``dataset``: name and manifest hash; ``store``: the feature store's path (probes);
- ``spec``: the subset spec's ``to_dict()`` (enough to reproduce the indices), plus
  ``n_train`` / ``n_val`` / ``n_test`` actually used;
- ``hyperparameters``: the chosen values (e.g. ``C``) and the grid searched;
- ``metrics``: flat ``{name: float}`` (NaN written as ``null``) from
  :func:`analyze.metrics.evaluate_runs`;
- ``timings``: seconds; ``versions``: biastransfer, numpy, torch; ``seed``; ``created``;
- ``rows_digest``: :func:`rows_digest` of the spec and the training, validation and test
  rows (pairs replicates across bases); ``diagnosis``: :func:`analyze.metrics.diagnosis.diagnose_record`;
- ``composition``: the training rows' ``train_share_s_given_y`` (P(s=1 | y=1)),
  ``train_share_s`` (P(s=1)) and ``skew`` (their absolute difference, the paper's ``Skew``),
  from :func:`training_composition`.

Files are written to a temporary name in the same folder and renamed, so a killed run never
leaves a half-written record; :func:`read_record` rejects anything that does not parse or
lacks the schema fields.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from extract import __version__
from extract.errors import UserError
from extract.io import write_text

RESULT_SCHEMA = "biastransfer-result-v1"
REQUIRED_FIELDS = ("schema", "cell_id", "runner", "backbone", "spec", "metrics")


def cell_id(*, runner: str, backbone: str, spec: dict) -> str:
    """A readable, file-name-safe, unique id for one cell."""
    keys = [runner, Path(str(backbone)).name, spec.get("kind", "spec")]
    for field in ("target", "attr_a", "sensitive", "attr_b", "level", "p", "share_a", "share", "n", "seed"):
        if field in spec and spec[field] is not None:
            keys.append(f"{field}{spec[field]}")
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "-", "__".join(map(str, keys)))
    digest = hashlib.sha256(json.dumps([runner, str(backbone), spec], sort_keys=True).encode()).hexdigest()[:10]
    return f"{readable}__{digest}"


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


RECORD_SECTIONS = ("backbone_config", "dataset", "sizes", "timings")


def make_record(*, runner: str, backbone: str, spec: dict, metrics: dict, hyperparameters: dict,
                sections: dict | None = None, extra: dict | None = None) -> dict:
    """Assemble a result record (see the module docstring for the fields).

    ``sections`` holds the record's optional sections :data:`RECORD_SECTIONS`
    (``backbone_config``, ``dataset``, ``sizes``, ``timings``; each ``{}`` when absent);
    ``extra`` adds top-level fields.
    """
    import torch

    sections = dict(sections or {})
    unknown = sorted(set(sections) - set(RECORD_SECTIONS))
    if unknown:
        raise UserError(f"unknown record section `{unknown[0]}`; `sections` takes {list(RECORD_SECTIONS)}.")

    return _clean({
        "schema": RESULT_SCHEMA,
        "cell_id": cell_id(runner=runner, backbone=backbone, spec=spec),
        "runner": runner,
        "backbone": str(backbone),
        "backbone_config": sections.get("backbone_config") or {},
        "dataset": sections.get("dataset") or {},
        "spec": spec,
        "sizes": sections.get("sizes") or {},
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "timings": sections.get("timings") or {},
        "seed": spec.get("seed"),
        "versions": {"biastransfer": __version__, "numpy": np.__version__, "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    })


def rows_digest(spec: dict, *rows) -> str:
    """A short hash of a cell's spec and row positions (training, validation, test).

    Two cells with the same digest were fitted and evaluated on the same rows, so their
    replicates can be paired by seed (``docs/science.md`` section 7); records carry it as
    ``rows_digest``.
    """
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for part in rows:
        digest.update(b"|" + np.ascontiguousarray(np.asarray(part, dtype=np.int64)).tobytes())
    return digest.hexdigest()[:16]


def training_composition(y_train, s_train) -> dict:
    """``{"train_share_s_given_y", "train_share_s", "skew"}`` of training labels ``y`` and groups ``s``
    (rows with an unknown group, -1, are left out; None where a share has no rows)."""
    y, s = np.asarray(y_train), np.asarray(s_train)
    known = s >= 0
    given_y = float(np.mean(s[known & (y == 1)] == 1)) if np.any(known & (y == 1)) else None
    overall = float(np.mean(s[known] == 1)) if np.any(known) else None
    skew = None if given_y is None or overall is None else abs(given_y - overall)
    return {"train_share_s_given_y": given_y, "train_share_s": overall, "skew": skew}


def _unwritable(folder: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write results into {folder} ({exc.strerror or exc.__class__.__name__}); "
                     "choose a writable `out` folder.")


def check_results_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there.

    Call it before loading stores or fitting, so an unwritable ``--out`` fails in a second
    rather than after the work; raises :class:`UserError` naming the folder.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    return folder


def write_record(folder: str | Path, record: dict) -> Path:
    """Write ``record`` as ``<folder>/<cell_id>.json`` atomically (temp file + rename)."""
    path = Path(folder) / f"{record['cell_id']}.json"
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False)
    return write_text(path, text, hint="choose a writable `out` folder")


def read_record(path: str | Path) -> dict:
    """Read and validate one record; a truncated or foreign file is a :class:`UserError`."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"result file {path} is unreadable or truncated ({exc.__class__.__name__}); delete it and rerun the cell.") from None
    if not isinstance(record, dict) or record.get("schema") != RESULT_SCHEMA or any(k not in record for k in REQUIRED_FIELDS):
        raise UserError(f"result file {path} is not a {RESULT_SCHEMA} record; delete it and rerun the cell.")
    return record


def record_exists(folder: str | Path, cell: str) -> bool:
    """True when a valid record for ``cell`` is already in ``folder`` (for --skip-existing)."""
    path = Path(folder) / f"{cell}.json"
    if not path.is_file():
        return False
    try:
        read_record(path)
    except UserError:
        return False
    return True
