"""Temporary files: named after their writer, removed when a sweep starts only if that writer is gone;
outputs get umask-respecting modes (not mkstemp's 0600)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from analyze.results.records import make_record, write_record
from analyze.results.tables import write_table
from analyze.sweep.grid import build_grid
from analyze.sweep.run import sweep
from extract.datasets.avatars import RenderSpec, render_dataset
from extract.io import UNOWNED_STALE_SECONDS, atomic_write, is_stale_temporary, remove_stale_temporaries

HOST = socket.gethostname()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_temporary_is_named_after_its_writer(tmp_path):
    with atomic_write(tmp_path / "x.json") as tmp:
        assert tmp.name.startswith(f".x.json.{os.getpid()}@{HOST}.") and tmp.name.endswith(".tmp")
        assert not is_stale_temporary(tmp)  # this process is alive
        tmp.write_text("{}")
    assert (tmp_path / "x.json").read_text() == "{}" and not list(tmp_path.glob(".*"))


def test_only_temporaries_of_gone_writers_are_removed(tmp_path):
    dead = _dead_pid()
    names = {
        f".a.json.{dead}@{HOST}.k2j3_x.tmp": True,             # killed writer on this host
        f".b.json.{os.getpid()}@{HOST}.abc123.tmp": False,      # a writer still running
        f".c.json.{dead}@some-other-host.abc123.tmp": False,    # another machine's writer
        ".tmp-q8w7e6.json": False,                               # an earlier version's, fresh
        ".tmp-old.json": True,                                   # an earlier version's, old
        ".hidden.json": False,                                   # not a temporary
        "cell.json": False,
    }
    for name in names:
        (tmp_path / name).write_text("")
    old = time.time() - UNOWNED_STALE_SECONDS - 60
    os.utime(tmp_path / ".tmp-old.json", (old, old))
    assert remove_stale_temporaries(tmp_path) == sum(names.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, stale in names.items() if not stale)


def test_a_sweep_start_removes_stale_temporaries(avatar_store, tmp_path):
    grid = build_grid({
        "grid": {"name": "t", "targets": ["hat"], "sensitive": "dark_skin"},
        "backbones": [{"name": "a", "base_kind": "biased", "store": str(avatar_store.path)}],
        "subsets": [{"kind": "correlation", "levels": [0.5], "n": [40], "seeds": [0]}],
        "probe": {"Cs": [1.0]},
    })
    sweep(grid, out=tmp_path, progress=False)
    record = next(tmp_path.glob("*.json"))
    dead = _dead_pid()
    complete = tmp_path / f".{record.name}.{dead}@{HOST}.zz1.tmp"  # killed after writing, before renaming
    complete.write_text(record.read_text())
    empty = tmp_path / f".{record.name}.{dead}@{HOST}.zz2.tmp"     # killed at once
    empty.write_text("")
    grids = tmp_path / "_grids" / f".t.json.{dead}@{HOST}.zz3.tmp"
    grids.write_text("{")
    live = tmp_path / f".{record.name}.{os.getpid()}@{HOST}.zz4.tmp"  # another sweep writing now
    live.write_text("")
    summary = sweep(grid, out=tmp_path, progress=False)
    assert list(summary["status"]) == ["skipped"]
    assert not complete.exists() and not empty.exists() and not grids.exists()
    assert live.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_umask_modes(tmp_path, umask):
    previous = os.umask(umask)
    try:
        record = write_record(tmp_path, make_record(runner="probe", backbone="b", spec={"kind": "natural", "seed": 0},
                                                    metrics={"auc": 0.5}, hyperparameters={}))
        table = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        cache = render_dataset(tmp_path / "cache.h5", spec=RenderSpec(n=4, size=32, seed=0, signal_sample=1), workers=1, progress=False)
    finally:
        os.umask(previous)
    for path in (record, table, cache):
        assert (path.stat().st_mode & 0o777) == 0o666 & ~umask, path
