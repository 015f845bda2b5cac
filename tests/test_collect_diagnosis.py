"""collect: every cell's diagnosis as columns (from real probe records), the floor option, the printed counts."""

import json

import pytest

from analyze.cli import main
from analyze.metrics.diagnosis import FLAG_COLUMNS, flag_counts
from analyze.config import RunContext
from analyze.probe import ProbeConfig
from analyze.probe.cells import run_probe_cells
from analyze.results.collect import collect
from analyze.subsets import Correlation

# hat is learned well on the avatar store away from the extreme levels (at 0 or 1 skin tone alone solves the
# training rows); a one-value C grid cannot be at an edge, a two-value one always is
SPECS = [Correlation("hat", "dark_skin", level, n=60, seed=seed) for level in (0.25, 0.75) for seed in (0, 1)]


@pytest.fixture(scope="module")
def folders(avatar_store, tmp_path_factory):
    edge, inner = tmp_path_factory.mktemp("edge"), tmp_path_factory.mktemp("inner")
    run_probe_cells(avatar_store, SPECS, context=RunContext(out=edge, progress=False), config=ProbeConfig(Cs=[1e-4, 1e-3]))
    run_probe_cells(avatar_store, SPECS, context=RunContext(out=inner, progress=False), config=ProbeConfig(Cs=[1.0]))
    return edge, inner


def test_records_carry_their_diagnosis_and_rows_digest(folders):
    edge, _ = folders
    records = [json.loads(p.read_text()) for p in sorted(edge.glob("*.json"))]
    assert all(r["diagnosis"]["flags"]["c_at_edge"] for r in records)
    assert all(r["hyperparameters"]["converged"] in (True, False) for r in records)
    # same seed, same spec -> the same rows for every base; another seed -> other rows
    digests = {(r["spec"]["level"], r["spec"]["seed"]): r["rows_digest"] for r in records}
    assert len(set(digests.values())) == len(SPECS)


def test_flag_columns_and_the_floor(folders):
    edge, inner = folders
    table = collect([edge])
    assert set(FLAG_COLUMNS) | {"flagged", "diagnosis", "rows_digest"} <= set(table.columns)
    assert table["flag_c_at_edge"].all() and table["flagged"].all()
    assert table["diagnosis"].str.contains("the smallest of the grid|the largest of the grid").all()
    clean = collect([inner])
    assert not clean["flag_c_at_edge"].any()
    # the floor decides weak_task alone
    strict = collect([inner], auc_floor=0.999)
    assert (strict["flag_weak_task"] == (strict["auc"] < 0.999)).all() and strict["flag_weak_task"].any()
    assert not (collect([inner], auc_floor=0.5)["flag_weak_task"]).any()
    # rows match across the two folders (same specs and seeds): the pairing key
    assert set(table["rows_digest"]) == set(clean["rows_digest"])


def test_collect_prints_counts_per_flag(folders, tmp_path, capsys):
    edge, _ = folders
    out = tmp_path / "table.csv"
    assert main(["collect", str(edge), "--out", str(out), "--auc-floor", "0.7"]) == 0
    printed = capsys.readouterr().out
    counts = flag_counts(collect([edge], auc_floor=0.7))
    assert f"probe: flags (of {len(SPECS)} cells): degenerate {counts['degenerate']}, c_at_edge {len(SPECS)}" in printed
    assert f"{counts['flagged']} cells flagged" in printed
