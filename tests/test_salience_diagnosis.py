"""salience: every estimate carries its diagnosis (flag columns), from real probe fits on the avatar store."""

from analyze.config import EvalConfig
from analyze.metrics.diagnosis import FLAG_COLUMNS, flag_counts
from analyze.probe import ProbeConfig
from analyze.salience import SalienceConfig
from analyze.salience.table import salience_table


def test_salience_table_has_the_diagnosis_columns(avatar_store):
    config = SalienceConfig(method="probe", replicates=2)
    edge = salience_table(["hat", "eyewear"], "dark_skin", store=avatar_store, config=config,
                          probe=ProbeConfig(Cs=[1e-4, 1e-3]))
    assert set(FLAG_COLUMNS) | {"flagged", "diagnosis"} <= set(edge.columns)
    assert edge["flag_c_at_edge"].all() and edge["diagnosis"].str.contains("of the grid").all()
    strict = salience_table(["hat"], "dark_skin", store=avatar_store, config=config, probe=ProbeConfig(Cs=[1.0]),
                            evaluation=EvalConfig(auc_floor=0.999))
    assert not strict["flag_c_at_edge"].any()  # a one-value grid has no edge
    assert strict["flag_weak_task"].all() and flag_counts(strict)["weak_task"] == 1


def test_cli_takes_a_c_grid(avatar_store, tmp_path):
    import json

    import pandas as pd

    from analyze.cli import main

    out = tmp_path / "salience.csv"
    assert main(["salience", "--store", str(avatar_store.path), "--targets", "hat", "--sensitive", "dark_skin",
                 "--replicates", "2", "--Cs", "0.5", "--out", str(out)]) == 0
    selected = json.loads(pd.read_csv(out)["selected"].iloc[0])
    assert {arrangement["C"] for arrangement in selected.values()} == {0.5}
