"""The planner plans only a gap whose interval excludes 0, leaves flagged cells out, and shows its intervals."""

import numpy as np
import pandas as pd
import pytest

from analyze.curation import IntervalConfig, plan_curation, plan_markdown
from analyze.metrics.diagnosis import FLAGS
from analyze.report.build import plan_table
from tests.test_plan_synthetic import sweep_table


def test_a_gap_indistinguishable_from_zero_is_not_planned():
    # the case: a natural gap of ~0.002 with an interval across 0, over 5 seeds
    table = sweep_table(slope=0.01, noise=0.05, seeds=5, seed=0)
    (row,) = plan_curation(table, intervals=IntervalConfig(n_boot=200)).to_dict("records")
    assert row["gap_natural_low"] <= 0 <= row["gap_natural_high"]
    assert row["status"].startswith("the natural gap's interval [") and "includes 0" in row["status"]
    assert np.isnan(row["halving_level"]) and np.isnan(row["auc_cost"])
    # a clear gap is planned, and the report shows every interval it has (5 seeds: never "fewer than 2")
    clear = plan_curation(sweep_table(noise=0.01, seeds=5, seed=2), intervals=IntervalConfig(n_boot=300))
    shown = plan_table(clear)
    assert clear["status"].iloc[0] == "ok"
    assert "fewer than 2" not in " ".join(shown.astype(str).to_numpy().ravel())
    for column in ("gap_natural [95% CI]", "auc_cost [95% CI]", "halving_level [95% CI]"):
        assert "[" in shown[column].iloc[0] and "?" not in shown[column].iloc[0]


def test_flagged_cells_are_left_out_and_counted():
    table = sweep_table(noise=0.01, seeds=5, seed=2)
    for name in FLAGS:
        table[f"flag_{name}"] = False
    bad = table["seed"] == 0
    table.loc[bad, "flag_c_at_edge"] = True
    table.loc[bad, "fpr_gap"] = 5.0  # what a broken fit could report
    (row,) = plan_curation(table, intervals=IntervalConfig(n_boot=0)).to_dict("records")
    assert row["excluded"] == int(bad.sum()) and row["seeds"] == 4 and row["status"] == "ok"
    assert row["gap_natural"] == pytest.approx(0.12, abs=0.02)
    kept = plan_curation(table, intervals=IntervalConfig(n_boot=0), include_flagged=True).iloc[0]
    assert kept["excluded"] == 0 and kept["seeds"] == 5
    assert f"{int(bad.sum())} flagged cell(s) left out" in plan_markdown(pd.DataFrame([row]))
