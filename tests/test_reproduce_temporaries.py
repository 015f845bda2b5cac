"""`reproduce` clears the temporary files of killed runs from its output folders, as `sweep` does
(the same helper, :func:`extract.io.remove_stale_temporaries`): only the toolkit's temporaries
whose process is gone; those of a live process and every other file stay."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import analyze.reproduce.stages as reproduce_stages
from analyze.reproduce.run import PRESETS, run_reproduce

HOST = socket.gethostname()


class _Stop(Exception):
    pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_removes_temporaries_of_killed_runs_only(tmp_path, monkeypatch):
    dead = _dead_pid()
    stale = [  # what a reproduce killed mid-write leaves: renders, a checkpoint, a record, a figure
        tmp_path / "avatars" / f".pretrain-avatars-300-32px-seed0.h5.{dead}@{HOST}.a1b2c3.tmp",
        tmp_path / "avatars" / f".avatars-700-32px-seed0.h5.{dead}@{HOST}.d4e5f6.tmp",
        tmp_path / "bases" / f".avatars-biased-dark_skin.pt.{dead}@{HOST}.x_1.tmp",
        tmp_path / "results" / f".probe__a__b.json.{dead}@{HOST}.x_2.tmp",
        tmp_path / "report" / "figures" / f".correlation.png.{dead}@{HOST}.x_3.tmp",
        tmp_path / f".table.csv.{dead}@{HOST}.x_4.tmp",
    ]
    kept = [
        tmp_path / "avatars" / f".avatars-700-32px-seed0.h5.{os.getpid()}@{HOST}.live.tmp",  # a run writing now
        tmp_path / "avatars" / f".cache.h5.{dead}@another-host.x_5.tmp",  # another machine's writer
        tmp_path / "avatars" / "notes.tmp",                                # the user's files
        tmp_path / "results" / ".keep.json",
        tmp_path / "stores" / "avatars__x.h5.partial",                     # a resumable extraction
        tmp_path / "mine" / f".thing.{dead}@{HOST}.x_6.tmp",               # a folder reproduce never writes
    ]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 1024)

    def stop(*_args, **_kwargs):  # the first stage: the cleanup has run by now
        raise _Stop

    monkeypatch.setattr(reproduce_stages, "render_avatars", stop)
    with pytest.raises(_Stop):
        run_reproduce(out=tmp_path, config=PRESETS["tiny"], report=False)
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
