"""Contrastive (SimCLR) bases: NT-Xent, augmentations, one short epoch, recipe entries."""

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.pretrain.augment import AUGMENTS, augment_batch, resolve_augment
from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.contrastive import nt_xent, pretrain_contrastive
from extract.pretrain.recipe import check_recipe, entry_fingerprint, load_recipe, run_recipe
from extract.pretrain.train import build_model, write_base

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")

TINY = {
    "data": {"dataset": "avatars", "cache": "pretrain-tiny.h5", "n": 80, "size": 32, "seed": 21,
             "preset": "independent", "signal_sample": 1},
    "model": {"arch": "smallcnn", "arch_kwargs": {"width": 8}, "image_size": 32},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.05, "val_fraction": 0.25, "seed": 0, "max_control_phi": 0.5,
              "temperature": 0.2, "projection_dim": 16},
    "bases": [{"name": "tiny-hat", "role": "control", "attributes": ["hat"]},
              {"name": "tiny-simclr", "role": "selfsupervised", "objective": "simclr", "augment": "no_color"}],
}


def _direct_nt_xent(z1, z2, t):
    """NT-Xent written out view by view, in float64."""
    z = [v / np.linalg.norm(v) for v in np.concatenate([z1, z2]).astype(np.float64)]
    n, losses = len(z1), []
    for a in range(2 * n):
        partner = (a + n) % (2 * n)
        denominator = sum(math.exp(z[a] @ z[c] / t) for c in range(2 * n) if c != a)
        losses.append(-math.log(math.exp(z[a] @ z[partner] / t) / denominator))
    return float(np.mean(losses))


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_equals_a_direct_computation(t):
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    got = float(nt_xent(torch.tensor(z1), torch.tensor(z2), t))
    assert got == pytest.approx(_direct_nt_xent(z1, z2, t), rel=1e-9)


def test_nt_xent_is_minimal_when_views_coincide():
    rng = np.random.default_rng(4)
    z = torch.tensor(rng.normal(size=(6, 8)))
    same = float(nt_xent(z, z, 0.5))
    for seed in range(10, 15):
        other = torch.tensor(np.random.default_rng(seed).normal(size=(6, 8)))
        assert same < float(nt_xent(z, other, 0.5))
        assert same < float(nt_xent(z, z + 0.5 * other, 0.5))
    # with orthogonal images and identical views, the loss falls to log(1 + (2n - 2) e^{-1/t}) -> 0
    eye = torch.eye(6, dtype=torch.float64)
    assert float(nt_xent(eye, eye, 0.1)) == pytest.approx(math.log(1 + 10 * math.exp(-10)), rel=1e-9)
    with pytest.raises(UserError, match="`temperature`"):
        nt_xent(z, z, 0.0)


def test_augmentations_are_seeded_batched_and_in_range():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    for name, spec in AUGMENTS.items():
        a = augment_batch(images, spec, torch.Generator().manual_seed(7))
        b = augment_batch(images, spec, torch.Generator().manual_seed(7))
        c = augment_batch(images, spec, torch.Generator().manual_seed(8))
        assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
        assert torch.equal(a, b) and not torch.equal(a, c), name
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_colour_jitter_changes_colour_and_no_color_keeps_it():
    # a flat-coloured image: crop and flip leave its colour as it is, the jitter does not
    images = torch.zeros(64, 3, 16, 16, dtype=torch.uint8)
    images[:, 0], images[:, 1], images[:, 2] = 180, 120, 90
    plain = augment_batch(images, resolve_augment("no_color"), torch.Generator().manual_seed(0))
    assert torch.allclose(plain, images.float() / 255, atol=1e-5)
    jittered = augment_batch(images, resolve_augment("color"), torch.Generator().manual_seed(0))
    changed = (jittered - images.float() / 255).abs().amax((1, 2, 3)) > 0.02
    assert 0.6 < float(changed.float().mean()) < 1.0  # jitter with p 0.8 (or grey with p 0.2)
    with pytest.raises(UserError, match="`augment`"):
        resolve_augment("sepia")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("simclr") / "pretrain.h5",
                          spec=RenderSpec(n=48, size=32, seed=5, preset="independent", signal_sample=1), workers=1,
                          progress=False)
    return AvatarAdapter(path)


def test_one_short_epoch_saves_a_loadable_backbone(adapter, tmp_path):
    model = PretrainModel(arch="smallcnn", arch_kwargs={"width": 8}, image_size=32)
    config = PretrainConfig(epochs=1, batch_size=16, lr=0.05, val_fraction=0.25, temperature=0.2, projection_dim=16)
    backbone, history = pretrain_contrastive(adapter, augment="color", model=model, config=config, device="cpu",
                                             progress=False)
    again, _ = pretrain_contrastive(adapter, augment="color", model=model, config=config, device="cpu", progress=False)
    for (k, v), w in zip(backbone.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k
    assert history["config"]["objective"] == "simclr" and history["config"]["augment"] == "color"
    record = history["epochs"][0]
    assert math.isfinite(record["train_loss"]) and 0 <= record["val"]["pair_accuracy"] <= 1
    path = write_base(tmp_path / "simclr.pt", backbone, history=history, name="simclr",
                      meta={"role": "selfsupervised", "objective": "simclr", "augment": "color"})
    loaded = create_backbone(path)
    meta = loaded.extra["checkpoint_meta"]
    assert (meta["role"], meta["objective"], meta["augment"], meta["attributes"]) == ("selfsupervised", "simclr", "color", [])
    fresh, _ = build_model("smallcnn", {"width": 8}, seed=0)
    assert set(loaded.model.state_dict()) == set(fresh.state_dict())  # the backbone alone: no projection head
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded.model.eval()(x), backbone(x), atol=1e-6)


def test_recipe_builds_supervised_and_contrastive_bases(tmp_path):
    paths = run_recipe(copy.deepcopy(TINY), out_dir=tmp_path / "bases", cache_dir=tmp_path, workers=1, device="cpu",
                       progress=False)
    metas = {name: create_backbone(p).extra["checkpoint_meta"] for name, p in paths.items()}
    assert (metas["tiny-hat"]["objective"], metas["tiny-hat"]["augment"]) == ("supervised", "hflip")
    simclr = metas["tiny-simclr"]
    assert (simclr["role"], simclr["objective"], simclr["augment"]) == ("selfsupervised", "simclr", "no_color")
    assert simclr["config"]["temperature"] == 0.2 and simclr["config"]["projection_dim"] == 16
    assert simclr["data_hash"] == metas["tiny-hat"]["data_hash"]  # the same images


def test_fingerprints_of_supervised_entries_are_unchanged_by_the_new_keys():
    recipe = copy.deepcopy(TINY)
    hat = recipe["bases"][0]
    explicit = dict(hat, objective="supervised")
    assert entry_fingerprint(recipe, hat) == entry_fingerprint(recipe, explicit)
    simclr = recipe["bases"][1]
    assert entry_fingerprint(recipe, simclr) != entry_fingerprint(recipe, dict(simclr, augment="color"))
    default = {k: v for k, v in simclr.items() if k != "augment"}
    assert entry_fingerprint(recipe, default) == entry_fingerprint(recipe, dict(simclr, augment="color"))


@pytest.mark.parametrize("entry, fragment", [
    ({"name": "s", "role": "selfsupervised", "attributes": ["hat"]}, "`attributes`"),
    ({"name": "s", "role": "selfsupervised", "objective": "byol"}, "`objective`"),
    ({"name": "s", "role": "selfsupervised", "objective": "supervised"}, "`objective`"),
    ({"name": "s", "role": "control", "attributes": ["hat"], "objective": "simclr"}, "`objective`"),
    ({"name": "s", "role": "control", "attributes": ["hat"], "augment": "color"}, "`augment`"),
    ({"name": "s", "role": "selfsupervised", "augment": "sepia"}, "`augment`"),
    ({"name": "s", "role": "scratch", "objective": "simclr"}, "`objective`"),
])
def test_recipe_validation_names_the_key(entry, fragment):
    recipe = copy.deepcopy(TINY)
    recipe["bases"] = [entry]
    with pytest.raises(UserError, match=fragment):
        check_recipe(recipe)


@pytest.mark.parametrize("key, value", [("temperature", 0), ("temperature", "hot"), ("projection_dim", 0),
                                        ("projection_dim", 1.5)])
def test_bad_train_keys_name_the_key(key, value):
    with pytest.raises(UserError, match=f"`{key}`"):
        PretrainConfig.from_mapping({key: value}, where="recipe [train]")


def test_the_shipped_objectives_recipe():
    recipe = load_recipe("data/recipes/avatars-objectives.toml")
    bases = {b["name"]: b for b in recipe["bases"]}
    assert {b["role"] for b in bases.values()} >= {"control", "selfsupervised"}
    contrastive = [b for b in bases.values() if b["role"] == "selfsupervised"]
    assert sorted(b["augment"] for b in contrastive) == ["color", "no_color"]
    shipped = load_recipe("data/recipes/avatars-bases.toml")
    for section in ("data", "model"):
        assert recipe[section] == shipped[section]
    same = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "freeze_bn", "seed", "val_fraction")
    assert {k: recipe["train"][k] for k in same} == {k: shipped["train"][k] for k in same}
