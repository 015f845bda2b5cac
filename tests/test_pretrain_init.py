"""Bases that start from a pretrained backbone (``init``) with fixed BatchNorm statistics."""

import numpy as np
import pytest
import torch

from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.pretrain.train import write_base, write_scratch_base
from pretraining import pretrain

INIT = "efficientnet_lite0.imagenet"

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("init") / "pretrain.h5", spec=RenderSpec(n=80, size=32, seed=7, preset="independent", signal_sample=1), workers=1, progress=False)
    return AvatarAdapter(path)


@pytest.fixture(scope="module")
def start():
    try:
        return create_backbone(INIT, image_size=32)
    except UserError as exc:  # the optional weights package is absent
        pytest.skip(str(exc))


def _bn_stats(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


def _train(adapter, **kw):
    options = dict(attributes=["hat"], arch="efficientnet_lite0", init=INIT, epochs=1, batch_size=16, lr=0.01,
                   seed=0, rows=np.arange(48), device="cpu", progress=False)
    options.update(kw)
    return pretrain(adapter, **options)


def test_init_starts_from_the_weights_and_freeze_bn_keeps_their_statistics(adapter, start, tmp_path):
    model, history = _train(adapter, freeze_bn=True)
    stats, trained = _bn_stats(model), model.state_dict()
    assert stats and all(torch.equal(v, start.model.state_dict()[k]) for k, v in stats.items())
    conv = next(k for k, v in trained.items() if v.ndim == 4)
    assert not torch.equal(trained[conv], start.model.state_dict()[conv])  # it trained, from the init
    config = history["config"]
    assert config["init"] == {"name": INIT, "weights_sha256": start.weights_sha256} and config["freeze_bn"] is True
    assert tuple(config["preprocess"]["mean"]) == tuple(start.preprocess.mean)  # the init's normalisation
    path = write_base(tmp_path / "base.pt", model, history=history, name="b")
    loaded = create_backbone(path)
    assert loaded.preprocess.mean == start.preprocess.mean
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in trained.items())


def test_without_freeze_bn_the_statistics_move(adapter, start):
    model, history = _train(adapter, freeze_bn=False)
    assert history["config"]["freeze_bn"] is False
    assert any(not torch.equal(v, start.model.state_dict()[k]) for k, v in _bn_stats(model).items())


def test_the_scratch_base_of_an_init_recipe_is_random_with_the_inits_normalisation(start, tmp_path):
    path = write_scratch_base(tmp_path / "s.pt", arch="efficientnet_lite0", image_size=32, seed=0, init=INIT)
    scratch = create_backbone(path)
    assert scratch.preprocess.mean == start.preprocess.mean and scratch.preprocess.std == start.preprocess.std
    conv = next(k for k, v in scratch.model.state_dict().items() if v.ndim == 4)
    assert not torch.equal(scratch.model.state_dict()[conv], start.model.state_dict()[conv])


def test_an_init_of_another_architecture_is_one_clear_error(adapter, start):
    with pytest.raises(UserError, match="set \\[model\\] arch"):
        _train(adapter, arch="smallcnn")
    with pytest.raises(UserError, match="init"):
        _train(adapter, init="")
