"""`biastransfer reproduce` end to end at a reduced size (32 px avatars, a few cells per stage)."""

import socket
import subprocess
import sys

import pandas as pd

from analyze.reproduce.findings import COLUMNS
from analyze.reproduce.run import PRESETS, ReproduceConfig, run_reproduce
from analyze.reproduce.verdicts import VERDICTS

MICRO = ReproduceConfig(n=320, size=32, pretrain_n=300, pretrain_epochs=1,
                        targets=("eyewear", "long_hair", "facial_hair", "smiling"), levels=(0.5, 0.7, 0.8, 1.0),
                        probe_n=32, sizes=(24, 32), subselection_n=24, seeds=(0, 1, 2), finetune_target="eyewear",
                        finetune_n=32, finetune_seeds=(0, 1, 2), finetune_epochs=1, pair_shares=(1.0, 0.2),
                        pair_n=32, salience_replicates=2, imagenet=False, workers=1, progress=False,
                        controls=("avatars-control-hat",),
                        finetune_bases=("avatars-biased-dark_skin", "avatars-control-hat"),
                        ranjit=PRESETS["tiny"].ranjit)


def test_reproduce_writes_the_findings_table_and_resumes(tmp_path, capsys):
    csv = run_reproduce(out=tmp_path, config=MICRO)
    printed = capsys.readouterr().out
    for stage in range(1, 10):
        assert f"[{stage}/9]" in printed and "done in" in printed
    findings = pd.read_csv(csv)
    assert list(findings.columns) == COLUMNS
    assert list(findings["id"].astype(str)) == ["1a", "1b", "1c", "1d", "2a", "2b", "2c", "2d", "2e", "3", "4a", "4b",
                                                "5", "6", "7", "R1", "R1-faithful", "R2", "R3", "R3b"]
    assert set(findings["verdict"]) <= set(VERDICTS)
    decided = findings[findings["verdict"] != "inconclusive"]
    assert decided["number"].notna().all()  # a verdict is never given without its number
    undecided = findings[findings["verdict"] == "inconclusive"]
    assert undecided["reason"].notna().all() and (undecided["reason"].str.len() > 0).all()
    assert findings.set_index("id").loc["7", "verdict"] == "inconclusive"  # no geography results given
    underrep = pd.read_csv(tmp_path / "underrep.csv")
    assert set(underrep["role"]) == {"A", "B"} and underrep["auc_a"].between(0, 1).all()
    table = pd.read_csv(tmp_path / "table.csv")
    assert {"probe", "finetune"} <= set(table["runner"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.index("The papers' findings") < report.index("The sweep")
    assert (tmp_path / "findings" / "findings.md").read_text().count("| 1a |") == 1
    # a rerun reuses every cell and the pairs table, and clears what a killed run left mid-write
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    render = tmp_path / "avatars" / f".avatars-320-32px-seed0.h5.{dead.pid}@{socket.gethostname()}.k1ll3d.tmp"
    render.write_bytes(b"\0" * 4096)
    run_reproduce(out=tmp_path, config=MICRO, report=False)
    again = capsys.readouterr().out
    assert " 0 probe cells fitted" in again and "reused" in again
    assert not render.exists() and "removed 1 temporary file(s)" in again
    assert pd.read_csv(csv)["verdict"].tolist() == findings["verdict"].tolist()
