"""pretrain_base: determinism, learning the label, checkpoint round trip and recorded meta."""

import hashlib

import numpy as np
import pytest
import torch

from extract.backbones import create_backbone, load_checkpoint
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.pretrain.data import sha256_rows
from extract.pretrain.train import (
    build_model,
    write_base,
    write_scratch_base,
)
from pretraining import pretrain

TINY = {"width": 8}


# The machine is shared; results are thread-count specific anyway.
pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("pre") / "pretrain.h5", spec=RenderSpec(n=400, size=32, seed=7, preset="independent", signal_sample=2), workers=1, progress=False)
    return AvatarAdapter(path)


def _train(adapter, **kw):
    options = dict(attributes=["dark_skin"], arch_kwargs=TINY, epochs=1, batch_size=32, lr=0.05, seed=3,
                   rows=np.arange(160), device="cpu", progress=False)
    options.update(kw)
    return pretrain(adapter, **options)


def test_same_seed_gives_identical_weights_and_leaves_global_rng_alone(adapter):
    rng_before = torch.random.get_rng_state()
    det_before = torch.are_deterministic_algorithms_enabled()
    a, hist_a = _train(adapter)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.are_deterministic_algorithms_enabled() == det_before
    b, hist_b = _train(adapter)
    c, _ = _train(adapter, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert hist_a["epochs"] == hist_b["epochs"] and hist_a["final"] == hist_b["final"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_training_changes_the_seeded_initial_weights(adapter):
    trained, _ = _train(adapter)
    init, _ = build_model("smallcnn", TINY, seed=3)
    assert not torch.equal(trained.stem[0].weight, init.stem[0].weight)


def test_biased_base_learns_dark_skin(adapter):
    model, history = pretrain(adapter, attributes=["dark_skin"], arch_kwargs=TINY, epochs=5, batch_size=32,
                              lr=0.05, seed=0, device="cpu", progress=False)
    rate = history["data"]["labels"]["dark_skin"]["base_rate"]
    chance = max(rate, 1 - rate)
    train_acc = history["final"]["train"]["per_attribute"]["dark_skin"]["accuracy"]
    val_acc = history["final"]["val"]["per_attribute"]["dark_skin"]["accuracy"]
    assert history["data"]["n_train"] == 320 and history["data"]["n_val"] == 80
    assert train_acc > max(0.85, chance + 0.3), (train_acc, chance)
    assert val_acc > max(0.8, chance + 0.2), (val_acc, chance)
    assert history["epochs"][-1]["train_loss"] < history["epochs"][0]["train_loss"]
    assert history["epochs"][-1]["lr_end"] < 1e-6  # cosine decays to zero


def test_multi_label_reports_every_attribute(adapter):
    _, history = _train(adapter, attributes=["dark_skin", "hat"])
    for split in ("train", "val"):
        per = history["final"][split]["per_attribute"]
        assert set(per) == {"dark_skin", "hat"}
        assert history["final"][split]["loss"] == pytest.approx((per["dark_skin"]["loss"] + per["hat"]["loss"]) / 2)


def test_checkpoint_loads_and_gives_identical_features(adapter, tmp_path):
    rows = np.arange(40, 200)
    model, history = _train(adapter, rows=rows, attributes=["hat"])
    path = write_base(tmp_path / "base.pt", model, history=history, name="avatars-control-hat", meta={"role": "control"})
    backbone = create_backbone(path)
    assert backbone.name == "avatars-control-hat" and backbone.feature_dim == model.feature_dim == 64
    assert backbone.preprocess.resize == backbone.preprocess.crop == 32
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone.model(x), model(x))
    meta = backbone.extra["checkpoint_meta"]
    assert meta["attributes"] == ["hat"] and meta["seed"] == 3 and meta["role"] == "control"
    assert meta["kind"] == "pretrained" and meta["config"]["epochs"] == 1 and meta["config"]["arch_kwargs"] == TINY
    assert meta["data"]["manifest_hash"] == adapter.manifest_hash()
    assert meta["data"]["rows_sha256"] == hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest() == sha256_rows(rows)
    expected = hashlib.sha256(f"{adapter.manifest_hash()}:{sha256_rows(rows)}".encode()).hexdigest()
    assert meta["data_hash"] == expected
    assert meta["data"]["generator"]["seed"] == 7 and meta["data"]["generator"]["preset"] == "independent"
    assert set(meta["final"]) == {"train", "val"} and "accuracy" in meta["final"]["val"]["per_attribute"]["hat"]
    assert abs(meta["data"]["labels"]["hat"]["phi_with_sensitive"]) < 0.3


def test_scratch_base_is_the_common_starting_point(tmp_path):
    path = write_scratch_base(tmp_path / "scratch.pt", image_size=64, seed=5, name="avatars-scratch")
    loaded = load_checkpoint(path)
    registry = create_backbone("smallcnn.scratch", seed=5)  # width 16, same seeding convention
    init, _ = build_model("smallcnn", None, seed=5, n_heads=3)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, registry.model.state_dict()[key])
        assert torch.equal(value, init.state_dict()[key])
    meta = loaded.extra["checkpoint_meta"]
    assert meta["kind"] == "scratch" and meta["attributes"] == [] and meta["seed"] == 5
    assert loaded.preprocess == registry.preprocess
