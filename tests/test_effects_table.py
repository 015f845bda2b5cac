"""The paper's rows from a tidy results table: Value and its clipping rule, input checks.

:func:`synthetic_results` builds a table of the shape ``biastransfer collect`` writes, with
effects planted at chosen sizes; the other effects and plots tests import it.
"""

import numpy as np
import pandas as pd
import pytest

from analyze.effects.models import (
    attach_salience,
    paper_rows,
    paper_value,
    require_columns,
    run_effects,
    select_runner,
    with_base_kind,
    with_derived_columns,
)
from analyze.results.tables import read_table
from extract.errors import UserError

BASES = {"biased_net": "biased", "ctrl_a": "control", "ctrl_b": "control", "ctrl_c": "control"}
CONTROL_GAPS = {"ctrl_a": 0.10, "ctrl_b": 0.08, "ctrl_c": 0.05}
LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _metrics(gap, auc, rng):
    """Metric columns consistent with a stereotype gap (stereotyped group = s=1 here)."""
    fpr0 = rng.uniform(0.05, 0.15, size=len(gap))
    fpr1 = fpr0 + gap
    tpr0 = rng.uniform(0.7, 0.9, size=len(gap))
    tpr1 = tpr0 + 0.5 * gap
    return {"auc": auc, "accuracy": auc - 0.05, "fpr_group0": fpr0, "fpr_group1": fpr1, "tpr_group0": tpr0,
            "tpr_group1": tpr1, "fpr_gap": fpr1 - fpr0, "fpr_gap_stereotype": gap,
            "equalized_odds_difference": np.maximum(np.abs(gap), np.abs(0.5 * gap)),
            "demographic_parity_difference": np.abs(gap) / 2, "worst_group_accuracy": auc - 0.1}


def _regression_cells(targets, seeds, salience, coef_salience, coef_skew, noise, rng):
    """Natural and skew cells at n = 1024: Value = 1 + cs * Saliency + ck * Skew + u + e."""
    rows = []
    attribute_effect = rng.normal(0.0, 0.1, size=len(targets))
    for t, target in enumerate(targets):
        for kind, p, skew in (("natural", np.nan, rng.uniform(0.0, 0.4)), ("skew", 0.2, rng.uniform(0.2, 0.5))):
            value = 1.0 + coef_salience * salience[t] + coef_skew * skew + attribute_effect[t]
            for backbone, base_kind in BASES.items():
                for seed in range(seeds):
                    gap = (0.1 * (value + rng.normal(0.0, noise)) if base_kind == "biased"
                           else CONTROL_GAPS[backbone])
                    rows.append({"backbone": backbone, "base_kind": base_kind, "spec_kind": kind, "target": target,
                                 "level": np.nan, "p": p, "n": 1024, "seed": seed, "skew": skew,
                                 "fpr_gap_stereotype": gap})
    return rows


def _correlation_cells(targets, seeds, salience, sizes, rng):
    """Correlation cells: gap = 0.05 + slope(base) * |level - 0.5| + 0.1 salience + 0.01 log2 n + e."""
    slopes = {"biased": 0.6, "control": 0.3}
    rows = []
    for t, target in enumerate(targets):
        for backbone, base_kind in BASES.items():
            for level in LEVELS:
                for n in sizes:
                    for seed in range(seeds):
                        strength = abs(level - 0.5)
                        gap = (0.05 + slopes[base_kind] * strength + 0.1 * salience[t] + 0.01 * np.log2(n)
                               + rng.normal(0.0, 0.02))
                        rows.append({"backbone": backbone, "base_kind": base_kind, "spec_kind": "correlation",
                                     "target": target, "level": level, "p": np.nan, "n": n, "seed": seed,
                                     "skew": abs(level - 0.3), "fpr_gap_stereotype": gap})
    return rows


def synthetic_results(*, n_targets=12, seeds=3, coef_salience=2.0, coef_skew=1.3, noise=0.05, sizes=(128, 1024),
                      runner="probe", random_state=0) -> pd.DataFrame:
    """A tidy results table (one row per cell) with planted effects (see the helpers above)."""
    rng = np.random.default_rng(random_state)
    targets = [f"attr{i:02d}" for i in range(n_targets)]
    salience = rng.uniform(0.0, 0.5, size=n_targets)
    rows = (_regression_cells(targets, seeds, salience, coef_salience, coef_skew, noise, rng)
            + _correlation_cells(targets, seeds, salience, sizes, rng))
    table = pd.DataFrame(rows)
    gap = table["fpr_gap_stereotype"].to_numpy()
    auc = 0.9 - 0.2 * np.abs(table["level"].fillna(0.3).to_numpy() - 0.3) + rng.normal(0, 0.01, len(table))
    table = table.assign(**_metrics(gap, auc, rng), runner=runner, dataset="avatars", sensitive="s",
                         C=1.0, salience=salience[table["target"].str[4:].astype(int)],
                         natural_level=0.3)
    table.insert(0, "cell_id", [f"cell{i:05d}" for i in range(len(table))])
    return table


def test_paper_value_hand_cases():
    v_g = np.array([0.2, -0.1, 0.1, -0.2, 0.3, 0.0])
    v_c = np.array([0.1, 0.1, -0.1, -0.1, 0.0, 0.1])
    clipped = paper_value(v_g, v_c, clip=True)
    np.testing.assert_allclose(clipped, [2.0, 0.0, 5.0, 2.0, np.nan, 0.0])  # both negative: ratio kept
    np.testing.assert_allclose(paper_value(v_g, v_c, clip=False), [2.0, -1.0, -1.0, 2.0, np.nan, 0.0])
    assert paper_value(0.3, 0.1) == pytest.approx(3.0)


def test_paper_rows_recompute_by_hand():
    table = synthetic_results(n_targets=4)
    rows = paper_rows(table)
    assert len(rows) == 8 and set(rows["Condition"]) == {"natural", "skew p=0.2"}
    row = rows[(rows["Attribute"] == "attr02") & (rows["Condition"] == "natural")].iloc[0]
    cells = table[(table["target"] == "attr02") & (table["spec_kind"] == "natural")]
    v_g = cells.loc[cells["backbone"] == "biased_net", "fpr_gap_stereotype"].mean()
    assert row["v_biased"] == pytest.approx(v_g)
    assert row["v_control_max"] == pytest.approx(0.10) and row["control_max_backbone"] == "ctrl_a"
    assert row["Value"] == pytest.approx(v_g / 0.10)
    assert row["Difference"] == pytest.approx(v_g - 0.10)
    assert row["LogRatio"] == pytest.approx(np.log(v_g / 0.10))
    assert row["Skew"] == pytest.approx(cells["skew"].iloc[0]) and row["k_biased"] == 3


def test_paper_rows_clip_and_log_ratio_undefined():
    table = synthetic_results(n_targets=3)
    flipped = (table["backbone"] == "biased_net") & (table["target"] == "attr00")
    table.loc[flipped, "fpr_gap_stereotype"] = -0.05
    rows = paper_rows(table).set_index(["Attribute", "Condition"])
    assert rows.loc[("attr00", "natural"), "Value"] == 0.0
    assert np.isnan(rows.loc[("attr00", "natural"), "LogRatio"])
    assert paper_rows(table, clip=False).set_index(["Attribute", "Condition"]).loc[
        ("attr00", "natural"), "Value"] == pytest.approx(-0.5)


def test_n_defaults_to_1024_else_largest_and_bad_n():
    table = synthetic_results(n_targets=3)
    assert paper_rows(table)["n"].iloc[0] == 1024
    assert paper_rows(table.assign(n=512))["n"].iloc[0] == 512
    with pytest.raises(UserError, match="n = 99"):
        paper_rows(table, n=99)


def test_missing_columns_name_the_column_and_producer():
    table = synthetic_results(n_targets=3)
    with pytest.raises(UserError, match="'skew'.*collect"):
        paper_rows(table.drop(columns=["skew"]))
    with pytest.raises(UserError, match="'salience'.*biastransfer salience"):
        run_effects(table.drop(columns=["salience"]), model="general")
    with pytest.raises(UserError, match="'base_kind'"):
        with_base_kind(table.drop(columns=["base_kind"]))
    with pytest.raises(UserError, match="'target'"):
        require_columns(table.drop(columns=["target"]), ["backbone", "target"], purpose="x")


def test_base_kind_from_mapping_and_runner_selection():
    table = synthetic_results(n_targets=3).drop(columns=["base_kind"])
    mapped = with_base_kind(table, BASES)
    assert (mapped.groupby("backbone")["base_kind"].first() == pd.Series(BASES)).all()
    with pytest.raises(UserError, match="ctrl_c"):
        with_base_kind(table, {k: v for k, v in BASES.items() if k != "ctrl_c"})
    both = pd.concat([synthetic_results(n_targets=3), synthetic_results(n_targets=3, runner="finetune")])
    with pytest.raises(UserError, match="choose one with `runner`"):
        run_effects(both, model="paper")
    assert set(select_runner(both, "finetune")["runner"]) == {"finetune"}


def test_two_biased_bases_is_an_error():
    table = synthetic_results(n_targets=3)
    table.loc[table["backbone"] == "ctrl_a", "base_kind"] = "biased"
    with pytest.raises(UserError, match="biased bases"):
        paper_rows(table)


def test_derived_columns_and_salience_join(tmp_path):
    table = synthetic_results(n_targets=3)
    derived = with_derived_columns(table)
    skew_rows = derived[derived["spec_kind"] == "skew"]
    np.testing.assert_allclose(skew_rows["correlation_level"], 0.2)
    np.testing.assert_allclose(skew_rows["correlation_strength"], 0.3)
    np.testing.assert_allclose(derived.loc[derived["spec_kind"] == "natural", "correlation_level"], 0.3)
    assert list(derived["base"].cat.categories) == ["control", "biased"]
    salience = pd.DataFrame({"target": ["attr00", "attr01", "attr02"], "salience": [0.1, 0.2, 0.3]})
    joined = attach_salience(table, salience)
    assert joined.groupby("target")["salience"].first().tolist() == [0.1, 0.2, 0.3]
    path = tmp_path / "results.csv"
    table.to_csv(path, index=False)
    assert len(read_table(path)) == len(table)
    with pytest.raises(UserError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
