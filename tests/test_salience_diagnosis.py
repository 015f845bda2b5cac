"""salience: every estimate carries its diagnosis (flag columns), from real probe fits on the avatar store."""

from analyze.metrics.diagnosis import FLAG_COLUMNS, flag_counts
from analyze.salience.table import salience_table


def test_salience_table_has_the_diagnosis_columns(avatar_store):
    edge = salience_table(["hat", "eyewear"], "dark_skin", store=avatar_store, method="probe", replicates=2,
                          Cs=[1e-4, 1e-3])
    assert set(FLAG_COLUMNS) | {"flagged", "diagnosis"} <= set(edge.columns)
    assert edge["flag_c_at_edge"].all() and edge["diagnosis"].str.contains("of the grid").all()
    strict = salience_table(["hat"], "dark_skin", store=avatar_store, method="probe", replicates=2, Cs=[1.0],
                            auc_floor=0.999)
    assert not strict["flag_c_at_edge"].any()  # a one-value grid has no edge
    assert strict["flag_weak_task"].all() and flag_counts(strict)["weak_task"] == 1
