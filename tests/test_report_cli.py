"""The ``report`` verb: arguments, written files, and one-sentence errors."""

import argparse

import pytest

import analyze.cli.report as report_cli
from extract.errors import UserError
from tests.test_report_html import report_inputs


def _run(argv):
    parser = argparse.ArgumentParser(prog="biastransfer")
    report_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_both_files_from_csv_inputs(tmp_path, capsys):
    results, salience, plan = report_inputs(runners=("probe",))
    paths = {name: tmp_path / f"{name}.csv" for name in ("table", "salience", "plan")}
    for name, frame in zip(paths, (results, salience, plan)):
        frame.to_csv(paths[name], index=False)
    out = tmp_path / "out"
    assert _run(["report", str(paths["table"]), "--salience", str(paths["salience"]), "--plan", str(paths["plan"]),
                 "--out", str(out), "--title", "CLI report"]) == 0
    assert f"wrote {out / 'report.md'} and {out / 'report.html'}" in capsys.readouterr().out
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>CLI report</title>" in page and "Curation plan" in page and "Salience" in page
    assert "Linear probes beside full finetuning" not in page  # one runner only


def test_cli_runner_choice_and_default_out(tmp_path, monkeypatch):
    results, _, _ = report_inputs()
    table = tmp_path / "table.csv"
    results.to_csv(table, index=False)
    monkeypatch.setenv("BIASTRANSFER_WORK", str(tmp_path / "work"))
    assert _run(["report", str(table), "--runner", "finetune"]) == 0
    markdown = (tmp_path / "work" / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Results: full finetuning" in markdown and "linear probes on frozen features" not in markdown


def test_cli_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist; run `biastransfer collect` first"):
        _run(["report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    bad = tmp_path / "bad.csv"
    bad.write_text("backbone,seed\na,0\n")
    with pytest.raises(UserError, match="'fpr_gap_stereotype'"):
        _run(["report", str(bad), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
