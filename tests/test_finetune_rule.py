"""The warm-up + cosine + early-stop training rule (warm-up values, early stop at patience, a run
that reaches its budget end), the ``epochs_at_edge`` flag under it, and which records and settings
digests stay valid when the training changes."""

import math

import numpy as np
import pytest
import torch

from analyze.config import RunContext
from analyze.finetune.engine import Job, train_stack
from analyze.finetune.runner import FinetuneConfig, finetune_cells, same_training
from analyze.finetune.search import LEGACY_TRAINING
from analyze.finetune.train import RunSettings, lr_factor, train_run
from analyze.results.records import read_record, write_record
from analyze.runners.registry import get_runner
from analyze.subsets import Correlation
from analyze.sweep.settings import finetune_settings
from extract.backbones import Preprocess, save_checkpoint
from extract.datasets.avatars import AvatarAdapter
from extract.models.smallcnn import SmallCNN
from tests.finetune_nets import small_net, synthetic

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _flags(record: dict) -> dict:
    flags = {}
    get_runner("finetune").check_fit(record, lambda name, reason: flags.__setitem__(name, reason))
    return flags


def test_warm_up_and_cosine_decay_over_a_30_epoch_budget():
    config = FinetuneConfig(epochs=30, schedule="cosine", patience=5)
    assert {(s.epochs, s.schedule, s.patience) for s in config.settings()} == {(30, "cosine", 5)}
    assert (FinetuneConfig().schedule, FinetuneConfig().patience) == (LEGACY_TRAINING["schedule"], LEGACY_TRAINING["patience"])
    # the demo's cells: n = 128 rows, 2 steps per epoch, 60 steps; warm-up 10% of them, capped at one epoch
    factors = [lr_factor(s, total=60, per_epoch=2, schedule="cosine") for s in range(60)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert factors[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 58)))
    assert factors[31] == pytest.approx(0.5)  # half way through the decay
    assert all(a > b for a, b in zip(factors[2:], factors[3:])) and 0 < factors[-1] < 1e-3
    # a short run (fewer steps than ten epochs' worth) warms up over 10% of its steps
    assert [lr_factor(s, total=20, per_epoch=10, schedule="cosine") for s in range(2)] == [0.5, 1.0]


def _record(run, settings: RunSettings) -> dict:
    return {"hyperparameters": {"lr": settings.lr, "grid": {"lrs": [settings.lr]}, "best_epoch": run.best_epoch,
                                "epochs": settings.epochs, "patience": settings.patience},
            "finetune": {"train_curve": run.train_curve, "val_curve": run.val_curve}}


def test_early_stop_at_patience_and_the_budget_end_in_both_engines():
    bank, labels = synthetic()
    tr, va = torch.arange(64), torch.arange(64, 96)
    # lr 0.5 overfits quickly and stops early; lr 0.002 is still improving when its 6-epoch budget runs out
    settings = [RunSettings(lr=lr, weight_decay=0.0, epochs=6, batch_size=16, patience=2, schedule="cosine")
                for lr in (0.5, 0.002)]
    jobs = [Job(seed=i, train=tr, y_train=labels[tr], val=va, y_val=labels[va], settings=s)
            for i, s in enumerate(settings)]
    stacked = train_stack(jobs, [small_net(j.seed) for j in jobs], bank=bank)
    for job, run in zip(jobs, stacked):
        ref = train_run(small_net(job.seed), bank.images[tr], labels[tr], bank.images[va], labels[va],
                        settings=job.settings, seed=job.seed, device=CPU)
        assert (run.best_epoch, len(run.val_curve)) == (ref.best_epoch, len(ref.val_curve))
        np.testing.assert_allclose(run.val_curve, ref.val_curve, rtol=1e-4)
    stopped, ran_out = stacked
    # stopped: `patience` epochs past its best, inside the budget, the best epoch's weights kept
    assert len(stopped.val_curve) == stopped.best_epoch + 2 < 6
    assert stopped.val_loss == min(stopped.val_curve) and stopped.state is not None
    # ran out: trained every epoch of the budget and was still improving at the last
    assert len(ran_out.val_curve) == 6 and ran_out.best_epoch == 6
    assert all(b < a for a, b in zip(ran_out.val_curve, ran_out.val_curve[1:]))
    assert 1 < stopped.best_epoch and "epochs_at_edge" not in _flags(_record(stopped, settings[0]))
    reason = _flags(_record(ran_out, settings[1]))["epochs_at_edge"]
    assert reason == "the best epoch is the last of 6 (still improving when the budget ran out)"


def test_a_changed_default_training_changes_the_settings_digest():
    dataset = {"name": "avatars", "manifest_hash": "x", "options": {}}
    base = {"name": "smallcnn.scratch"}

    def settings(config):
        return finetune_settings(dataset=dataset, base=base, spec=None, config=config, options={})["finetune"]

    legacy = settings({"epochs": 5, **LEGACY_TRAINING})
    # the training of before `schedule` and `patience` existed: the digest omits them, as it did then
    assert "schedule" not in legacy and "patience" not in legacy
    assert legacy == settings({"epochs": 5, "engine": "loop"}) == settings({})  # today's default is that training
    # another training (as a changed default would be) names itself in the digest, so older records are refit
    rule = settings({"epochs": 30, "schedule": "cosine", "patience": 5})
    assert (rule["schedule"], rule["patience"], rule["epochs"]) == ("cosine", 5, 30) and rule != legacy
    assert settings({"schedule": "cosine"})["schedule"] == "cosine" and "patience" not in settings({"schedule": "cosine"})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(0)
    pre = Preprocess(resize=32, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    return save_checkpoint(tmp_path_factory.mktemp("base") / "tiny.pt", SmallCNN(width=4), arch="smallcnn",
                           arch_kwargs={"width": 4}, preprocess=pre, meta={"name": "tiny", "seed": 0})


def test_records_trained_otherwise_are_not_reused(avatar_cache, base, tmp_path):
    adapter = AvatarAdapter(avatar_cache)
    specs = [Correlation("hat", "dark_skin", 0.5, n=40, seed=s) for s in (0, 1)]
    legacy = FinetuneConfig(lrs=(0.01,), weight_decays=(1e-4,), epochs=2, batch_size=32, **LEGACY_TRAINING)
    first = finetune_cells(specs, adapter=adapter, base=base, config=legacy, context=RunContext(out=tmp_path, progress=False))
    assert set(first["status"]) == {"written"}
    again = finetune_cells(specs, adapter=adapter, base=base, config=legacy, context=RunContext(out=tmp_path, progress=False))
    assert set(again["status"]) == {"skipped"}
    # a record from before `schedule` and `patience` existed trained as LEGACY_TRAINING says
    for path in tmp_path.glob("*.json"):
        record = read_record(path)
        for key in LEGACY_TRAINING:
            record["hyperparameters"].pop(key)
        assert same_training(record, legacy)
        assert not same_training(record, FinetuneConfig(epochs=2, batch_size=32, schedule="cosine", patience=5))
        write_record(tmp_path, record)
    assert set(finetune_cells(specs, adapter=adapter, base=base, config=legacy,
                              context=RunContext(out=tmp_path, progress=False))["status"]) == {"skipped"}
    # another training (cosine, patience) is not served by those records: the cells are trained again
    changed = FinetuneConfig(lrs=(0.01,), weight_decays=(1e-4,), epochs=2, batch_size=32, schedule="cosine", patience=5)
    redone = finetune_cells(specs, adapter=adapter, base=base, config=changed, context=RunContext(out=tmp_path, progress=False))
    assert set(redone["status"]) == {"written"}
    assert {read_record(p)["hyperparameters"]["schedule"] for p in tmp_path.glob("*.json")} == {"cosine"}
