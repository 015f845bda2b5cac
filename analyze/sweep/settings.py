"""What makes a record's numbers: each sweep cell's settings, their digest, and why a record is stale.

A sweep reuses a record only when it was made with the same settings. A cell's *settings*
(:func:`probe_settings`, :func:`finetune_settings`) hold everything that decides its
numbers, with the runner's defaults filled in:

- the data: the dataset's name and manifest hash (ids, paths, splits and attributes in
  order) and, for probes, the feature store's identity (backbone, weights sha256,
  preprocessing, width, precision; :data:`extract.store.format.IDENTITY_KEYS`); for
  finetunes, the base (name, and the sha256 of a checkpoint or weights file) and the
  dataset adapter's options;
- the subset spec (``to_dict()``);
- the runner's settings: the probe's C grid, selection rule, threshold policy, test
  resampling and solver tolerances; the finetune's learning rates, weight decays, epochs,
  batch size, momentum, flips, freezing, search mode, threshold policy, image size, test
  rows and sensitive attribute;
- :data:`SETTINGS_VERSION`, bumped when a runner's numbers change for the same settings
  (the package version itself is left out: a release that changes no numbers reuses
  every record).

Devices, worker counts, chunk sizes and ``conditions_per_task`` are left out: they change
where and how fast a cell runs, not what it measures. The sweep writes the settings and
their :func:`settings_digest` into each record (``settings``, ``settings_digest``);
:func:`stale_reason` says why an existing record cannot be reused (``probe.Cs changed``,
``no settings digest`` for records written before the digest existed).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from pathlib import Path

from extract.store.format import IDENTITY_KEYS

#: Bump when a runner computes other numbers from the same settings (records of an older
#: version are then refitted, with the reason ``version changed``).
SETTINGS_VERSION = 1
DIGEST_CHARS = 16
DATASET_KEYS = ("dataset_name", "manifest_hash")


def _canonical(value):
    """JSON round trip: tuples become lists, keys strings, so settings compare equal to those read back."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def settings_digest(settings: dict) -> str:
    """A short sha256 of ``settings`` (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)  # tuples and lists dump alike
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


@functools.lru_cache(maxsize=None)
def _signature_defaults(function, names: tuple) -> tuple:
    parameters = inspect.signature(function).parameters
    return tuple((name, parameters[name].default) for name in names)


def _defaults(function, names) -> dict:
    return dict(_signature_defaults(function, tuple(names)))


def probe_settings(provenance: dict, spec: dict | None, options: dict) -> dict:
    """Settings of one probe cell: store ``provenance``, ``spec`` dict, the grid's probe ``options``.

    With ``spec=None``, the settings every cell of that store shares (:func:`with_spec` adds a spec).
    """
    from analyze.config import EvalConfig
    from analyze.probe.cells import run_probe_cells
    from analyze.probe.config import ProbeConfig

    probe, evaluation = ProbeConfig(), EvalConfig()
    runner = {"Cs": probe.Cs, "select": probe.select, "policy": evaluation.policy,
              **_defaults(run_probe_cells, ("test_resample",)),
              **{k: v for k, v in options.items() if k != "device"},
              **{k: getattr(probe, k) for k in ("path", "tol", "max_iter", "fit_intercept", "dtype")}}
    runner["Cs"] = [float(c) for c in runner["Cs"]]
    common = _canonical({
        "version": SETTINGS_VERSION, "runner": "probe",
        "dataset": {"name": provenance["dataset_name"], "manifest_hash": provenance["manifest_hash"]},
        "store": {k: provenance[k] for k in IDENTITY_KEYS if k not in DATASET_KEYS}, "probe": runner})
    return common if spec is None else with_spec(common, spec)


def finetune_settings(*, dataset: dict, base: dict, spec: dict | None, config: dict, options: dict) -> dict:
    """Settings of one finetune cell (``spec=None``: those every cell of the base shares).

    ``dataset``: name, manifest hash and adapter options; ``base``: :func:`base_identity`;
    ``config``: the grid's :class:`~analyze.finetune.search.FinetuneConfig` keys; ``options``:
    the grid's other finetune keys.
    """
    from analyze.config import EvalConfig
    from analyze.finetune.runner import FinetuneOptions
    from analyze.finetune.search import LEGACY_TRAINING, FinetuneConfig

    protocol = dataclasses.asdict(FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in config.items()}))
    # the engine says how the runs are computed, not what they compute (as the device); a schedule or
    # patience at the value runs had before those options existed (not at today's default) leaves the
    # digest as it was, so only records trained that way stay valid
    protocol.pop("engine")
    for key, legacy in LEGACY_TRAINING.items():
        if protocol[key] == legacy:
            protocol.pop(key)
    defaults = {"sensitive": EvalConfig().sensitive, "policy": EvalConfig().policy,
                "image_size": FinetuneOptions().image_size, "search": FinetuneOptions().search}
    runner = {**defaults, "test": "split",
              **{k: v for k, v in options.items() if k not in ("device", "save_backbones", "conditions_per_task")},
              **protocol}
    common = _canonical({"version": SETTINGS_VERSION, "runner": "finetune", "dataset": dataset, "base": base,
                         "finetune": runner})
    return common if spec is None else with_spec(common, spec)


def with_spec(common: dict, spec: dict) -> dict:
    """A cell's settings: the shared ``common`` settings plus its subset ``spec``."""
    return {**common, "spec": _canonical(spec)}


_FILE_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (cached per path, size and modification time)."""
    path = Path(path).expanduser()
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def base_identity(base: str, weights: str | None) -> dict:
    """A finetune base: its name, and the sha256 of the checkpoint or weights file it loads (if any)."""
    def digest(value):
        return file_sha256(value) if value and Path(str(value)).expanduser().is_file() else None

    return {"name": Path(str(base)).name, "sha256": digest(base), "weights": None if weights is None else
            Path(str(weights)).name, "weights_sha256": digest(weights)}


def changed_keys(old, new, prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted keys (at most ``depth`` levels) whose values differ between two settings dicts."""
    if not isinstance(old, dict) or not isinstance(new, dict) or depth == 0:
        return [] if old == new else [prefix or "settings"]
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in old or key not in new:
            found.append(name)
        else:
            found += changed_keys(old[key], new[key], name, depth - 1)
    return found


def stale_reason(record: dict, settings: dict, digest: str) -> str | None:
    """Why ``record`` cannot stand for a cell with ``settings`` (None: it can be reused)."""
    found = record.get("settings_digest")
    if found == digest:
        return None
    if not found:
        return "no settings digest"
    keys = changed_keys(record.get("settings") or {}, settings)
    return f"{', '.join(keys)} changed" if keys else "settings changed"


__all__ = ["SETTINGS_VERSION", "base_identity", "changed_keys", "file_sha256", "finetune_settings", "probe_settings",
           "settings_digest", "stale_reason", "with_spec"]
