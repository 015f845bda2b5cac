"""``biastransfer sweep``: expand a grid into cells and run them, one JSON record per cell.

A grid (a preset of ``data/grids/`` or a TOML file, see :mod:`analyze.sweep.grid`) names
backbones x subset specs x runners x seeds. The sweep

1. expands and checks every cell before fitting anything (an infeasible cell stops the
   sweep with its one-sentence error, :mod:`analyze.sweep.units`);
2. skips work whose records all exist, read back whole and were made with the same
   settings (``skip_existing``, the default), so a killed sweep resumes where it stopped; a
   probe chunk with any record missing is refitted whole, so resumed and uninterrupted runs
   fit the same batches (:func:`~analyze.sweep.units.pending_part`). Each record carries
   the ``settings`` that decide its numbers and their ``settings_digest``
   (:mod:`analyze.sweep.settings`); a record whose digest differs from the grid's (another C
   grid, learning rates, store, dataset, ...) or that has none (written before the digest
   existed) is refitted, and the summary's ``reason`` says why (``probe.Cs changed``,
   ``no settings digest``; :func:`refit_lines` counts them). Stores or data of different
   datasets for the same cells are refused before anything runs, unless the grid sets
   ``cross_dataset = true`` (:func:`~analyze.sweep.units.check_one_dataset`);
3. runs the units in this process, in ``n_jobs`` local processes (joblib/loky) or on a
   Dask cluster, ONE torch/BLAS thread per worker (:mod:`analyze.sweep.execute`);
4. adds the ``sweep`` annotation (grid, backbone label, ``base_kind``, training-set
   composition and ``skew``) to each record and writes it atomically as its unit finishes;
   temporary files that a killed sweep left in ``out`` are removed when the next one starts
   (:func:`extract.io.remove_stale_temporaries`; those of a sweep still running are kept);
5. ends on SIGTERM or SIGINT as on an error (:func:`analyze.sweep.workers.ending_on_signals`):
   workers killed, a local Dask cluster closed, no temporary file and no /dev/shm entry
   left, only whole records (a rerun resumes from them).

The resolved grid is written to ``<out>/_grids/<name>-<hash>.json`` (provenance).
``biastransfer collect <out>`` then folds the records into one table.

Example
-------
>>> summary = sweep("demo", out="work/results/demo", n_jobs=2)          # doctest: +SKIP
>>> summary["status"].value_counts()                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analyze.results.records import read_record, write_record
from analyze.sweep.execute import check_memory, dask_client, execute
from analyze.sweep.grid import Grid, load_grid
from analyze.sweep.settings import stale_reason
from analyze.sweep.units import SweepPlan, pending_part, plan_sweep
from analyze.sweep.workers import ending_on_signals
from extract.errors import UserError
from extract.io import remove_stale_temporaries, write_text
from extract.paths import work_dir

__all__ = ["existing_state", "refit_lines", "sweep"]


def sweep(grid: Grid | str | Path, *, out: str | Path | None = None, skip_existing: bool = True, n_jobs: int = 1,
          scheduler=None, local_cluster: int | None = None, progress: bool = True,
          dry_run: bool = False) -> pd.DataFrame:
    """Run every cell of ``grid`` and write one record per cell into ``out``.

    Parameters
    ----------
    grid : Grid, preset name or TOML path
        A preset or file is read by :func:`~analyze.sweep.grid.load_grid` (build a Grid with
        it to apply overrides or keep some backbones).
    out : path, optional
        Results folder (default ``work/results/<grid name>``).
    skip_existing : bool
        Skip work units whose records all exist and read back whole.
    n_jobs : int
        Local worker processes (joblib loky), one thread each. They share each store
        (memory-mapped); a local sweep whose stores plus working sets would not fit in the
        available memory is refused before anything runs
        (:func:`~analyze.sweep.execute.check_memory`).
    scheduler : str or dask.distributed.Client, optional
        ``tcp://HOST:PORT`` of a Dask scheduler, or an existing ``Client``; ``local_cluster``:
        start a Dask ``LocalCluster`` with this many single-thread workers. At most one of the two.
    progress : bool
        Show a progress bar over cells.
    dry_run : bool
        Plan and check only; nothing is fitted or written.

    Returns
    -------
    DataFrame, one row per cell in grid order: ``cell_id``, ``runner``, ``backbone``,
    ``base_kind``, ``status`` ("written", "refit" (its record was made with other settings),
    "skipped", or with ``dry_run`` "to run" and "to refit"), ``reason`` (why a cell is
    refitted, e.g. "probe.Cs changed"; None for the others).
    """
    if scheduler is not None and local_cluster is not None:
        raise UserError("give at most one of `scheduler` and `local_cluster`.")
    client = None if scheduler is None or isinstance(scheduler, str) else scheduler
    scheduler = scheduler if isinstance(scheduler, str) else None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise UserError(f"`n_jobs` must be a positive integer, got {n_jobs!r}.")
    if not isinstance(grid, Grid):
        grid = load_grid(grid)
    out = Path(out) if out is not None else work_dir() / "results" / grid.name
    plan = plan_sweep(grid)
    state = {c.cell_id: existing_state(out, c.cell_id, plan) if skip_existing else (False, None) for c in plan.cells}
    todo = [pending_part(u, [state[c][0] for c in u.cell_ids]) for u in plan.units]
    todo = [u for u in todo if u is not None]
    pending = {c for u in todo for c in u.cell_ids}
    reasons = {c: reason for c, (_, reason) in state.items() if reason is not None and c in pending}
    if client is None and scheduler is None:  # a remote cluster's memory is its own
        check_memory(todo, workers=local_cluster or n_jobs)
    if dry_run:
        return _summary(plan, pending, "to run", reasons)
    # SIGTERM and SIGINT unwind the sweep as an exception (analyze.sweep.workers.Terminated): loky
    # workers are killed, a local Dask cluster is closed, a record being written loses only
    # its temporary file, and the process then exits with its semaphores unlinked
    with ending_on_signals():
        _write_manifest(out, grid)
        for folder in (out, out / "_grids"):  # temporary files of an earlier sweep that was killed mid-write
            remove_stale_temporaries(folder)
        if not todo:
            return _summary(plan, pending, "written", reasons)
        total = sum(len(u.cell_ids) for u in todo)
        with tqdm(total=total, unit="cell", desc=f"sweep {grid.name}", disable=not progress) as bar, \
                dask_client(scheduler=scheduler, local_cluster=local_cluster) as own_client, \
                contextlib.closing(execute(todo, n_jobs=n_jobs, client=client or own_client,
                                           cancel_on_stop=local_cluster is None)) as finished:
            for _unit, records in finished:
                for record in records:
                    cell = record["cell_id"]
                    record.update(sweep=plan.annotations[cell], settings=plan.settings[cell],
                                  settings_digest=plan.digests[cell])
                    write_record(out, record)
                bar.update(len(records))
    return _summary(plan, pending, "written", reasons)


def existing_state(out: Path, cell: str, plan: SweepPlan) -> tuple[bool, str | None]:
    """(whether the record of ``cell`` in ``out`` can be reused, why not when it exists but cannot).

    A missing, truncated or foreign file is simply not done (no reason); a valid record made
    with other settings, or without a settings digest, gives the reason it is refitted.
    """
    path = Path(out) / f"{cell}.json"
    if not path.is_file():
        return False, None
    try:
        record = read_record(path)
    except UserError:
        return False, None
    reason = stale_reason(record, plan.settings[cell], plan.digests[cell])
    return reason is None, reason


def refit_lines(summary: pd.DataFrame) -> list[str]:
    """``12 cells refit: probe.Cs changed``: one line per reason, most cells first."""
    if "reason" not in summary.columns:
        return []
    counts = summary["reason"].dropna().value_counts()
    verb = "to refit" if summary["status"].eq("to refit").any() else "refit"
    return [f"{n} cell{'s' if n != 1 else ''} {verb}: {reason}" for reason, n in counts.items()]


def _summary(plan: SweepPlan, pending: set, status: str, reasons: dict) -> pd.DataFrame:
    refit = "to refit" if status == "to run" else "refit"

    def status_of(cell: str) -> str:
        return "skipped" if cell not in pending else refit if cell in reasons else status

    return pd.DataFrame([{"cell_id": c.cell_id, "runner": c.runner, "backbone": c.backbone, "base_kind": c.base_kind,
                          "status": status_of(c.cell_id), "reason": reasons.get(c.cell_id)} for c in plan.cells],
                        columns=["cell_id", "runner", "backbone", "base_kind", "status", "reason"])


def _write_manifest(out: Path, grid: Grid) -> Path:
    """The resolved grid as JSON under ``<out>/_grids/`` (not a record: collect ignores it)."""
    text = json.dumps(grid.to_dict(), indent=1, sort_keys=True)
    path = out / "_grids" / f"{grid.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.json"
    if path.is_file() and path.read_text(encoding="utf-8") == text:  # named by its content: already written
        return path
    return write_text(path, text, hint="choose a writable `out` folder")


# -- command line --------------------------------------------------------------------------


