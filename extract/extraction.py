"""The extraction loop: dataset adapter + backbone -> one HDF5 feature store.

CPU side (DataLoader workers or the main process): decode, resize the shorter side and
centre-crop as uint8 (:func:`extract.image_prep.prepare_uint8`), one batch per item.
Adapters with an in-memory fast path (``read_images(indices) -> (k, H, W, 3) uint8``) are
read a batch at a time; others row by row through ``open_image(i)``. Both paths share the
same resize code, so they give identical features. With ``decode="device"`` the workers
only read the files and JPEGs are decoded, resized and cropped on the device
(:mod:`extract.device_decode`).

Device side: uint8 batches travel to the device (pinned, non-blocking on CUDA) and are
scaled and normalised there. On CUDA the forward runs under bf16 autocast with
channels_last; on CPU in float32. Features are stored as float16.

Finished batches are written in order by one background thread while the next batch is
computed (:mod:`extract.store.background`); each write flushes its rows before the counter
that vouches for them, so a killed run resumes from the rows already written, and a failed
write stops the run before the store is finalised. The work is deterministic (no random
transforms, fixed batch boundaries), so an interrupted-and-resumed run gives the same
features as an uninterrupted one when batch size, device, precision and decode are the same.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from extract.backbones import Backbone, Preprocess
from extract.datasets.base import BASE_COLUMNS, Adapter
from extract.device_decode import DECODE_MODES, DeviceDecoder, check_decode, read_encoded, rgb_tensor
from extract.devices import resolve_device
from extract.errors import UserError
from extract.image_prep import prepare_uint8
from extract.parsing import FromMapping
from extract.store.background import BackgroundWriter
from extract.store.reader import (
    StoreWriter,
    existing_store_matches,
    make_provenance,
)
from extract.paths import store_output_path
from extract.store.writer import check_store_output

log = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 16  # JPEG decode needs many cores to feed a GPU (PERFORMANCE.md)


def default_num_workers(adapter: Adapter) -> int:
    """Loader processes: none for in-memory adapters, else all cores but one (at most 16)."""
    if hasattr(adapter, "read_images"):
        return 0  # the images are already decoded in memory: copying them to workers costs more
    return max(0, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 1) - 1))


class BatchImages(Dataset):
    """Item ``b`` is ``(start, images)``: the uint8 batch (k, 3, crop, crop) of rows ``start:start+k``.

    With ``decode="device"`` ``images`` is instead the dict of
    :func:`extract.device_decode.read_encoded` (JPEGs still encoded). A :class:`UserError`
    raised by the adapter (missing or corrupt image) is returned as ``(start, message)``
    instead, because DataLoader workers would wrap it in a traceback; the main process
    raises it again with the original sentence.
    """

    def __init__(self, adapter: Adapter, preprocess: Preprocess, *, first_row: int, n_rows: int, batch_size: int,
                 decode: str = "host"):
        self.adapter = adapter
        self.preprocess = preprocess
        self.decode = decode
        self.starts = list(range(first_row, n_rows, batch_size))
        self.n_rows = n_rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, b: int):
        start = self.starts[b]
        rows = np.arange(start, min(start + self.batch_size, self.n_rows))
        try:
            return start, self._read(rows)
        except UserError as exc:
            return start, str(exc)

    def _read(self, rows: np.ndarray) -> torch.Tensor | dict:
        if self.decode == "device":
            return read_encoded(self.adapter, rows, self.preprocess)
        if hasattr(self.adapter, "read_images"):
            array = np.asarray(self.adapter.read_images(rows))
            if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or len(array) != len(rows):
                raise TypeError(f"read_images returned {array.dtype} {array.shape}; expected ({len(rows)}, H, W, 3) uint8")
            return prepare_uint8(torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2), self.preprocess)
        images = []
        for i in rows:
            images.append(prepare_uint8(rgb_tensor(self.adapter.open_image(int(i))), self.preprocess))
        return torch.stack(images)


def _set_worker_threads(_: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the compute threads


@dataclass(frozen=True)
class ExtractOptions(FromMapping):
    """How a feature store is written (:func:`extract_features`, :func:`extract.sharded.extract_sharded`).

    Parameters
    ----------
    batch_size : int, default=256
        Images per forward pass (and per written block).
    device : str, default="auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    num_workers : int, optional
        Decode worker processes (0: the main process); default :func:`default_num_workers`.
    resume : bool, default=True
        Continue a partial store written with the same dataset, backbone and settings.
    overwrite : bool, default=False
        Redo a complete store instead of keeping it.
    progress : bool, default=True
        Show a progress bar.
    decode : {"host", "device"}, default="host"
        ``"host"``: workers decode and resize; ``"device"``: JPEG files decoded on the device.
    """

    batch_size: int = 256
    device: str = "auto"
    num_workers: int | None = None
    resume: bool = True
    overwrite: bool = False
    progress: bool = True
    decode: str = "host"

    def __post_init__(self):
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise UserError(f"`batch_size` {size!r} is invalid; pass a positive integer such as 256.")
        workers = self.num_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                    or workers < 0):
            raise UserError(f"`num_workers` {workers!r} is invalid; pass 0 (main process) or a positive number.")
        if not isinstance(self.device, (str, torch.device)):
            raise UserError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}.")
        for name in ("resume", "overwrite", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"`{name}` must be true or false, got {getattr(self, name)!r}.")
        if self.decode not in DECODE_MODES:
            raise UserError(f"`decode` {self.decode!r} is not a decode mode; use 'host' (workers decode) or "
                            "'device' (JPEG files decoded on the device).")


def extract_features(adapter: Adapter, backbone: Backbone, out: str | Path, *,
                     options: ExtractOptions = ExtractOptions()) -> Path:
    """Embed every image of ``adapter`` with ``backbone`` into the feature store ``out``.

    ``options`` (:class:`ExtractOptions`) sets the batch size, device, decode workers and
    mode, and what happens to an existing store (``resume``, ``overwrite``).
    """
    out = check_store_output(store_output_path(out, adapter.name, backbone.name))  # before any heavy work
    meta = adapter.metadata()
    if len(meta) == 0:
        raise UserError(f"the {adapter.name} dataset has no images; check the root and the manifest.")
    dev = resolve_device(options.device)
    decode = check_decode(options.decode, adapter)
    workers = default_num_workers(adapter) if options.num_workers is None else int(options.num_workers)
    settings = {"batch_size": int(options.batch_size), "device": str(dev), "num_workers": workers, "decode": decode,
                "precision": "bfloat16" if dev.type == "cuda" else "float32",
                "channels_last": dev.type == "cuda"}
    provenance = make_provenance(dataset_name=adapter.name, manifest_hash=adapter.manifest_hash(), n_rows=len(meta),
                                 backbone_config=backbone.config(), extraction=settings)
    if out.exists() and not options.overwrite and existing_store_matches(out, provenance):
        log.info("%s is already a complete store of %s with %s; skipping (pass --overwrite to redo it)",
                 out, adapter.name, backbone.name)
        return out
    attributes = [c for c in meta.columns if c not in BASE_COLUMNS]
    with StoreWriter.start(out, metadata=meta, attributes=attributes, provenance=provenance,
                           resume=options.resume) as writer:
        _warn_changed_settings(writer, settings)
        began, first_row = time.perf_counter(), writer.rows_written
        _run_batches(adapter, backbone, writer, device=dev, settings=settings, progress=options.progress)
        elapsed = time.perf_counter() - began
        path = writer.finalize()
    done = writer.n_rows - first_row
    log.info("wrote %d rows x %d features to %s (%d new in %.1f s, %.0f images/s)", writer.n_rows,
             writer.feature_dim, path, done, elapsed, done / max(elapsed, 1e-9))
    return path


def _warn_changed_settings(writer: StoreWriter, settings: dict) -> None:
    before = writer.resumed_settings
    if not before:
        return
    before = {"decode": "host", **before}  # stores written before the decode option decoded on the host
    changed = [k for k in ("batch_size", "device", "decode") if before.get(k) != settings[k]]
    if changed:
        log.warning("resuming with a different %s than the interrupted run (%s); features can differ in the last "
                    "bits from an uninterrupted run", " and ".join(changed), {k: before.get(k) for k in changed})


def _run_batches(adapter: Adapter, backbone: Backbone, writer: StoreWriter, *, device: torch.device,
                 settings: dict, progress: bool) -> None:
    """Forward every remaining batch and hand it to the background writer.

    Raises the adapter's UserError as is, and the writer's error (disk, NaN features) by
    the next batch or, at the latest, before returning, so the store is never finalised
    after a failed write.
    """
    on_cuda = device.type == "cuda"
    images = BatchImages(adapter, backbone.preprocess, first_row=writer.rows_written, n_rows=writer.n_rows,
                         batch_size=settings["batch_size"], decode=settings["decode"])
    workers = settings["num_workers"]
    loader = DataLoader(images, batch_size=None, shuffle=False, num_workers=workers, pin_memory=on_cuda,
                        worker_init_fn=_set_worker_threads if workers else None)
    model = backbone.model.eval().to(device)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if settings["decode"] == "device":
        to_device = DeviceDecoder(backbone.preprocess, device)
    else:
        def to_device(batch):
            return batch.to(device, non_blocking=on_cuda)
    normalise = _Normaliser(backbone.preprocess, device)
    bar = tqdm(total=writer.n_rows, initial=writer.rows_written, unit="img", disable=not progress,
               desc=f"extract {backbone.name}")
    try:
        with BackgroundWriter(writer) as background:
            for start, batch in loader:
                if isinstance(batch, str):
                    raise UserError(batch)
                x = normalise(to_device(batch))
                if settings["channels_last"]:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
                    features = model(x)
                background.submit(int(start), features)
                bar.update(len(features))
    finally:
        bar.close()


class _Normaliser:
    """uint8 (k, 3, H, W) on the device -> float32 ``(x / 255 - mean) / std``."""

    def __init__(self, preprocess: Preprocess, device: torch.device):
        self.mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocess.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch.to(torch.float32).div_(255.0) - self.mean).div_(self.std)


__all__ = ["BatchImages", "ExtractOptions", "default_num_workers", "extract_features", "prepare_uint8"]
