"""Sweeps on two small stores: same table with 1 or 2 workers, resume after a kill, early errors, CLI."""

import json

import pandas as pd
import pytest

import analyze.cli
from analyze.results.collect import collect
from analyze.results.records import read_record
from analyze.sweep.grid import load_grid
from analyze.sweep.run import sweep
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore

GRID = """
[grid]
name = "tiny"
targets = ["hat", "long_hair"]
sensitive = "dark_skin"
runners = ["probe"]
chunk_size = 5

[[backbones]]
name = "biased"
base_kind = "biased"
store = "{first}"

[[backbones]]
name = "control"
base_kind = "control"
store = "{second}"

[[subsets]]
kind = "correlation"
levels = [0.0, 0.5, 1.0]
n = [40]
seeds = [0, 1]

[probe]
Cs = [0.1, 1.0]
"""
CELLS = 2 * 2 * 3 * 2  # backbones x targets x levels x seeds


@pytest.fixture(scope="module")
def second_store(avatar_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("stores2") / "avatars__smallcnn_w32.scratch.h5"
    extract_features(AvatarAdapter(avatar_cache), create_backbone("smallcnn_w32.scratch", image_size=32), out, options=ExtractOptions(batch_size=128, device="cpu", progress=False))
    return FeatureStore.open(out)


@pytest.fixture
def grid_file(avatar_store, second_store, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(GRID.format(first=avatar_store.path, second=second_store.path))
    return path


@pytest.fixture(scope="module")
def reference(avatar_store, second_store, tmp_path_factory):
    """The collected table of one uninterrupted run in this process."""
    folder = tmp_path_factory.mktemp("reference")
    grid = tmp_path_factory.mktemp("g") / "tiny.toml"
    grid.write_text(GRID.format(first=avatar_store.path, second=second_store.path))
    summary = sweep(grid, out=folder, progress=False)
    assert list(summary["status"]) == ["written"] * CELLS
    return collect(folder).drop(columns="created")


def test_records_carry_the_sweep_annotation(reference):
    assert len(reference) == CELLS and reference["cell_id"].is_monotonic_increasing
    assert set(reference["base_kind"]) == {"biased", "control"}
    assert set(reference["base_name"]) == {"biased", "control"}
    assert (reference["n_train"] == 40).all() and reference["auc"].between(0, 1).all()
    # a balanced set at level c has P(s=1 | y=1) = c and P(s=1) = 1/2, so skew = |c - 1/2|
    assert reference["train_share_s_given_y"].round(6).tolist() == reference["level"].tolist()
    assert (reference["skew"] - (reference["level"] - 0.5).abs()).abs().max() < 1e-9


def test_two_workers_give_the_same_table(grid_file, reference, tmp_path):
    sweep(grid_file, out=tmp_path, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(collect(tmp_path).drop(columns="created"), reference)


def test_resume_after_a_kill_gives_the_same_table(grid_file, reference, tmp_path):
    sweep(grid_file, out=tmp_path, progress=False)
    files = sorted(tmp_path.glob("*.json"))
    for path in files[:3]:  # lost before they were written
        path.unlink()
    truncated = files[-1]
    truncated.write_text(truncated.read_text()[:200])
    (tmp_path / ".tmp-abc.json").write_text("{")  # a write interrupted mid-way
    summary = sweep(grid_file, out=tmp_path, progress=False)
    assert (summary["status"] == "skipped").sum() > 0  # untouched units are not refitted
    assert read_record(truncated)["cell_id"] == truncated.stem  # redone, readable
    pd.testing.assert_frame_equal(collect(tmp_path).drop(columns="created"), reference)
    again = sweep(grid_file, out=tmp_path, progress=False)
    assert set(again["status"]) == {"skipped"}


def test_an_infeasible_cell_fails_before_any_fit(grid_file, tmp_path):
    with pytest.raises(UserError, match="largest feasible n"):
        sweep(load_grid(grid_file, overrides=["subsets.0.n=40,5000"]), out=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.json"))


def test_dry_run_counts_and_fits_nothing(grid_file, tmp_path):
    summary = sweep(grid_file, out=tmp_path, dry_run=True, progress=False)
    assert len(summary) == CELLS and set(summary["status"]) == {"to run"}
    assert not tmp_path.exists() or not list(tmp_path.glob("*.json"))


def test_missing_store_and_duplicate_backbones_are_clear(grid_file, avatar_store, tmp_path):
    with pytest.raises(UserError, match="give another `backbones.control.store`"):
        sweep(load_grid(grid_file, overrides=["backbones.control.store=/no/such.h5"]), out=tmp_path, progress=False)
    with pytest.raises(UserError, match="give another `backbones.biased.base`"):
        sweep(load_grid(grid_file, overrides=["grid.runners=finetune", "data.dataset=avatars", "data.root=x",
                                          "backbones.biased.base=/no/such.pt"]), out=tmp_path, progress=False)
    with pytest.raises(UserError, match="overwrite each other"):
        sweep(load_grid(grid_file, overrides=[("backbones.control.store", str(avatar_store.path))]), out=tmp_path, progress=False)
    with pytest.raises(UserError, match="underrepresentation"):
        grid = load_grid(grid_file, overrides=['subsets.0.kind="underrepresentation"'])
        sweep(grid, out=tmp_path, progress=False)


@pytest.fixture
def main():
    """``biastransfer`` as a function."""
    return analyze.cli.main


def test_cli_sweep_collect_plan(main, grid_file, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["sweep", str(grid_file), "--out", str(out), "--targets", "hat", "--seeds", "0,1",
                 "--backbones", "biased", "--no-progress"]) == 0
    assert len(list(out.glob("*.json"))) == 3 * 2
    assert "probe: flags (of 6 cells): degenerate " in capsys.readouterr().out  # the diagnosis counts
    assert json.loads(next(out.glob("_grids/*.json")).read_text())["targets"] == ["hat"]
    table = tmp_path / "table.csv"
    assert main(["collect", str(out), "--out", str(table)]) == 0
    assert len(pd.read_csv(table)) == 6
    assert main(["plan", str(table), "--bootstrap", "50", "--out", str(tmp_path / "plan")]) == 0
    assert "Curation plan" in (tmp_path / "plan.md").read_text()
    assert len(pd.read_csv(tmp_path / "plan.csv")) == 1
    assert main(["sweep", str(grid_file), "--set", "probe.Cz=1"]) == 2
    assert "'Cz'" in capsys.readouterr().err
