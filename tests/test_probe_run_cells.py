"""Probe cells on a real (small) store: records, parity with sklearn, resume, errors."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from analyze.cli import main
from analyze.config import RunContext
from analyze.probe import ProbeConfig
from analyze.probe.cells import build_tasks, natural_direction, run_probe_cells
from analyze.results.records import read_record
from analyze.subsets import Correlation
from extract.errors import UserError

SPECS = [Correlation("hat", "dark_skin", level, n=48, seed=seed) for level in (0.0, 0.5, 1.0) for seed in (0, 1)]


def test_records_written_and_readable(avatar_store, tmp_path):
    records = run_probe_cells(avatar_store, SPECS, context=RunContext(out=tmp_path, progress=False), config=ProbeConfig(Cs=[0.01, 1.0]))
    assert len(records) == len(SPECS)
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == len(SPECS)
    for path in files:
        record = read_record(path)
        assert record["runner"] == "probe"
        assert record["backbone"] == "smallcnn.scratch"
        assert record["sizes"]["n_train"] == 48
        assert 0.0 <= record["metrics"]["auc"] <= 1.0
        assert record["hyperparameters"]["C"] in (0.01, 1.0)


def test_parity_with_sklearn_at_the_chosen_C(avatar_store):
    meta = avatar_store.metadata
    records = run_probe_cells(avatar_store, SPECS[:2], config=ProbeConfig(Cs=[0.1, 1.0]), context=RunContext(progress=False))
    tasks = build_tasks(meta, SPECS[:2])
    X = avatar_store.features.astype(np.float64)
    for record, task in zip(records, tasks):
        C = record["hyperparameters"]["C"]
        ref = LogisticRegression(C=C, tol=1e-8, max_iter=10000).fit(X[task.train], task.labels[task.train])
        auc = roc_auc_score(task.labels[task.test], ref.decision_function(X[task.test]))
        assert abs(record["metrics"]["auc"] - auc) <= 0.002


def test_stereotype_sign_follows_the_natural_direction(avatar_store):
    meta = avatar_store.metadata
    level, over = natural_direction(meta, "hat", "dark_skin")
    (record,) = run_probe_cells(avatar_store, SPECS[:1], config=ProbeConfig(Cs=[1.0]), context=RunContext(progress=False))
    m = record["metrics"]
    raw = m["fpr_group1"] - m["fpr_group0"]
    assert m["fpr_gap"] == pytest.approx(raw)
    expected = raw if over == 1 else -raw
    assert m["fpr_gap_stereotype"] == pytest.approx(expected)
    assert m["natural_level"] == pytest.approx(level)


def test_skip_existing_and_determinism(avatar_store, tmp_path):
    first = run_probe_cells(avatar_store, SPECS[:2], context=RunContext(out=tmp_path, progress=False), config=ProbeConfig(Cs=[1.0]))
    again = run_probe_cells(avatar_store, SPECS[:2], context=RunContext(out=tmp_path, progress=False), config=ProbeConfig(Cs=[1.0]))
    assert again == []
    fresh = run_probe_cells(avatar_store, SPECS[:2], config=ProbeConfig(Cs=[1.0]), context=RunContext(progress=False))
    assert [r["metrics"] for r in fresh] == [r["metrics"] for r in first]


def test_infeasible_cell_names_the_largest_n(avatar_store):
    with pytest.raises(UserError, match="largest feasible n"):
        run_probe_cells(avatar_store, [Correlation("hat", "dark_skin", 0.5, n=100000, seed=0)], context=RunContext(progress=False))


def test_cli_probe_end_to_end(avatar_store, tmp_path, capsys):
    argv = ["probe", "--store", str(avatar_store.path), "--target", "hat", "--sensitive", "dark_skin",
            "--levels", "0,1", "--n", "32", "--seeds", "0", "--Cs", "0.1,1", "--out", str(tmp_path)]
    assert main(argv) == 0
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2
    assert {json.loads(f.read_text())["spec"]["level"] for f in files} == {0.0, 1.0}
    assert main(argv[:-2] + ["--target", "no_such_column", "--out", str(tmp_path / "x")]) == 2
    assert "no_such_column" in capsys.readouterr().err
