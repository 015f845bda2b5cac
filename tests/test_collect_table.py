"""collect: one row per cell from real records; bad files an error (or skipped with a warning); schema; output formats."""

import json
import math

import pandas as pd
import pytest

import analyze.results.tables as tables_module
from analyze.config import RunContext
from analyze.probe import ProbeConfig
from analyze.probe.cells import run_probe_cells
from analyze.results.collect import SkippedRecordsWarning, collect, record_row
from analyze.results.records import make_record, write_record
from analyze.results.tables import read_table, write_table
from analyze.subsets import Correlation, Natural, Skew
from extract.errors import UserError

SPECS = [Correlation("hat", "dark_skin", 0.0, n=40, seed=0), Correlation("hat", "dark_skin", 1.0, n=40, seed=1),
         Natural("hat", "dark_skin", n=None, seed=0), Skew("long_hair", "dark_skin", 0.8, n=40, seed=2)]


@pytest.fixture(scope="module")
def records(avatar_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    run_probe_cells(avatar_store, SPECS, context=RunContext(out=folder, progress=False), config=ProbeConfig(Cs=[0.1, 1.0]))
    return folder


def test_one_row_per_record_sorted_with_the_schema(records):
    table = collect(records)
    assert len(table) == len(SPECS) and table["cell_id"].is_monotonic_increasing
    assert list(table.columns[:4]) == ["cell_id", "runner", "backbone", "base_name"]
    assert {"auc", "fpr_gap", "fpr_gap_stereotype", "natural_level", "skew", "store", "created"} <= set(table.columns)
    by_kind = table.set_index("spec_kind")
    natural = by_kind.loc["natural"]
    assert bool(natural["n_all"]) and natural["n"] == natural["n_train"]  # n = "all" reports the rows used
    assert math.isnan(by_kind.loc["skew", "level"]) and by_kind.loc["skew", "p"] == 0.8
    assert (table["runner"] == "probe").all() and table["C"].isin([0.1, 1.0]).all()
    for _, row in table.iterrows():  # every metric of a record lands in its row
        record = json.loads((records / f"{row['cell_id']}.json").read_text())
        assert row["n_train"] == record["sizes"]["n_train"] and row["seed"] == record["spec"]["seed"]
        for name, value in record["metrics"].items():
            assert (value is None and math.isnan(row[name])) or row[name] == pytest.approx(value)


def test_skew_comes_from_the_training_rows(records, avatar_store):
    table = collect(records)
    by_level = table.set_index("level")
    assert by_level.loc[0.0, "skew"] == 0.5 and by_level.loc[1.0, "skew"] == 0.5
    meta = avatar_store.metadata
    for _, row in table.iterrows():  # recomputed from the spec's own training rows
        spec = next(s for s in SPECS if s.to_dict() == json.loads((records / f"{row['cell_id']}.json")
                                                                  .read_text())["spec"])
        train = spec.split_indices(meta).train
        y, s = spec.labels(meta)[train], meta[spec.sensitive].to_numpy()[train]
        given_y, overall = (s[y == 1] == 1).mean(), (s == 1).mean()
        assert row["train_share_s_given_y"] == pytest.approx(given_y)
        assert row["skew"] == pytest.approx(abs(given_y - overall))
    older = next(r for r in (json.loads(p.read_text()) for p in records.glob("*.json"))
                 if r["spec"]["kind"] == "correlation")
    del older["composition"]  # a record written before compositions: |level - 0.5|
    assert record_row(older)["skew"] == abs(older["spec"]["level"] - 0.5)


def test_truncated_foreign_and_temporary_files(records, tmp_path):
    for path in records.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    victim = sorted(tmp_path.glob("*.json"))[1]
    victim.write_text(victim.read_text()[:300])
    (tmp_path / "notes.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / ".tmp-x1.json").write_text("{")
    (tmp_path / "_grids").mkdir()
    (tmp_path / "_grids" / "g.json").write_text("{}")
    with pytest.raises(UserError, match=r"\(and 1 more bad file\(s\)\); delete them .* or pass `skip_bad=True`"):
        collect(tmp_path)
    with pytest.warns(SkippedRecordsWarning) as caught:
        table = collect(tmp_path, skip_bad=True)
    message = str(caught[0].message)
    assert "2 unreadable or foreign" in message and victim.name in message and "notes.json" in message
    assert ".tmp-x1" not in message and "g.json" not in message
    assert len(table) == len(SPECS) - 1 and victim.stem not in set(table["cell_id"])


def test_errors(tmp_path, records):
    with pytest.raises(UserError, match="does not exist"):
        collect(tmp_path / "nope")
    with pytest.raises(UserError, match="no result records"):
        collect(tmp_path)
    with pytest.raises(UserError, match="recorded twice"):
        collect([records, records])


def test_finetune_style_record_row():
    record = make_record(runner="finetune", backbone="work/bases/b.pt",
                         spec=Correlation("hat", "dark_skin", 0.25, n=64, seed=3).to_dict(),
                         metrics={"auc": 0.7, "fpr_gap": None}, hyperparameters={"lr": 0.01, "weight_decay": 1e-4},
                         sections={"sizes": {"n_train": 64, "n_val": 16, "n_test": 100}},
                         extra={"sweep": {"base_kind": "biased", "backbone": "b", "grid": "g", "skew": 0.2,
                                          "natural_level": 0.6, "train_share_s_given_y": 0.25,
                                          "train_share_s": 0.45}})
    row = record_row(record)
    assert (row["runner"], row["base_kind"], row["base_name"], row["lr"], row["weight_decay"]) == \
        ("finetune", "biased", "b", 0.01, 1e-4)
    assert row["skew"] == 0.2 and row["natural_level"] == 0.6 and math.isnan(row["fpr_gap"]) and math.isnan(row["C"])


@pytest.mark.parametrize("spec, over, expected", [
    (Correlation("long_hair", "dark_skin", 0.0, n=64, seed=0), 0.0, 1.0),  # all positives light: stereotypical
    (Correlation("long_hair", "dark_skin", 0.25, n=64, seed=0), 0.0, 0.75),
    (Correlation("eyewear", "dark_skin", 0.25, n=64, seed=0), 1.0, 0.25),
    (Correlation("eyewear", "dark_skin", 0.5, n=64, seed=0), 1.0, 0.5),
    (Skew("eyewear", "dark_skin", 0.8, n=64, seed=0), 0.0, 0.2),
    (Correlation("hat", "dark_skin", 0.25, n=64, seed=0), None, math.nan),  # no direction: no stereotype level
])
def test_stereotype_level_is_the_share_of_positives_in_the_stereotypical_group(spec, over, expected):
    record = make_record(runner="probe", backbone="b", spec=spec.to_dict(),
                         metrics={"auc": 0.7, "over_represented_group": over}, hyperparameters={}, sections={"sizes": {}})
    value = record_row(record)["stereotype_level"]
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_natural_cells_take_the_training_share_toward_the_natural_group():
    record = make_record(runner="probe", backbone="b", spec=Natural("long_hair", "dark_skin", n=64, seed=0).to_dict(),
                         metrics={"natural_level": 0.35, "over_represented_group": 0.0}, hyperparameters={}, sections={"sizes": {}})
    assert record_row(record)["stereotype_level"] == pytest.approx(0.65)
    record["sweep"] = {"train_share_s_given_y": 0.3}
    assert record_row(record)["stereotype_level"] == pytest.approx(0.7)


def test_csv_round_trip_and_parquet_needs_pyarrow(records, tmp_path, monkeypatch):
    table = collect(records)
    path = write_table(table, tmp_path / "t.csv")
    back = read_table(path)
    assert list(back.columns) == list(table.columns) and len(back) == len(table)
    assert back["auc"].tolist() == table["auc"].tolist()  # floats round-trip exactly
    monkeypatch.setattr(tables_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pyarrow"):
        write_table(table, tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"\.csv or \.parquet"):
        write_table(table, tmp_path / "t.xlsx")


def test_writes_replace_atomically(records, tmp_path):
    table = collect(records)
    write_table(table, tmp_path / "t.csv")
    write_table(table.head(1), tmp_path / "t.csv")
    assert len(pd.read_csv(tmp_path / "t.csv")) == 1
    assert not list(tmp_path.glob(".tmp-*"))
    write_record(tmp_path / "r", make_record(runner="probe", backbone="x", spec={"kind": "natural"}, metrics={},
                                             hyperparameters={}))
    assert len(collect(tmp_path / "r")) == 1
