"""The embedded default dataset: procedural avatars with known attributes and known salience.

Faces come from ``python_avatars`` rasterised by ``resvg_py`` on an opaque background.
Each avatar carries a sensitive attribute (``dark_skin``: skin tone BROWN, DARK_BROWN or
BLACK vs PALE, LIGHT or YELLOW) and nine binary targets of graded visual salience
(:data:`TARGETS`). A preset fixes every target's ``(P(t=1|s=1), P(t=1|s=0))``, so the
natural correlation with the sensitive attribute is known exactly; everything else
(part within class, colours, background, a few pixels of jitter) is a random nuisance.

Everything is a function of the seed: attributes, splits and each image's nuisances come
from separate streams (``np.random.default_rng([seed, stream, index])`` per image), so
the same seed and parameters give byte-identical images in any worker count or order.

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
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from extract.datasets.avatars.render import (
    ATTRIBUTES,
    SENSITIVE,
    TARGETS,
    render_rows,
    toggle_changes,
)
from extract.datasets.avatars.sheet import draw_contact_sheet, tile_labels
from extract.datasets.avatars.spec import (
    DEFAULT_PRESET,
    PRESETS,
    SPLIT_FRACTIONS,
    STREAM_IMAGES,
    STREAM_SIGNAL_ATTRIBUTES,
    STREAM_SIGNAL_IMAGES,
    assign_splits,
    check_sensitive_rate,
    expected_rates,
    resolve_preset,
    sample_attributes,
)
from extract.datasets.base import Adapter
from extract.errors import UserError
from extract.io import atomic_write

FORMAT = "biastransfer-avatars"
FORMAT_VERSION = 1
MIN_SIZE, MAX_SIZE = 32, 128
SIGNAL_SAMPLE = 64
CHUNK = 32  # images per worker task: large enough to amortise IPC, small for a smooth bar

__all__ = [
    "ATTRIBUTES", "PRESETS", "SENSITIVE", "TARGETS", "AvatarAdapter", "contact_sheet",
    "expected_rates", "measure_signal_strength", "render_dataset", "sample_attributes",
]


# -- parallel execution ---------------------------------------------------------------------
def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise UserError(f"workers must be a positive integer (got {workers!r}).")
    return int(workers)


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where available: forking a caller that holds threads (torch, tqdm's
    monitor) is unsafe, and workers only need this module's imports."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _map_chunks(task: Callable, seed: int, stream: int, size: int, rows: np.ndarray, *,
                workers: int, progress: bool, desc: str):
    """Yield ``(start, task(seed, stream, size, start, rows[start:start + CHUNK]))`` per chunk.

    Serial in this process when ``workers == 1``; otherwise a process pool, in completion
    order (each chunk's result depends only on its rows and indices, never on order).
    """
    starts = range(0, len(rows), CHUNK)
    with tqdm(total=len(rows), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        if workers == 1 or len(starts) == 1:
            for start in starts:
                result = task(seed, stream, size, start, rows[start:start + CHUNK])
                bar.update(len(result))
                yield start, result
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(starts)), mp_context=_pool_context()) as pool:
            futures = {pool.submit(task, seed, stream, size, s, rows[s:s + CHUNK]): s for s in starts}
            try:
                for future in as_completed(futures):
                    result = future.result()
                    bar.update(len(result))
                    yield futures[future], result
            finally:
                for future in futures:
                    future.cancel()


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


def render_dataset(
    out: str | Path, *, n: int, size: int = 64, seed: int = 0, preset: str | Mapping = DEFAULT_PRESET,
    sensitive_rate: float = 0.5, signal_sample: int = SIGNAL_SAMPLE, workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Render ``n`` avatars into the HDF5 cache ``out`` (replaced atomically) and return it.

    Parameters
    ----------
    out : path
        The cache file to write; written to a temporary file in the same folder, then
        renamed, so an interrupted render never leaves a file that reads as valid.
    n : int
        Number of images (>= 1).
    size : int
        Side of the square images in pixels, 32 to 128.
    seed : int
        Seed (>= 0) of every random choice.
    preset : str or mapping
        A name in :data:`PRESETS` or ``{target: (P(t=1|s=1), P(t=1|s=0))}``.
    sensitive_rate : float
        P(dark_skin = 1), strictly between 0 and 1.
    signal_sample : int
        Avatars used to measure the ground-truth signal strength.
    workers : int, optional
        Rendering processes; default ``os.cpu_count()``. The images do not depend on it.
    progress : bool
        Show tqdm progress bars.

    Notes
    -----
    With ``workers > 1`` the worker processes start by forkserver (spawn where that is
    missing), so a script that calls this must do so under ``if __name__ == "__main__":``.
    """
    n = _check_int("n", n, 1)
    size = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    seed = _check_int("seed", seed, 0)
    signal_sample = _check_int("signal_sample", signal_sample, 1)
    spec = resolve_preset(preset)
    rate = check_sensitive_rate(sensitive_rate)
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


class AvatarAdapter(Adapter):
    """Adapter over an avatar cache file written by :func:`render_dataset`.

    ``root`` is the ``.h5`` file itself; ``path`` entries are virtual names inside it.
    :meth:`read_images` is the fast path (one contiguous read of ``/images``, then numpy
    indexing).
    """

    name = "avatars"
    EXPECTED_LAYOUT = (
        "an avatar cache .h5 file written by `biastransfer avatars render` "
        "(/images uint8 N x H x W x 3 and /metadata/*)"
    )

    def __init__(self, root: str | Path):
        super().__init__(root)
        self._images: np.ndarray | None = None
        if not self.root.is_file():
            raise self.layout_error(f"{self.root} is not a file")
        try:
            with h5py.File(self.root, "r") as h5:
                if h5.attrs.get("format") != FORMAT or "images" not in h5 or "metadata" not in h5:
                    raise self.layout_error(f"{self.root} is not a complete avatar cache")
                self.generator = json.loads(h5.attrs["generator"])
                self.signal_strength = json.loads(h5.attrs["signal_strength"])
                self.image_shape = tuple(h5["images"].shape[1:])
        except OSError:
            raise self.layout_error(f"{self.root} is not a readable HDF5 file") from None
        except (KeyError, ValueError):
            raise self.layout_error(f"{self.root} has malformed avatar cache attributes") from None
        self.sensitive_attribute = self.generator["sensitive_attribute"]
        self.targets = list(self.generator["targets"])

    def _build_metadata(self) -> pd.DataFrame:
        with h5py.File(self.root, "r") as h5:
            group = h5["metadata"]
            columns = json.loads(group.attrs["columns"])
            missing = [c for c in columns if c not in group]
            if missing:
                raise self.layout_error(f"{self.root} lacks the metadata column(s) {missing}")
            data = {c: group[c][()] for c in columns}
        for col in ("image_id", "path", "split"):
            data[col] = np.char.decode(data[col], "ascii")
        return pd.DataFrame(data)

    def read_images(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Images of the rows ``indices`` (positions or a boolean mask; all rows if None).

        Returns
        -------
        ndarray of shape (k, H, W, 3), uint8
            A copy when ``indices`` is given; the read-only cached array otherwise.
        """
        if self._images is None:
            with h5py.File(self.root, "r") as h5:
                self._images = h5["images"][()]  # one contiguous read, never per row
            self._images.flags.writeable = False
        if indices is None:
            return self._images
        indices = np.asarray(indices)
        return self._images[indices if indices.dtype == bool else indices.astype(np.int64)]

    def open_image(self, i: int) -> Image.Image:
        """Row ``i`` as an RGB :class:`PIL.Image.Image`."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} is out of range for {len(self)} avatars")
        return Image.fromarray(self.read_images([i])[0], mode="RGB")


def contact_sheet(cache_path: str | Path, out_png: str | Path, *, n: int = 32, columns: int = 8, seed: int = 0) -> Path:
    """Write a PNG grid of ``n`` seeded random avatars from a cache, each labelled with the
    short names of its positive attributes (e.g. ``dark hat glasses``); return its path."""
    n = _check_int("n", n, 1)
    columns = _check_int("columns", columns, 1)
    seed = _check_int("seed", seed, 0)
    adapter = AvatarAdapter(cache_path)
    out_png = _writable_target(out_png, "contact sheet")
    meta = adapter.metadata()
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(meta), size=min(n, len(meta)), replace=False))
    names = [c for c in ATTRIBUTES if c in meta.columns]
    labels = tile_labels(meta[names].to_numpy()[picked], names)
    title = f"{Path(cache_path).name}: preset {adapter.generator['preset']}, seed {adapter.generator['seed']}"
    sheet = draw_contact_sheet(adapter.read_images(picked), labels, columns=columns, title=title)
    sheet.save(out_png, format="PNG")
    return out_png
