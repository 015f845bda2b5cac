"""A full disk stops ``sweep`` with one sentence; every record on disk is whole and the rerun resumes."""

from __future__ import annotations

import errno
import os

import extract.io
from analyze.cli import main
from analyze.results.collect import collect
from analyze.results.records import read_record

GRID = """
[grid]
name = "df"
targets = ["hat"]
sensitive = "dark_skin"
chunk_size = 2

[[backbones]]
name = "a"
base_kind = "biased"
store = "{store}"

[[subsets]]
kind = "correlation"
levels = [0.0, 0.5, 1.0]
n = [40]
seeds = 2

[probe]
Cs = [1.0]
"""


def test_full_disk_stops_the_sweep_and_the_rerun_resumes(avatar_store, tmp_path, capsys, monkeypatch):
    grid = tmp_path / "df.toml"
    grid.write_text(GRID.format(store=avatar_store.path))
    out = tmp_path / "results"
    flush, records = extract.io._fsync, []

    def fsync(path):  # the third record finds the disk full
        if ".json." in path.name and not path.name.startswith(".df-"):
            records.append(path)
            if len(records) >= 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        flush(path)

    monkeypatch.setattr(extract.io, "_fsync", fsync)
    argv = ["sweep", str(grid), "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "Errno" not in err, err
    assert err.startswith("biastransfer sweep: error: cannot write ") and "no space left on device" in err
    written = sorted(out.glob("*.json"))
    assert len(written) == 2 and all(read_record(p) for p in written)  # whole records only
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file reads as a record
    monkeypatch.undo()
    assert main(argv) == 0
    assert len(collect(out)) == 6
