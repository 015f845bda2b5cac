"""Issue 7's experiment on the avatar dataset: finetuning a scratch base on a set where blazer
comes with dark skin moves the blazer concept towards the dark group; a balanced set does so
clearly less; random-init networks give a null centred near zero. Plus the summary arithmetic,
the disjointness and protocol guards and the CLI wiring (fast)."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from analyze.association.concepts import avatar_concept_sets
from analyze.association.experiment import (
    ExperimentConfig,
    check_disjoint,
    check_protocol,
    experiment_specs,
    experiment_tests,
    run_experiment,
    write_outputs,
)
from analyze.association.summary import QUANTITIES, summarize_experiment, verdict
from analyze.cli.associate_experiment import _config_from_args, register
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError

N, SIZE = 2400, 32  # the balanced preset at 32 px: n = 256 fits every cell, 40 images per concept set
CONFIG = ExperimentConfig(target="blazer", strong_level=0.9, balanced_level=0.5, n=256, seeds=(0, 1, 2, 3, 4),
                          per_set=40, n_bootstrap=200)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp("avatars") / "avatars-2400-32px-seed0.h5", spec=RenderSpec(n=N, size=SIZE, seed=0, preset="balanced", signal_sample=2), workers=1, progress=False)


@pytest.fixture(scope="module")
def result(cache, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU finetuning is bit-repeatable at a fixed thread count
    try:
        return run_experiment(cache, tmp_path_factory.mktemp("experiment"), base="smallcnn.scratch", config=CONFIG)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def summary(result):
    return summarize_experiment(result.table, result.null)


def _row(summary, test, quantity):
    return summary[(summary["test"] == test) & (summary["quantity"] == quantity)].iloc[0]


def test_strong_correlation_raises_the_association_balanced_clearly_less_null_near_zero(summary):
    test = "blazer ~ dark vs light"  # the concept measure: mean cos to dark - mean cos to light
    strong, balanced = _row(summary, test, "strong"), _row(summary, test, "balanced")
    difference, null = _row(summary, test, "strong - balanced"), _row(summary, test, "random-init null")
    assert strong["k"] == balanced["k"] == 5 and null["k"] == 10
    # change > 0 with its 95 % interval (mean +- 1.96 sd / sqrt(k)) above zero, and the t interval too
    assert strong["mean"] > 0 and strong["ci_low"] > 0 and strong["t_ci_low"] > 0
    # a balanced set raises it clearly less: the interval of strong - balanced lies above zero
    assert difference["ci_low"] > 0 and difference["t_ci_low"] > 0
    assert balanced["mean"] < strong["mean"] / 2
    # random-init networks: small relative to their spread (not always exactly zero: image statistics alone,
    # e.g. clothing colours that differ between the skin-tone groups, give random features an association),
    # and far below the effect
    assert abs(null["mean"]) <= null["sd"]
    assert strong["mean"] > 3 * null["sd"]
    assert verdict(summary).set_index("test").loc[test].all()


def test_per_seed_table_is_tidy_and_paired(result):
    table = result.table
    assert len(table) == 2 * 5 * 2  # conditions x seeds x tests
    assert set(table["condition"]) == {"strong", "balanced"} and set(table["level"]) == {0.9, 0.5}
    assert np.allclose(table["change"], table["after"] - table["before"])
    assert (table["change_ci_low"] <= table["change"]).all() and (table["change"] <= table["change_ci_high"]).all()
    assert (table["n_train"] == 256).all() and table["checkpoint"].map(lambda p: p.endswith(".pt")).all()
    # one "before" per seed: a scratch base restarts from the finetune's own seed
    before = table[table["kind"] == "concept"].groupby("seed")["before"].nunique()
    assert (before == 1).all()
    assert len(result.null) == 10 * 2 and set(result.null["seed"]) == set(range(1000, 1010))


def test_outputs_and_rerun_reuse_the_finetunes(result, cache, tmp_path):
    again = run_experiment(cache, result.folder, base="smallcnn.scratch", config=CONFIG)  # no finetune reruns
    pd.testing.assert_frame_equal(again.table, result.table)
    pd.testing.assert_frame_equal(again.null, result.null)
    written = write_outputs(result, tmp_path / "exp.csv")
    assert [p.name for p in written] == ["exp.csv", "exp_null.csv", "exp_summary.csv", "exp.md"]
    summary = pd.read_csv(tmp_path / "exp_summary.csv")
    assert list(summary["quantity"][:4]) == list(QUANTITIES)
    markdown = (tmp_path / "exp.md").read_text()
    assert "strong - balanced" in markdown and "random-init null" in markdown


def test_concept_images_must_not_be_finetuning_images(cache):
    adapter = AvatarAdapter(cache)
    specs = [s for members in experiment_specs(CONFIG).values() for s in members]
    names = ["blazer", "no_blazer", "dark", "light"]
    check_disjoint(avatar_concept_sets(adapter, names, per_set=40, split="test"), specs, adapter.metadata())
    overlapping = avatar_concept_sets(adapter, names, per_set=40, split="train")
    with pytest.raises(UserError, match="also finetuning images"):
        check_disjoint(overlapping, specs, adapter.metadata())


def test_a_folder_of_another_protocol_is_refused(tmp_path):
    check_protocol(tmp_path, "smallcnn.scratch", CONFIG)
    check_protocol(tmp_path, "smallcnn.scratch", CONFIG)  # same protocol: reused
    with pytest.raises(UserError, match="another protocol"):
        check_protocol(tmp_path, "other.pt", CONFIG)
    assert json.loads((tmp_path / "protocol.json").read_text())["base"] == "smallcnn.scratch"


def test_summary_arithmetic_by_hand():
    changes = {"strong": [0.3, 0.5, 0.4], "balanced": [0.1, 0.0, 0.2]}
    table = pd.DataFrame([{"test": "t", "kind": "concept", "measure": "association", "condition": c,
                           "level": {"strong": 0.9, "balanced": 0.5}[c], "seed": i, "before": 0.0, "after": v,
                           "change": v} for c, values in changes.items() for i, v in enumerate(values)])
    null = pd.DataFrame({"test": "t", "value": [-0.1, 0.1, 0.0, 0.2]})
    summary = summarize_experiment(table, null).set_index("quantity")
    se = 0.1 / np.sqrt(3)
    assert summary.at["strong", "mean"] == pytest.approx(0.4)
    assert summary.at["strong", "ci_low"] == pytest.approx(0.4 - 1.959964 * se, abs=1e-6)
    assert summary.at["strong", "t_ci_low"] == pytest.approx(0.4 - 4.302653 * se, abs=1e-5)
    assert summary.at["strong - balanced", "mean"] == pytest.approx(0.3)
    assert summary.at["strong - balanced", "se"] == pytest.approx(np.sqrt(2) * se)
    assert summary.at["random-init null", "mean"] == pytest.approx(0.05)
    assert summary.at["random-init null", "sd"] == pytest.approx(np.std([-0.1, 0.1, 0.0, 0.2], ddof=1))
    row = verdict(summarize_experiment(table, null)).iloc[0]
    assert row["strong_raises"] and row["balanced_less"] and row["null_near_zero"]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"target": "tail"}, "not an avatar target"),
    ({"strong_level": 1.5}, "level in"),
    ({"strong_level": 0.5}, "must differ"),
    ({"seeds": (0,)}, "at least 2"),
    ({"null_seeds": (1, 1)}, "at least 2 distinct"),
    ({"concept_split": "holdout"}, "unknown"),
])
def test_bad_configs_are_user_errors(kwargs, pattern):
    with pytest.raises(UserError, match=pattern):
        ExperimentConfig(**kwargs)


def test_cli_arguments_build_the_config():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["associate-experiment", "--cache", "a.h5", "--target", "hat", "--strong-level", "1.0",
                              "--seeds", "0,1,2,3,4,5", "--null-seeds", "4", "--epochs", "5", "--lrs", "0.01,0.05"])
    config = _config_from_args(args)
    assert config.target == "hat" and config.strong_level == 1.0 and config.seeds == (0, 1, 2, 3, 4, 5)
    assert config.null_seeds == (1000, 1001, 1002, 1003) and config.finetune.epochs == 5
    assert config.finetune.lrs == (0.01, 0.05)
    assert [t.kind for t in experiment_tests("hat")] == ["concept", "weat"]
