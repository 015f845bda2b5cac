"""collect refuses a folder with a bad result file unless --skip-bad; then it warns and collects the rest."""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest

from analyze.cli import main
from analyze.config import RunContext
from analyze.probe import ProbeConfig
from analyze.probe.cells import run_probe_cells
from analyze.results.collect import SkippedRecordsWarning, collect
from analyze.subsets import Correlation
from extract.errors import UserError

SPECS = [Correlation("hat", "dark_skin", level, n=40, seed=0) for level in (0.0, 0.5, 1.0)]


@pytest.fixture(scope="module")
def records(avatar_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("good_records")
    run_probe_cells(avatar_store, SPECS, context=RunContext(out=folder, progress=False), config=ProbeConfig(Cs=[1.0]))
    return folder


def _folder_with(records, tmp_path, name, content):
    for path in records.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / name).write_text(content)
    return tmp_path


BAD = {
    "truncated": ('{"schema": "biastransfer-result-v1", "cell_id": "x", "met', r"unreadable or truncated \(JSONDecodeError\)"),
    "foreign": (json.dumps({"hello": 1}), r"is not a biastransfer-result-v1 record"),
    "other schema": (json.dumps({"schema": "biastransfer-result-v0", "cell_id": "x", "metrics": {}}),
                     r"is not a biastransfer-result-v1 record"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_file_is_an_error_by_default(records, tmp_path, kind):
    content, pattern = BAD[kind]
    folder = _folder_with(records, tmp_path, "zz_bad.json", content)
    with pytest.raises(UserError) as info:
        collect(folder)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    assert "zz_bad.json" in message and "pass `skip_bad=True`" in message
    assert re.search(pattern, message), message


def test_skip_bad_collects_the_rest_with_a_warning(records, tmp_path):
    folder = _folder_with(records, tmp_path, "zz_bad.json", "{")
    with pytest.warns(SkippedRecordsWarning, match=r"skipped 1 unreadable or foreign result file"):
        table = collect(folder, skip_bad=True)
    assert len(table) == len(SPECS)


def test_cli_refuses_then_skips(records, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    folder = _folder_with(records, tmp_path / "r", "zz_bad.json", "")
    out = tmp_path / "table.csv"
    assert main(["collect", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("biastransfer collect: error: result file ") and "\n" not in err
    assert "pass --skip-bad to collect the other 3 record(s)" in err
    assert not out.exists()  # no table one row short
    assert main(["collect", str(folder), "--out", str(out), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped 1 unreadable or foreign result file" in captured.err
    assert len(pd.read_csv(out)) == len(SPECS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_an_unreadable_file_is_an_error(records, tmp_path):
    folder = _folder_with(records, tmp_path, "zz_bad.json", "{}")
    (folder / "zz_bad.json").chmod(0)
    with pytest.raises(UserError, match=r"zz_bad\.json is unreadable or truncated \(PermissionError\)"):
        collect(folder)


def test_a_folder_of_only_bad_files_does_not_offer_zero_records(tmp_path):
    folder = tmp_path / "only-bad"
    folder.mkdir()
    (folder / "zz_bad.json").write_text("{")
    with pytest.raises(UserError) as err:
        collect(folder)
    assert "no other record there is readable" in str(err.value) and "other 0" not in str(err.value)
