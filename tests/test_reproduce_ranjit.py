"""The reproduce stage "ranjit": Ranjit et al.'s findings R1-R3b on tiny avatars (32 px, smallcnn)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analyze.association.findings import VERDICTS
from analyze.reproduce import stages
from analyze.reproduce.findings import COLUMNS
from analyze.reproduce.ranjit import (
    FAITHFUL_BASES,
    RanjitConfig,
    classify_bases,
    concept_sets,
    effect_table,
    ieat_tests,
    measure_tests,
    objective_bases,
    retention_row,
)
from analyze.reproduce.run import PRESETS
from extract.datasets.avatars import AvatarAdapter
from extract.errors import UserError
from extract.pretrain.train import write_scratch_base

SMALL = replace(PRESETS["tiny"].ranjit, seeds=(0,), n_bootstrap=100)
CONFIG = replace(PRESETS["tiny"], n=320, controls=("avatars-control-hat",), ranjit=SMALL)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Render, pretrain the tiny smallcnn bases and run the stage once."""
    state = stages.PipelineRun(out=tmp_path_factory.mktemp("ranjit"), config=CONFIG)
    stages.render(state)
    stages.pretrain(state)
    stages.ranjit(state)
    return state


def test_stage_writes_the_rows_with_valid_verdicts_and_named_groups(run):
    rows = pd.DataFrame(run.extra_findings)
    assert list(rows.columns) == COLUMNS
    assert list(rows["id"]) == ["R1", "R1-faithful", "R2", "R3", "R3b"]
    assert set(rows["verdict"]) <= set(VERDICTS)
    assert (rows["runner"] == "finetune").all() and (rows["reason"].str.len() > 0).all()
    assert rows["deviation"].str.contains("avatars instead of COCO / Open Images").all()
    by_id = rows.set_index("id")
    assert "object group" in by_id.at["R1", "setting"]
    for fid in ("R2", "R3", "R3b"):  # the finetuning task: dataset, target, correlation, n, epochs
        setting = by_id.at[fid, "setting"]
        assert "natural long_hair set of avatars-320-32px-seed0.h5" in setting and "n = 64" in setting
        assert "P(dark_skin | long_hair) = 0." in setting and "epoch" in setting
        assert "15 iEAT tests" in setting and "avatars-biased-dark_skin" in setting
    assert "optimiser steps 4 vs 4" in by_id.at["R2", "setting"]
    # R1 from the objectives recipe's supervised and contrastive bases: one supervised - self-supervised rho per
    # finetuning set (natural eyewear and long_hair), each with its interval, in the reason
    assert "natural eyewear" in by_id.at["R1", "reason"] and "natural long_hair" in by_id.at["R1", "reason"]
    assert "avatars-simclr" in by_id.at["R1", "setting"] or "simclr" in by_id.at["R1", "reason"] + by_id.at["R1", "setting"]
    faithful = by_id.at["R1-faithful", "reason"]
    assert by_id.at["R1-faithful", "verdict"] == "inconclusive" and "BiT-M-R50x1.npz" in faithful
    decided = rows[rows["verdict"] != "inconclusive"]
    assert decided["number"].notna().all()
    written = pd.read_csv(run.out / "ranjit" / "findings.csv")
    assert list(written["id"]) == list(rows["id"])


def test_rerun_reuses_the_finetunes(run, capsys):
    again = stages.PipelineRun(out=run.out, config=CONFIG, cache=run.cache, bases=run.bases, roles=run.roles)
    stages.ranjit(again)
    assert pd.DataFrame(again.extra_findings)["verdict"].tolist() == \
        pd.DataFrame(run.extra_findings)["verdict"].tolist()
    records = list((run.out / "ranjit" / "finetunes").rglob("*.json"))
    # larger and smaller set (one seed), five random-init finetunes, and R1: the objectives recipe's three bases
    # (supervised, SimCLR with and without colour jitter) on two finetuning sets
    assert len(records) == 2 + 5 + 3 * 2


def test_retention_row_compares_supervised_and_self_supervised_bases(run):
    """R1's computation on two tiny bases, one labelled self-supervised for the test."""
    sets = concept_sets(run.out, CONFIG.size, SMALL)
    bases = {"hat": (str(run.bases["avatars-control-hat"]), "supervised"),
             "blazer": (str(run.bases["avatars-control-blazer"]), "self_supervised")}
    row = retention_row(AvatarAdapter(run.cache), bases, sets, SMALL, run.out)
    assert row.verdict in VERDICTS and np.isfinite(row.number)
    assert row.ci_low <= row.number <= row.ci_high or row.verdict == "inconclusive"
    assert "natural eyewear n=64" in row.reason and "natural long_hair n=64" in row.reason


def test_checkpoint_metadata_decides_the_objective(tmp_path):
    paths = {}
    for name, meta in (("ssl", {"role": "selfsupervised", "objective": "simclr"}), ("sup", {"role": "control"}),
                       ("biased", {"role": "biased"})):
        paths[name] = write_scratch_base(tmp_path / f"{name}.pt", arch="smallcnn", arch_kwargs={"width": 4},
                                         image_size=32, name=name, meta=meta)
    found = classify_bases(paths)
    assert {name: objective for name, (_, objective) in found.items()} == \
        {"ssl": "self_supervised", "sup": "supervised"}


def test_missing_or_unbuildable_objectives_recipe_makes_r1_inconclusive(run, tmp_path):
    missing = replace(SMALL, recipe=str(tmp_path / "none.toml"))
    bases, why = objective_bases(run, missing)
    assert bases == {} and "none.toml" in why and "does not exist" in why
    broken = tmp_path / "broken.toml"
    broken.write_text('[recipe]\nname = "x"\n')
    bases, why = objective_bases(run, replace(SMALL, recipe=str(broken)))
    assert bases == {} and "could not be built" in why


def test_trial_averaged_effect_sizes_are_paired_and_bonferroni_widens():
    rng = np.random.default_rng(0)
    names = ["dark", "light", "hat", "eyewear", "blazer"]
    before = {name: rng.normal(size=(8, 6)) for name in names}
    afters = [{name: value + rng.normal(scale=0.1, size=value.shape) for name, value in before.items()}
              for _ in range(2)]
    tests = ieat_tests(["hat", "eyewear", "blazer"])
    measured = measure_tests(before, afters, tests, n_bootstrap=300)
    narrow, wide = effect_table(measured, "after", 0.95), effect_table(measured, "after", 1 - 0.05 / 3)
    assert (wide["ci_low"] <= narrow["ci_low"]).all() and (wide["ci_high"] >= narrow["ci_high"]).all()
    same = measure_tests(before, [before], tests, n_bootstrap=300)  # after == before: amplification is 0
    assert np.allclose(effect_table(same, "amplification", 0.95)[["estimate", "ci_low", "ci_high"]], 0)


def test_config_errors_are_one_sentence():
    with pytest.raises(UserError, match="n_small"):
        RanjitConfig(n_small=64, n_large=64)
    with pytest.raises(UserError, match="avatar target"):
        RanjitConfig(target="unicorn")
    assert set(FAITHFUL_BASES.values()) == {"supervised", "self_supervised"}
