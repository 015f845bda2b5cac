"""One finetuning run: frozen stages (weights and BatchNorm statistics), determinism, best epoch."""

import numpy as np
import pytest
import torch

from analyze.finetune.train import (
    FinetuneNet,
    RunSettings,
    check_labels,
    frozen_units,
    train_run,
)
from extract.backbones import Preprocess
from extract.errors import UserError
from extract.models.smallcnn import SmallCNN

SIZE = 16
PRE = Preprocess(resize=SIZE, crop=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2).float()
    images = torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    images[labels == 1, 0] //= 2  # a learnable cue: positives have a darker red channel
    return images, labels


def _net(freeze=0, seed=0):
    torch.manual_seed(123)  # the same base weights for every net of a test
    return FinetuneNet(SmallCNN(width=4), 32, PRE, freeze=freeze, seed=seed)


def _bn_stats(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def _run(net, seed=0, epochs=2, lr=0.05):
    x, y = _data(48, 1)
    xv, yv = _data(16, 2)
    return train_run(net, x, y, xv, yv, settings=RunSettings(lr=lr, weight_decay=1e-4, epochs=epochs, batch_size=16),
                     seed=seed, device=CPU)


def test_frozen_stages_keep_weights_and_batchnorm_statistics():
    net = _net(freeze=2)
    frozen = [net.backbone.stem, net.backbone.stages[0], net.backbone.stages[1]]
    trained = net.backbone.stages[2]
    before = [(_bn_stats(m), {k: v.clone() for k, v in m.state_dict().items()}) for m in frozen]
    trained_before = _bn_stats(trained)
    _run(net)
    for module, (stats, weights) in zip(frozen, before):
        assert all(torch.equal(stats[k], v) for k, v in _bn_stats(module).items())
        assert all(torch.equal(weights[k], v) for k, v in module.state_dict().items())
    # the unfrozen stage did update its statistics (so the check above can fail)
    assert any(not torch.equal(trained_before[k], v) for k, v in _bn_stats(trained).items())
    net.train()
    assert all(not m.training for unit in frozen for m in unit.modules())
    assert net.backbone.stages[3].training and net.head.training
    assert all(not p.requires_grad for unit in frozen for p in unit.parameters())


def test_unfrozen_batchnorm_statistics_do_change():
    net = _net(freeze=0)
    before = _bn_stats(net.backbone.stem)
    _run(net, epochs=1)
    assert any(not torch.equal(before[k], v) for k, v in _bn_stats(net.backbone.stem).items())


def test_freezing_every_stage_trains_only_the_head():
    net = _net(freeze=4)
    backbone_before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    head_before = net.head.weight.detach().clone()
    _run(net, epochs=1)
    assert all(torch.equal(backbone_before[k], v) for k, v in net.backbone.state_dict().items())
    assert not torch.equal(head_before, net.head.weight)
    assert frozen_units(net.backbone, 4) == [net.backbone]


def test_bad_freeze_values():
    with pytest.raises(UserError, match="exceeds"):
        frozen_units(SmallCNN(width=4), 5)
    with pytest.raises(UserError):
        frozen_units(SmallCNN(width=4), -1)
    with pytest.raises(UserError, match="stem/stages"):
        frozen_units(torch.nn.Linear(2, 2), 1)


def test_same_seed_same_run_and_another_seed_differs():
    a, b, c = _run(_net(seed=0), seed=0), _run(_net(seed=0), seed=0), _run(_net(seed=1), seed=1)
    assert a.val_curve == b.val_curve and a.train_curve == b.train_curve
    assert np.array_equal(a.val_scores, b.val_scores)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert a.val_curve != c.val_curve


def test_best_epoch_weights_are_kept_and_scores_match_them():
    net = _net()
    run = _run(net, epochs=3)
    assert run.best_epoch == int(np.argmin(run.val_curve)) + 1
    assert run.val_loss == pytest.approx(min(run.val_curve))
    net.load_state_dict(run.state)
    xv, yv = _data(16, 2)
    net.eval()
    with torch.no_grad():
        logits = net(xv).numpy()
    assert np.allclose(logits, run.val_scores, atol=1e-5)  # validation scores are logits
    loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), yv).item()
    assert loss == pytest.approx(run.val_loss, rel=1e-5)


def test_divergence_is_reported_not_raised():
    run = _run(_net(), lr=1e12, epochs=2)
    assert run.diverged and run.val_loss == float("inf") and run.state is None


def test_check_labels():
    check_labels(np.array([0, 1, 1]), what="training")
    with pytest.raises(UserError, match="constant"):
        check_labels(np.array([1, 1, 1]), what="training")
    with pytest.raises(UserError, match="empty"):
        check_labels(np.array([], dtype=int), what="training")
    with pytest.raises(UserError, match="unknown"):
        check_labels(np.array([0, 1, -1]), what="training")


def test_freeze_bn_keeps_every_batchnorm_statistic_while_weights_train():
    net = FinetuneNet(_net().backbone, 32, PRE, freeze_bn=True, seed=0)
    stats = _bn_stats(net.backbone)
    weight = net.backbone.stem[0].weight.detach().clone()
    _run(net, epochs=1)
    assert all(torch.equal(stats[k], v) for k, v in _bn_stats(net.backbone).items())
    assert not torch.equal(weight, net.backbone.stem[0].weight)  # the convolutions did train
    net.train()
    bns = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and net.head.training
