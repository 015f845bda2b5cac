"""Rendering in parallel: the worker count, the process pool and the chunked map over rows."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
from tqdm.auto import tqdm

from extract.errors import UserError

CHUNK = 32  # images per worker task: large enough to amortise IPC, small for a smooth bar


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
