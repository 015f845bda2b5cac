"""Store writes on a background thread, so a batch is written while the next one is computed.

The extraction loop hands each finished batch to :class:`BackgroundWriter`, which copies it
to the host (on CUDA: a non-blocking copy into pinned memory, marked by an event, so the
loop can launch the next forward at once) and queues it. One writer thread takes batches
from a bounded queue (``depth`` batches, default 2) and writes them in order with
:meth:`extract.store.reader.StoreWriter.write`; that call still writes the rows before the
``rows_written`` counter that vouches for them, so a killed run resumes exactly as before.

An exception on the writer thread (a disk error, NaN features, Ctrl-C) is raised again in
the loop: by the next :meth:`~BackgroundWriter.submit`, or by :meth:`~BackgroundWriter.close`
at the latest, which is always called before the store is finalised, so a store whose
write failed is never marked complete. After a failure the thread only drains the queue
(it writes nothing more), so the loop can never block on a full queue.
"""

from __future__ import annotations

import logging
import queue
import threading

import torch

from extract.store.reader import StoreWriter

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 2  # batches waiting for the writer; one more is being written
_STOP = object()


class BackgroundWriter:
    """Write ``(start, features)`` batches to ``writer`` on one background thread, in order.

    Use it as a context manager around the loop; leaving the block waits for every queued
    batch to be written (also when the loop raised: rows computed before an error are kept,
    as in a synchronous loop) and raises the writer's error, if any.
    """

    def __init__(self, writer: StoreWriter, *, depth: int = DEFAULT_DEPTH):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="biastransfer-store-writer", daemon=True)
        self._thread.start()

    def submit(self, start: int, features: torch.Tensor) -> None:
        """Queue rows ``start : start + len(features)`` (any device, any float dtype) for writing.

        Blocks while ``depth`` batches are already waiting; raises the writer's error if a
        previous write failed.
        """
        self._raise_if_failed()
        host, ready = _to_host(features)
        self._queue.put((int(start), host, ready))

    def close(self) -> None:
        """Wait until every queued batch is written; raise the first write error, if any."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_if_failed()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the loop failed: keep what was computed before the error, then let its error through
            self.close()
        except BaseException as write_error:  # noqa: BLE001 - the loop's own error wins
            if write_error is not exc:  # the loop may already be raising the writer's error
                log.warning("a queued store write also failed while stopping: %r", write_error)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain: nothing is written after a failed write
            start, host, ready = item
            try:
                if ready is not None:
                    ready.synchronize()  # the device-to-host copy of this batch has landed
                self.writer.write(start, host.numpy())
            except BaseException as error:  # noqa: BLE001 - re-raised in the loop's thread
                self._error = error


def _to_host(features: torch.Tensor) -> tuple[torch.Tensor, "torch.cuda.Event | None"]:
    """Float16 copy of ``features`` on the host; on CUDA a non-blocking copy plus its event."""
    half = features.detach().to(torch.float16)
    if half.device.type != "cuda":
        return half.cpu(), None
    host = torch.empty(half.shape, dtype=half.dtype, pin_memory=True)
    host.copy_(half, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return host, ready


__all__ = ["DEFAULT_DEPTH", "BackgroundWriter"]
