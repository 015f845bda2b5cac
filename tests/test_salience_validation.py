"""Salience on the avatar dataset against the generator's ground truth, the scratch method,
and the CLI verb."""

import argparse

import numpy as np
import pandas as pd
import pytest

from analyze.cli.salience import register
from analyze.salience import SalienceConfig, salience_table, validate_salience
from analyze.salience.fit import SCRATCH_CONFIG
from extract.backbones import create_backbone, save_checkpoint
from extract.datasets.avatars import TARGETS, AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError

# 1200 balanced avatars at 32 px: every (target, dark_skin) cell holds ~180 training rows.
# Measured Spearman over all 9 targets: 0.90 for seeds 0, 1 and 2 (3 replicates).
N, SIZE, SEED = 1200, 32, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("avatars") / "balanced.h5", spec=RenderSpec(n=N, size=SIZE, seed=SEED, preset="balanced", signal_sample=64), workers=1, progress=False)
    return AvatarAdapter(path)


def test_probe_salience_ranks_targets_like_the_generator(adapter):
    table = salience_table(list(TARGETS), "dark_skin", adapter=adapter, config=SalienceConfig(method="probe", replicates=3, seed=0))
    check = validate_salience(table, adapter.signal_strength, sensitive="dark_skin")
    print("\n" + check.table[["target", "salience", "ci_low", "ci_high", "A_y", "A_s", "true_log_ratio"]].to_string())
    print(f"Spearman = {check.spearman:.3f} over {len(table)} targets")
    assert len(table) == len(TARGETS) and check.spearman >= 0.8
    assert table[["A_y", "A_s"]].apply(lambda c: c.between(0.5, 1.0)).all().all()
    assert table["salience"].between(0, 1).all() and (table["n_models"] == 6).all()
    assert ((table["ci_low"] <= table["salience"]) & (table["salience"] <= table["ci_high"])).all()
    # hat changes more pixels than skin tone; the smile changes very few
    by_target = table.set_index("target")["salience"]
    assert by_target["hat"] < 0.65 < by_target["smiling"]


def test_scratch_method_trains_from_random_init(adapter, tmp_path):
    config = type(SCRATCH_CONFIG)(lrs=(0.05,), weight_decays=(5e-4,), epochs=1, batch_size=32)
    table = salience_table(["hat", "smiling"], "dark_skin", adapter=adapter,
                           config=SalienceConfig(method="scratch", replicates=2, n=96, training=config))
    assert list(table["n_models"]) == [4, 4] and (table["method"] == "scratch").all()
    assert table[["A_y", "A_s"]].apply(lambda c: c.between(0.5, 1.0)).all().all()
    assert np.isfinite(table[["salience", "ci_low", "ci_high"]].to_numpy()).all()
    base = create_backbone("smallcnn.scratch", image_size=SIZE)
    pretrained = save_checkpoint(tmp_path / "b.pt", base.model, arch="smallcnn", arch_kwargs={"width": 16},
                                 preprocess=base.preprocess, meta={})
    with pytest.raises(UserError, match="random initialisation"):
        salience_table(["hat"], "dark_skin", adapter=adapter, config=SalienceConfig(method="scratch", base=str(pretrained), training=config))


def test_bad_requests(adapter):
    with pytest.raises(UserError, match="method"):
        salience_table(["hat"], "dark_skin", adapter=adapter, config=SalienceConfig(method="oracle"))
    with pytest.raises(UserError, match="no targets"):
        salience_table([], "dark_skin", adapter=adapter)
    with pytest.raises(UserError, match="no column"):
        salience_table(["not_an_attribute"], "dark_skin", adapter=adapter)


def test_cli_writes_the_table_and_prints_the_validation(adapter, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "salience.csv"
    args = parser.parse_args(["salience", "--dataset", "avatars", "--root", str(adapter.root), "--targets",
                              "hat,smiling,blazer", "--sensitive", "dark_skin", "--method", "probe",
                              "--replicates", "2", "--n", "100", "--out", str(out)])
    assert args.func(args) == 0
    table = pd.read_csv(out)
    assert list(table["target"]) == ["hat", "smiling", "blazer"]
    assert {"salience", "ci_low", "ci_high", "A_y", "A_s", "n_models", "method", "seed", "true_log_ratio"} <= set(table)
    assert "Spearman" in capsys.readouterr().out


def test_probe_on_a_feature_store_matches_probe_on_embeddings(adapter, tmp_path):
    from extract.extraction import ExtractOptions, extract_features
    from extract.store.reader import FeatureStore

    base = create_backbone("smallcnn.scratch", seed=4, image_size=SIZE)
    path = save_checkpoint(tmp_path / "base.pt", base.model, arch="smallcnn", arch_kwargs={"width": 16},
                           preprocess=base.preprocess, meta={"name": "fixed"})
    store = extract_features(adapter, create_backbone(path), tmp_path / "store.h5", options=ExtractOptions(progress=False))
    config = SalienceConfig(method="probe", replicates=2, seed=1)
    direct = salience_table(["hat", "eyewear"], "dark_skin", adapter=adapter, config=config.with_(base=str(path)))
    stored = salience_table(["hat", "eyewear"], "dark_skin", store=FeatureStore.open(store), config=config)
    # float16 storage is the only difference
    assert np.allclose(direct["salience"], stored["salience"], atol=0.01)
    assert np.allclose(direct["A_y"], stored["A_y"], atol=0.01)
