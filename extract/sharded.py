"""Sharded extraction with ``torchrun``: every rank embeds a contiguous block of rows.

Launch (one process per GPU, or several CPU processes)::

    torchrun --nproc_per_node=4 -m extract.cli.shard --dataset celeba --root ~/data/celeba \\
        --backbone resnet50.v2 --weights ~/w/resnet50-v2.pth --out work/stores/celeba__resnet50.h5
    torchrun --nproc_per_node=4 $(which biastransfer) extract-shard ...   # the same, as a CLI verb

Several nodes: the same command on each node with ``--nnodes=M --node_rank=I
--rdzv_endpoint=HOST:PORT`` (torchrun's options); ``--out`` must then be on a file system
that every node sees, because rank 0 joins the shard files.

How it works:

1. The rows are cut into contiguous shards on *batch boundaries* (:func:`shard_bounds`), so
   every rank forwards exactly the batches a single-process run would: the features are
   bitwise identical to ``biastransfer extract`` with the same batch size, device type and
   thread count.
2. Rank ``r`` of ``W`` writes ``<stem>.shard-<r>-of-<W>.h5`` next to the output with the
   ordinary :func:`extract.extraction.extract_features` over a row-range view of the
   dataset (:func:`row_range`). Each shard is a complete, resumable store of its rows, so a
   killed job resumes shard by shard when the same command is run again.
3. After every rank reports (a ``torch.distributed`` collective: gloo on CPU, NCCL on CUDA),
   rank 0 checks the shards and joins them into ONE store at ``--out`` whose rows, ids,
   splits, attributes and identity provenance equal a single-process run's. ``extraction``
   in the provenance additionally records ``world_size``, ``join`` and per-shard rows,
   device and host.

Join modes (:mod:`extract.store.join`): ``copy`` (default) writes a new store and then
deletes the shard files unless ``--keep-shards``; ``virtual`` writes an HDF5 virtual
dataset over the shard files, which must then stay next to it.

CPU ranks: torchrun sets ``OMP_NUM_THREADS=1`` per process when it starts several; set it to
cores / processes yourself to use all cores (a run is only bitwise comparable to one with the
same thread count).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or a world size of 1) this is
exactly :func:`extract.extraction.extract_features`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from extract.backbones import Backbone
from extract.datasets.base import Adapter
from extract.devices import resolve_device
from extract.errors import UserError
from extract.extraction import MAX_DEFAULT_WORKERS, ExtractOptions, extract_features
from extract.parsing import FromMapping
from extract.store.join import JOIN_MODES, join_shards, joined_provenance
from extract.store.reader import existing_store_matches
from extract.paths import store_output_path
from extract.store.writer import check_store_output

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")
DEFAULT_TIMEOUT = timedelta(hours=24)  # a rank that finished waits for the slowest (resumes are uneven)


# -- plan -----------------------------------------------------------------------------------
def shard_bounds(n_rows: int, *, world_size: int, batch_size: int) -> list[tuple[int, int]]:
    """Contiguous row ranges ``[start, stop)``, one per rank, cut on batch boundaries.

    The ``ceil(n_rows / batch_size)`` batches of a single-process run are dealt out in
    order, ``B // W`` or ``B // W + 1`` per rank; a rank gets an empty range when there are
    fewer batches than ranks.

    Returns
    -------
    list of ``world_size`` (start, stop) tuples covering ``0 .. n_rows`` in order.
    """
    if n_rows < 0 or world_size < 1 or batch_size < 1:
        raise ValueError(f"invalid plan: n_rows={n_rows}, world_size={world_size}, batch_size={batch_size}")
    batches = -(-n_rows // batch_size)
    edges = [min(n_rows, (r * batches // world_size) * batch_size) for r in range(world_size + 1)]
    return [(edges[r], edges[r + 1]) for r in range(world_size)]


def shard_path(out: str | Path, rank: int, world_size: int) -> Path:
    """``<folder>/<stem>.shard-<rank>-of-<world_size><suffix>`` next to the store ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{rank}-of-{world_size}{out.suffix or '.h5'}")


# -- row-range view ---------------------------------------------------------------------------
class RowRange(Adapter):
    """Rows ``start:stop`` of ``parent`` as an adapter of their own (row ``i`` = parent row ``start + i``).

    Its name and images are the parent's; its metadata is the slice (so its manifest hash
    is the slice's). The in-memory fast path is kept by :class:`InMemoryRowRange`.
    """

    def __init__(self, parent: Adapter, start: int, stop: int):
        super().__init__(parent.root)
        meta = parent.metadata()
        if not 0 <= start < stop <= len(meta):
            raise ValueError(f"row range {start}:{stop} is empty or outside 0:{len(meta)}")
        self.parent, self.start, self.stop = parent, int(start), int(stop)
        self.name, self.EXPECTED_LAYOUT = parent.name, parent.EXPECTED_LAYOUT
        self._metadata = meta.iloc[start:stop].reset_index(drop=True)

    def image_path(self, i: int) -> Path:
        return self.parent.image_path(self.start + int(i))

    def open_image(self, i: int):
        return self.parent.open_image(self.start + int(i))


class InMemoryRowRange(RowRange):
    """A :class:`RowRange` of an adapter with ``read_images`` (decoded images in memory)."""

    def read_images(self, indices=None) -> np.ndarray:
        if indices is None:
            return self.parent.read_images(np.arange(self.start, self.stop))
        indices = np.asarray(indices)
        rows = np.flatnonzero(indices) if indices.dtype == bool else indices.astype(np.int64)
        return self.parent.read_images(rows + self.start)


def row_range(adapter: Adapter, start: int, stop: int) -> RowRange:
    """A view of rows ``[start, stop)`` of ``adapter`` that keeps its fast path, if any."""
    cls = InMemoryRowRange if hasattr(adapter, "read_images") else RowRange
    return cls(adapter, start, stop)


# -- distributed context ----------------------------------------------------------------------
@dataclass(frozen=True)
class RankInfo:
    """This process's place in the job, from torchrun's environment variables."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> "RankInfo":
        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        else:
            rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
        return cls(rank, world, local, int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def rank_device(device: str, info: RankInfo) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs, ``cpu`` otherwise."""
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        return "cpu"
    if resolved.index is not None and info.world_size > 1:
        raise UserError(f"`device={device!r}` would put every rank on one GPU; pass `device='cuda'` (or 'auto') so that "
                        "each rank uses cuda:LOCAL_RANK.")
    if info.local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {info.local_rank} has no GPU ({torch.cuda.device_count()} visible); launch at most "
                        f"{torch.cuda.device_count()} processes per node (torchrun's nproc_per_node).")
    return f"cuda:{info.local_rank}"


def default_rank_workers(adapter: Adapter, info: RankInfo) -> int:
    """Decode workers per rank: the node's cores shared by its ranks (none for in-memory data)."""
    if hasattr(adapter, "read_images"):
        return 0
    return max(0, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 1) // info.local_world_size - 1))


@contextmanager
def _process_group(device: str, backend: str, timeout: timedelta):
    """Join torchrun's process group unless the caller already did; leave it on exit.

    ``auto``: NCCL when the rank's device is a GPU, gloo otherwise. Only small status
    dicts travel through it, so gloo also works on GPUs (e.g. where NCCL cannot connect).
    """
    if dist.is_initialized():
        yield
        return
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; use one of {list(BACKENDS)}.")
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(torch.device(device))
    if backend == "nccl" or (backend == "auto" and on_gpu):
        if not on_gpu:
            raise UserError("the nccl backend needs GPUs; use `backend='gloo'` (or 'auto') with `device='cpu'`.")
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device(device))
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _gather(status: dict) -> list[dict]:
    """Every rank's status dict, in rank order (also a barrier)."""
    statuses = [None] * dist.get_world_size()
    dist.all_gather_object(statuses, status)
    return statuses


# -- the run ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardOptions(FromMapping):
    """How the ranks of :func:`extract_sharded` meet and join their shards.

    Parameters
    ----------
    join : {"copy", "virtual"}, default="copy"
        How rank 0 joins the shards (see the module docstring).
    keep_shards : bool, default=False
        Keep the shard files after a copy join (a virtual join always keeps them).
    backend : {"auto", "gloo", "nccl"}, default="auto"
        torch.distributed backend; ``auto``: NCCL on GPUs, gloo on CPU.
    timeout : timedelta, default=24 hours
        How long a rank waits for the others.
    """

    join: str = "copy"
    keep_shards: bool = False
    backend: str = "auto"
    timeout: timedelta = DEFAULT_TIMEOUT

    def __post_init__(self):
        if self.join not in JOIN_MODES:
            raise UserError(f"unknown join mode {self.join!r}; set `join` to one of {list(JOIN_MODES)}.")
        if not isinstance(self.keep_shards, bool):
            raise UserError(f"`keep_shards` must be true or false, got {self.keep_shards!r}.")
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r}; set `backend` to one of {list(BACKENDS)}.")
        if not isinstance(self.timeout, timedelta) or self.timeout <= timedelta(0):
            raise UserError(f"`timeout` must be a positive timedelta, got {self.timeout!r}.")


def extract_sharded(adapter: Adapter, backbone: Backbone, out: str | Path, *,
                    options: ExtractOptions = ExtractOptions(), sharding: ShardOptions = ShardOptions()) -> Path:
    """Embed ``adapter`` with ``backbone`` into the store ``out``, this process being one rank.

    Call it on every rank with the same arguments (torchrun sets ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``). With a world size of 1 it is :func:`extract_features`.

    Parameters
    ----------
    adapter, backbone, out
        As in :func:`extract.extraction.extract_features`; ``out`` is the joined store.
    options : ExtractOptions
        As in :func:`extract.extraction.extract_features`, except that ``batch_size`` also
        sets the shard boundaries (keep it fixed when resuming), ``device`` ``"auto"`` or
        ``"cuda"`` puts each rank on ``cuda:LOCAL_RANK``, ``num_workers`` counts decode workers
        per rank (default :func:`default_rank_workers`) and the progress bar shows on rank 0.
    sharding : ShardOptions
        Join mode, whether to keep the shards, the torch.distributed backend and timeout.

    Returns
    -------
    Path of the complete joined store (on every rank, once rank 0 has joined).
    """
    out = check_store_output(store_output_path(out, adapter.name, backbone.name))
    info = RankInfo.from_env()
    if info.world_size == 1:
        return extract_features(adapter, backbone, out, options=options)
    dev = rank_device(options.device, info)
    join = sharding.join
    with _process_group(dev, sharding.backend, sharding.timeout):
        began = time.perf_counter()
        status, failure = _run_rank(adapter, backbone, out, info, options=options.with_(device=dev))
        statuses = _gather(status)
        _raise_failures(statuses, info, failure)
        if info.rank == 0 and not status["skipped"]:
            log.info("all %d shards done in %.1f s; joining them (%s)", info.world_size, time.perf_counter() - began, join)
            try:
                join_shards(adapter, backbone, out, statuses, mode=join, keep_shards=sharding.keep_shards)
                joined = {"rank": 0, "error": None}
            except Exception as exc:  # reported to every rank, then raised here as is
                joined, failure = {"rank": 0, "error": str(exc)}, exc
        else:
            joined = {"rank": info.rank, "error": None}
        _raise_failures(_gather(joined), info, failure)
    return out


def _run_rank(adapter, backbone, out, info: RankInfo, *, options: ExtractOptions) -> tuple[dict, Exception | None]:
    """Extract this rank's shard (on ``options.device``); never raises, so no rank hangs waiting for a failed one."""
    device = options.device
    path = shard_path(out, info.rank, info.world_size)
    status = {"rank": info.rank, "start": 0, "stop": 0, "path": str(path), "device": device,
              "host": socket.gethostname(), "skipped": False, "error": None}
    try:
        n_rows = len(adapter.metadata())
        start, stop = shard_bounds(n_rows, world_size=info.world_size, batch_size=options.batch_size)[info.rank]
        status.update(start=start, stop=stop)
        precision = "bfloat16" if device.startswith("cuda") else "float32"
        if out.exists() and not options.overwrite and existing_store_matches(out, joined_provenance(
                adapter, backbone, {"precision": precision})):
            log.info("%s is already a complete store of %s with %s; skipping (pass --overwrite to redo it)",
                     out, adapter.name, backbone.name)
            status["skipped"] = True
        elif stop > start:
            workers = default_rank_workers(adapter, info) if options.num_workers is None else int(options.num_workers)
            log.info("rank %d/%d: rows %d-%d on %s -> %s", info.rank, info.world_size, start, stop, device, path.name)
            extract_features(row_range(adapter, start, stop), backbone, path, options=options.with_(
                num_workers=workers, progress=options.progress and info.rank == 0))
        return status, None
    except Exception as exc:
        status["error"] = str(exc)
        return status, exc


def _raise_failures(statuses: list[dict], info: RankInfo, own_failure: Exception | None) -> None:
    """Raise on every rank when any rank failed: its own exception, or a sentence naming the rank."""
    if own_failure is not None:
        raise own_failure
    failed = [s for s in statuses if s["error"]]
    if failed:
        first = failed[0]
        raise UserError(f"rank {first['rank']} of {info.world_size} failed ({first['error'].rstrip('.')}); "
                        "fix that and rerun the same command, which resumes from the shards already written.")


__all__ = ["JOIN_MODES", "InMemoryRowRange", "RankInfo", "RowRange", "ShardOptions", "default_rank_workers", "extract_sharded", "join_shards",
           "rank_device", "row_range", "shard_bounds", "shard_path"]
