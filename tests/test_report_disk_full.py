"""A full disk stops ``report`` with one sentence; no report.md or report.html reads as complete."""

from __future__ import annotations

import errno
import os

import pytest

import extract.io
from analyze.cli import main
from tests.test_report_html import report_inputs


@pytest.fixture
def table(tmp_path):
    results, salience, _ = report_inputs(runners=("probe",))
    results.to_csv(tmp_path / "table.csv", index=False)
    salience.to_csv(tmp_path / "salience.csv", index=False)
    return tmp_path


def full_disk_for(monkeypatch, marker: str):
    """Every flush of a temporary file whose name contains ``marker`` fails with ENOSPC."""
    flush = extract.io._fsync

    def fsync(path):
        if marker in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        flush(path)

    monkeypatch.setattr(extract.io, "_fsync", fsync)


@pytest.mark.parametrize("marker", [".png.", "report.html."], ids=["figure", "html page"])
def test_full_disk_stops_the_report(table, tmp_path, capsys, monkeypatch, marker):
    full_disk_for(monkeypatch, marker)
    out = tmp_path / "out"
    argv = ["report", str(table / "table.csv"), "--salience", str(table / "salience.csv"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("biastransfer report: error: cannot write ") and "no space left on device" in err
    assert not (out / "report.md").exists() and not (out / "report.html").exists()
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file is left behind
    monkeypatch.undo()
    assert main(argv) == 0  # space freed: the same command writes the report
    assert "Figure not drawn" not in (out / "report.md").read_text(encoding="utf-8")
