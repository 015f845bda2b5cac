"""Rendering the avatar cache and measuring each attribute's ground-truth signal strength.

The cache is one HDF5 file::

    /images                 uint8 (N, H, W, 3), contiguous
    /metadata/image_id      bytes (N,)  "avatar_000000", ...
    /metadata/path          bytes (N,)  "<image_id>.png" (virtual, inside the cache)
    /metadata/split         bytes (N,)  train / val / test
    /metadata/<attribute>   int8 (N,)   0/1, one per name in ATTRIBUTES
    attrs: format, format_version, generator (JSON), signal_strength (JSON)

``signal_strength[a]`` is the ground truth for salience: the mean absolute pixel change
(0-1 scale, over pixels and channels) between renders with ``a=1`` and ``a=0``, all else
equal, averaged over a seeded sample of avatars.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np

from extract.datasets.avatars.render import (
    ATTRIBUTES,
    SENSITIVE,
    TARGETS,
    render_rows,
    toggle_changes,
)
from extract.datasets.avatars.spec import (
    DEFAULT_PRESET,
    SPLIT_FRACTIONS,
    STREAM_IMAGES,
    STREAM_SIGNAL_ATTRIBUTES,
    STREAM_SIGNAL_IMAGES,
    assign_splits,
    check_sensitive_rate,
    resolve_preset,
    sample_attributes,
)
from extract.datasets.avatars.workers import _map_chunks, _resolve_workers
from extract.errors import UserError
from extract.io import atomic_write
from extract.parsing import FromMapping

FORMAT = "biastransfer-avatars"
FORMAT_VERSION = 1
MIN_SIZE, MAX_SIZE = 32, 128
SIGNAL_SAMPLE = 64


# -- validation -------------------------------------------------------------------------------
def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserError(f"{name} must be an integer {bound} (got {value!r}).")
    return int(value)


def _writable_target(out: str | Path, what: str) -> Path:
    """The output path, its folder created; one sentence if it cannot be written."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"the {what} output {out} is a folder; give a file path instead.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {out.parent} for the {what} ({exc.strerror}); choose a writable location.") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"the folder {out.parent} is not writable; choose a writable location for the {what}.")
    return out


# -- public API -------------------------------------------------------------------------------
def measure_signal_strength(
    *, size: int = 64, n: int = SIGNAL_SAMPLE, seed: int = 0, preset: str | Mapping = DEFAULT_PRESET,
    sensitive_rate: float = 0.5, workers: int | None = 1, progress: bool = False,
) -> dict[str, float]:
    """Ground-truth signal strength of every attribute, measured on ``n`` seeded avatars.

    For each avatar of the sample (attributes drawn from ``preset``, nuisances from their
    own stream) and each attribute ``a``, render the avatar as is and with ``a`` flipped,
    everything else fixed, and take the mean absolute pixel difference (0-1 scale, over
    pixels and channels). The strength is its mean over the sample. Occlusion is part of
    it: under a hat, flipping ``long_hair`` changes nothing.

    Returns
    -------
    dict
        ``attribute -> mean absolute change`` for ``dark_skin`` and every target; always
        >= 0, larger means more visible.
    """
    n = _check_int("the signal-strength sample n", n, 1)
    size = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    seed = _check_int("seed", seed, 0)
    rows = sample_attributes(n, seed=seed, preset=preset, sensitive_rate=sensitive_rate, stream=STREAM_SIGNAL_ATTRIBUTES)
    changes = np.empty((n, len(ATTRIBUTES)))
    for start, block in _map_chunks(toggle_changes, seed, STREAM_SIGNAL_IMAGES, size, rows,
                                    workers=_resolve_workers(workers), progress=progress, desc="signal strength"):
        changes[start:start + len(block)] = block
    return {name: float(value) for name, value in zip(ATTRIBUTES, changes.mean(axis=0))}


@dataclass(frozen=True)
class RenderSpec(FromMapping):
    """What an avatar cache holds: every setting its images and labels depend on.

    Parameters
    ----------
    n : int
        Number of images (>= 1).
    size : int, default=64
        Side of the square images in pixels, 32 to 128.
    seed : int, default=0
        Seed (>= 0) of every random choice.
    preset : str or mapping, default="balanced"
        A name in :data:`PRESETS` or ``{target: (P(t=1|s=1), P(t=1|s=0))}``.
    sensitive_rate : float, default=0.5
        P(dark_skin = 1), strictly between 0 and 1.
    signal_sample : int, default=64
        Avatars used to measure the ground-truth signal strength.
    """

    n: int
    size: int = 64
    seed: int = 0
    preset: str | Mapping = DEFAULT_PRESET
    sensitive_rate: float = 0.5
    signal_sample: int = SIGNAL_SAMPLE

    def __post_init__(self):
        _check_int("`n`", self.n, 1)
        _check_int("`size`", self.size, MIN_SIZE, MAX_SIZE)
        _check_int("`seed`", self.seed, 0)
        _check_int("`signal_sample`", self.signal_sample, 1)
        resolve_preset(self.preset)
        check_sensitive_rate(self.sensitive_rate)


def render_dataset(out: str | Path, *, spec: RenderSpec, workers: int | None = None, progress: bool = True) -> Path:
    """Render ``n`` avatars into the HDF5 cache ``out`` (replaced atomically) and return it.

    Parameters
    ----------
    out : path
        The cache file to write; written to a temporary file in the same folder, then
        renamed, so an interrupted render never leaves a file that reads as valid.
    spec : RenderSpec
        Number and size of the images, seed, target rates (``preset``), P(dark_skin = 1) and
        the sample that measures the ground-truth signal strength.
    workers : int, optional
        Rendering processes; default ``os.cpu_count()``. The images do not depend on it.
    progress : bool
        Show tqdm progress bars.

    Notes
    -----
    With ``workers > 1`` the worker processes start by forkserver (spawn where that is
    missing), so a script that calls this must do so under ``if __name__ == "__main__":``.
    """
    n, size, seed, signal_sample = int(spec.n), int(spec.size), int(spec.seed), int(spec.signal_sample)
    preset = spec.preset
    spec, rate = resolve_preset(preset), check_sensitive_rate(spec.sensitive_rate)
    workers = _resolve_workers(workers)
    out = _writable_target(out, "avatar cache")

    rows = sample_attributes(n, seed=seed, preset=spec, sensitive_rate=rate)
    with atomic_write(out, hint="choose a writable cache path") as tmp:
        with h5py.File(tmp, "w") as h5:
            images = h5.create_dataset("images", shape=(n, size, size, 3), dtype=np.uint8)
            for start, block in _map_chunks(render_rows, seed, STREAM_IMAGES, size, rows,
                                            workers=workers, progress=progress, desc="render avatars"):
                images[start:start + len(block)] = block
            _write_metadata(h5, rows, assign_splits(n, seed=seed))
            strength = measure_signal_strength(size=size, n=signal_sample, seed=seed, preset=spec,
                                               sensitive_rate=rate, workers=workers, progress=progress)
            h5.attrs["generator"] = json.dumps(_generator_config(
                n=n, size=size, seed=seed, preset=preset, spec=spec, sensitive_rate=rate, signal_sample=signal_sample))
            h5.attrs["signal_strength"] = json.dumps(strength)
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["format"] = FORMAT  # written last: a file without it is not a cache
    return out


def _image_ids(n: int) -> np.ndarray:
    width = max(6, len(str(n - 1)))
    return np.array([f"avatar_{i:0{width}d}" for i in range(n)])


def _write_metadata(h5: h5py.File, rows: np.ndarray, splits: np.ndarray) -> None:
    group = h5.create_group("metadata")
    ids = _image_ids(len(rows))
    group.create_dataset("image_id", data=np.char.encode(ids, "ascii"))
    group.create_dataset("path", data=np.char.encode(np.char.add(ids, ".png"), "ascii"))
    group.create_dataset("split", data=np.char.encode(splits.astype(str), "ascii"))
    for col, name in enumerate(ATTRIBUTES):
        group.create_dataset(name, data=rows[:, col].astype(np.int8))
    group.attrs["columns"] = json.dumps(["image_id", "path", "split", *ATTRIBUTES])


def _generator_config(*, n, size, seed, preset, spec, sensitive_rate, signal_sample) -> dict:
    return {
        "n": n, "size": size, "seed": seed,
        "preset": preset if isinstance(preset, str) else "custom",
        "target_rates": {t: {"p_if_sensitive": p1, "p_if_not": p0} for t, (p1, p0) in spec.items()},
        "sensitive_attribute": SENSITIVE, "sensitive_rate": sensitive_rate, "targets": list(TARGETS),
        "split_fractions": SPLIT_FRACTIONS, "signal_sample": signal_sample,
        "signal_strength_unit": "mean absolute pixel change, 0-1 scale",
        "versions": {pkg: version(pkg) for pkg in ("python-avatars", "resvg-py", "numpy")},
    }
