"""`biastransfer reproduce` end to end at a reduced size (32 px avatars, a few cells per stage)."""

import socket
import subprocess
import sys
from dataclasses import replace

import pandas as pd

from analyze.reproduce.findings import COLUMNS
from analyze.reproduce.run import PRESETS, run_reproduce
from analyze.reproduce.verdicts import VERDICTS

# the tiny preset, smaller still: one control besides the pair's, two salience replicates
MICRO = replace(PRESETS["tiny"], n=320, paper_n=32, sizes=(24, 32), finetune_sizes=(24, 32), curation_n=24,
                subselection_n=24, pair_sizes=(32,), salience_replicates=2)
PAPER_IDS = ["1a", "1a+", "1b", "1b+", "2a", "2b", "3", "4a-imagenet", "4b-imagenet", "4a-scratch", "4b-scratch",
             "4a-biased", "4b-biased", "5"]


def test_reproduce_writes_the_findings_table_and_resumes(tmp_path, capsys):
    csv = run_reproduce(out=tmp_path, config=MICRO)
    printed = capsys.readouterr().out
    for stage in range(1, 10):
        assert f"[{stage}/9]" in printed and "done in" in printed
    assert "cells: " in printed and "finetune (" in printed  # the run's cell count
    findings = pd.read_csv(csv)
    assert list(findings.columns) == COLUMNS
    for runner in ("finetune", "probe (proxy)"):  # W&R's findings 1-5 for both runners
        wr = findings["runner"].eq(runner) & ~findings["id"].astype(str).str.startswith("R")  # R*: Ranjit et al.
        assert list(findings.loc[wr, "id"].astype(str)) == PAPER_IDS
    assert list(findings["id"].astype(str))[-7:] == ["6", "7", "R1", "R1-faithful", "R2", "R3", "R3b"]
    assert set(findings["verdict"]) <= set(VERDICTS)
    decided = findings[findings["verdict"] != "inconclusive"]
    assert decided["number"].notna().all()  # a verdict is never given without its number
    undecided = findings[findings["verdict"] == "inconclusive"]
    assert undecided["reason"].notna().all() and (undecided["reason"].str.len() > 0).all()
    assert findings.set_index("id").loc["7", "verdict"] == "inconclusive"  # no geography results given
    wr_finetunes = findings["runner"].eq("finetune") & ~findings["id"].astype(str).str.startswith("R")
    assert findings.loc[wr_finetunes, "deviation"].str.contains("tiny preset").all()
    ranjit = findings[findings["id"].astype(str).str.startswith("R")]  # Ranjit et al.'s rows name their own
    assert ranjit["deviation"].str.contains("avatars instead of COCO").all()
    underrep = pd.read_csv(tmp_path / "underrep.csv")
    assert set(underrep["role"]) == {"A", "B"} and underrep["auc_a"].between(0, 1).all()
    table = pd.read_csv(tmp_path / "table.csv")
    assert {"probe", "finetune"} <= set(table["runner"])
    finetuned = table[table["runner"] == "finetune"]
    # the scratch base ran finding 4's cells with its own settings; the pairs experiment was finetuned too
    assert "scratch" in set(finetuned["base_kind"]) and "underrepresentation" in set(finetuned["spec_kind"])
    assert {"natural", "skew", "correlation", "subselection"} <= set(finetuned["spec_kind"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.index("The papers' findings") < report.index("The sweep")
    assert (tmp_path / "findings" / "findings.md").read_text().count("| 1a |") == 2
    # a rerun reuses every cell and the pairs table, and clears what a killed run left mid-write
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    render = tmp_path / "avatars" / f".avatars-320-32px-seed0.h5.{dead.pid}@{socket.gethostname()}.k1ll3d.tmp"
    render.write_bytes(b"\0" * 4096)
    run_reproduce(out=tmp_path, config=MICRO, report=False)
    again = capsys.readouterr().out
    assert " 0 probe cells fitted" in again and "reused" in again and "(0 trained in this run)" in again
    assert not render.exists() and "removed 1 temporary file(s)" in again
    assert pd.read_csv(csv)["verdict"].tolist() == findings["verdict"].tolist()
