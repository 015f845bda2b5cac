"""Running work units: in this process, in local joblib (loky) processes, or on Dask.

:func:`run_unit` is the one function every backend calls. It runs with ONE torch and BLAS
thread (oversubscribed pools cost 8-12x, PERFORMANCE.md), so parallelism is across units,
and it *returns* the records instead of writing them: the driver adds the sweep
annotation and writes each record atomically as its unit finishes. Workers therefore need
to read the stores (and, for finetunes, the dataset), but never to write into the results
folder: a Dask cluster needs no shared results folder.

Backends (no home-made cluster code): joblib's loky processes with
``inner_max_num_threads=1``; ``dask.distributed`` through ``client.map`` and
``as_completed`` (a ``Client`` to a running scheduler, or a ``LocalCluster`` with one
thread per worker). Work units and records cross process boundaries through the engines'
own serialisation (plain dicts, strings and numbers only).

Inside a pool worker (loky or Dask) a finetune unit decodes its images in the worker itself
(``num_workers=0``): a worker process cannot start DataLoader processes of its own, and one
thread per unit is the design anyway. Loky workers exit as soon as the sweep process that
started them dies (:func:`analyze.sweep.workers.exit_with_parent`), so a killed sweep leaves no
worker behind; a sweep ended by SIGTERM or SIGINT (:func:`analyze.sweep.workers.ending_on_signals`)
kills its loky workers itself, or cancels its Dask futures, as it unwinds.

Memory: a worker memory-maps each store it reads (:class:`extract.store.reader.FeatureStore`),
so every worker shares the same pages and ``n_jobs`` workers hold one copy of a store, not
``n_jobs``. :func:`check_memory` refuses, before anything runs, a local sweep whose stores
plus per-worker working sets would not fit in the memory available.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

# re-exported: they lived here before analyze.sweep.workers (a module a loky worker imports in a blink)
from analyze.sweep.workers import (  # noqa: F401
    PARENT_POLL_SECONDS,
    Terminated,
    exit_with_parent,
    setup_worker,
    tqdm_without_semaphore,
)
from extract.errors import UserError

_DASK_HINT = "install it with `pip install 'biastransfer[cluster]'` (dask[distributed])"
# Resident memory beyond the stores, measured on CelebA-size stores (202,599 x 2,048): a probe
# worker (imports, one batch of rows and solver state, one chunk of test rows, the metadata
# of the two stores it keeps open, its records) and the driver (imports, plan, metadata).
PROBE_WORKER_BYTES = 2**30
DRIVER_BYTES = 2**29


def available_memory() -> int | None:
    """Bytes of memory available to new work (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_needed(units: Sequence, *, workers: int) -> tuple[int, int]:
    """(bytes a local sweep of ``units`` needs, bytes of that in feature stores).

    The stores count once (memory-mapped, shared by every worker); each probe worker adds
    ``PROBE_WORKER_BYTES`` and the driver ``DRIVER_BYTES``. Finetune units are not
    estimated (their memory is the model's and the images', not a store's).
    """
    from analyze.sweep.units import ProbeUnit

    stores = {unit.store for unit in units if isinstance(unit, ProbeUnit)}
    if not stores:
        return 0, 0
    store_bytes = sum(os.stat(path).st_size for path in stores)
    probe_units = sum(isinstance(unit, ProbeUnit) for unit in units)
    return store_bytes + DRIVER_BYTES + min(workers, probe_units) * PROBE_WORKER_BYTES, store_bytes


def check_memory(units: Sequence, *, workers: int) -> None:
    """Raise :class:`UserError` when a local sweep of ``units`` would not fit in available memory."""
    needed, store_bytes = memory_needed(units, workers=workers)
    available = available_memory()
    if not needed or available is None or needed <= available:
        return
    gb = 2**30
    raise UserError(f"this sweep needs about {needed / gb:.1f} GB of memory ({store_bytes / gb:.1f} GB of feature "
                    f"stores, shared by all workers, plus {PROBE_WORKER_BYTES / gb:.1f} GB for each of {workers} "
                    f"worker(s) and {DRIVER_BYTES / gb:.1f} GB for this process) but only {available / gb:.1f} GB is "
                    "available; lower `n_jobs`, run fewer backbones at a time (`backbones`) or free memory.")


@functools.lru_cache(maxsize=2)
def _open_store(path: str, stamp: int):
    """A store opened once per worker process (``stamp``: its mtime, so a rebuilt store reloads)."""
    from extract.store.reader import FeatureStore

    return FeatureStore.open(path)


def run_unit(unit, *, in_pool: bool = False) -> list[dict]:
    """Run one work unit (one thread) and return its records, in the unit's cell order.

    ``in_pool``: the unit runs in a pool worker (loky, Dask), so finetune units decode their
    images in this process instead of starting DataLoader worker processes.
    """
    from analyze.probe.checks import limited_threads
    from analyze.sweep.units import ProbeUnit

    if in_pool:  # a Dask worker runs no loky initializer
        tqdm_without_semaphore()
    with limited_threads(1):
        records = (_run_probe(unit) if isinstance(unit, ProbeUnit)
                   else _run_finetune(unit, num_workers=0 if in_pool else None))
    by_id = {r["cell_id"]: r for r in records}
    missing = [c for c in unit.cell_ids if c not in by_id]
    if missing:
        raise RuntimeError(f"the runner returned no record for cell {missing[0]} ({len(missing)} missing)")
    return [by_id[c] for c in unit.cell_ids]


def _run_probe(unit) -> list[dict]:
    from analyze.probe.cells import run_probe_cells
    from analyze.subsets import spec_from_dict

    store = _open_store(unit.store, os.stat(unit.store).st_mtime_ns)
    specs = [spec_from_dict(d) for d in unit.specs]
    return run_probe_cells(store, specs, out=None, n_jobs=1, skip_existing=False, progress=False, **unit.options)


def _run_finetune(unit, *, num_workers: int | None = None) -> list[dict]:
    from analyze.config import EvalConfig, RunContext
    from analyze.finetune.runner import FinetuneOptions, finetune_cells
    from analyze.finetune.search import FinetuneConfig
    from analyze.results.records import read_record
    from analyze.subsets import spec_from_dict, test_rows_option
    from extract.datasets import get_adapter

    specs = [spec_from_dict(d) for d in unit.specs]
    options = dict(unit.options)
    # a unit holds one target, so one resampled test set serves it
    test = test_rows_option(options.pop("test", "split"), specs[0].target,
                            options.get("sensitive") or specs[0].sensitive)
    config = FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in unit.config.items()})
    adapter = get_adapter(unit.dataset, unit.root, **unit.adapter_options)
    with tempfile.TemporaryDirectory(prefix="biastransfer-finetune-") as tmp:
        evaluation = EvalConfig(**{k: options.pop(k) for k in ("policy", "auc_floor", "sensitive") if k in options})
        finetune_cells(specs, adapter=adapter, base=unit.base, config=config, evaluation=evaluation,
                       context=RunContext(out=tmp, overwrite=True, progress=False),
                       options=FinetuneOptions(weights=unit.weights, test=test, num_workers=num_workers, **options))
        return [read_record(path) for path in sorted(Path(tmp).glob("*.json"))]


def _tagged(index: int, unit) -> tuple[int, list[dict]]:
    return index, run_unit(unit, in_pool=True)


def execute(units: Sequence, *, n_jobs: int = 1, client=None,
            cancel_on_stop: bool = True) -> Iterator[tuple[object, list[dict]]]:
    """Yield ``(unit, records)`` as units finish (in any order).

    ``client``: a ``dask.distributed.Client`` (then ``n_jobs`` is ignored); else ``n_jobs``
    loky processes (1: in this process, same single-thread setting).

    When the iteration stops early (an error, a signal, the caller closing the generator),
    loky workers are killed and, with ``cancel_on_stop``, the Dask futures still pending
    are cancelled (not needed for a cluster that is closed next anyway).
    """
    if client is not None:
        from dask.distributed import as_completed

        futures = client.map(functools.partial(run_unit, in_pool=True), list(units), pure=False)
        owner = {future.key: unit for future, unit in zip(futures, units)}
        try:
            # results are fetched here, not by as_completed's own tasks: one of those, cut short
            # by a cluster closed on a signal, logged a traceback from the event loop
            for future in as_completed(futures):
                yield owner[future.key], future.result()
        except BaseException:  # an error, a signal (Terminated) or the caller stopping early
            if cancel_on_stop:  # a cluster that outlives the sweep stops running its units
                client.cancel(futures)
            raise
        return
    if n_jobs == 1 or len(units) <= 1:
        for unit in units:
            yield unit, run_unit(unit)
        return
    from joblib import Parallel, delayed, parallel_config

    # the workers watch this process (its pid passed on: one that dies before a worker has
    # started is noticed too); joblib kills them itself when an exception, such as the
    # Terminated of a signal, reaches its generator, which closing it here ensures
    with parallel_config(backend="loky", inner_max_num_threads=1, initializer=setup_worker,
                         initargs=(os.getpid(),)):
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_tagged)(i, unit) for i, unit in enumerate(units))
        try:
            for index, records in results:
                yield units[index], records
        finally:
            with warnings.catch_warnings():  # stopping early is the point here, not a waste to report
                warnings.filterwarnings("ignore", message=r".*(not used|have been cancelled)", category=UserWarning)
                results.close()


@contextlib.contextmanager
def dask_client(*, scheduler: str | None = None, local_cluster: int | None = None):
    """A Dask client for ``scheduler`` (``tcp://HOST:PORT``) or a new local cluster; None if neither."""
    if scheduler is None and local_cluster is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError(f"`scheduler` and `local_cluster` need dask.distributed; {_DASK_HINT}.") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler} ({exc.__class__.__name__}); "
                            "check the address and that the scheduler is running.") from None
        with client:
            yield client
        return
    if isinstance(local_cluster, bool) or not isinstance(local_cluster, int) or local_cluster < 1:
        raise UserError(f"`local_cluster` must be a number of workers >= 1, got {local_cluster!r}.")
    # one thread per worker process; the nanny also sets OMP/MKL/OPENBLAS_NUM_THREADS=1
    with LocalCluster(n_workers=local_cluster, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        try:
            yield client
        except Terminated:
            # a signal: end the worker processes now; a graceful close waits for each worker to
            # finish starting (importing torch: seconds) before it stops it
            _kill_local_workers(cluster)
            raise


def _kill_local_workers(cluster) -> None:
    """SIGKILL the worker processes of a ``LocalCluster`` this process started (its nannies' children)."""
    import signal

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)
        if isinstance(pid, int) and pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
