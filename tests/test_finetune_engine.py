"""The batched finetune engine against the one-at-a-time loop: same subsets and data order,
per-cell test AUC and FPR gap within 0.005, early stop per run, BatchNorm statistics per
model, the learning-rate schedule, and how runs are stacked."""

import math

import numpy as np
import pytest
import torch

from analyze.config import RunContext
from analyze.finetune.engine import Job, choose_models, group_jobs, model_bytes, train_stack
from analyze.finetune.runner import FinetuneConfig, finetune_cells
from analyze.finetune.search import resolve_engine
from analyze.finetune.train import RunSettings, lr_factor, steps_per_epoch, train_run
from analyze.results.records import read_record
from analyze.subsets import Correlation
from extract.backbones import Preprocess, save_checkpoint
from extract.datasets.avatars import AvatarAdapter
from extract.errors import UserError
from extract.models.smallcnn import SmallCNN
from tests.finetune_nets import SIDE, small_net, synthetic

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A width-4 SmallCNN checkpoint at 32 px (the 'pretrained' base of the grid)."""
    torch.manual_seed(0)
    pre = Preprocess(resize=32, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    return save_checkpoint(tmp_path_factory.mktemp("base") / "tiny.pt", SmallCNN(width=4), arch="smallcnn",
                           arch_kwargs={"width": 4}, preprocess=pre, meta={"name": "tiny", "seed": 0})


def _records(folder):
    return {r["spec"]["seed"] * 10 + r["spec"]["level"]: r for r in map(read_record, sorted(folder.glob("*.json")))}


def test_engine_matches_the_loop_on_a_fixed_grid(avatar_cache, base, tmp_path):
    adapter = AvatarAdapter(avatar_cache)
    specs = [Correlation("hat", "dark_skin", c, n=60, seed=s) for c in (0.0, 1.0) for s in (0, 1)]
    tables = {}
    for engine in ("loop", "batched"):
        config = FinetuneConfig(lrs=(0.05, 0.01), weight_decays=(1e-4,), epochs=3, batch_size=32, freeze_bn=True,
                                schedule="cosine", engine=engine)
        tables[engine] = finetune_cells(specs, adapter=adapter, base=base, config=config,
                                        context=RunContext(out=tmp_path / engine, progress=False))
    loop, batched = _records(tmp_path / "loop"), _records(tmp_path / "batched")
    assert sorted(loop) == sorted(batched) and len(loop) == 4
    for key, ref in loop.items():
        got = batched[key]
        assert got["rows_digest"] == ref["rows_digest"]  # the same training, validation and test rows
        assert ref["hyperparameters"]["engine"] == "loop" and got["hyperparameters"]["engine"] == "batched"
        assert got["hyperparameters"]["lr"] == ref["hyperparameters"]["lr"]
        assert got["hyperparameters"]["best_epoch"] == ref["hyperparameters"]["best_epoch"]
        for metric in ("auc", "fpr_gap_stereotype", "fpr_gap"):
            assert abs(got["metrics"][metric] - ref["metrics"][metric]) <= 0.005, (key, metric)
        np.testing.assert_allclose(got["finetune"]["val_curve"], ref["finetune"]["val_curve"], rtol=1e-4)


def _jobs(labels, settings, train=slice(0, 64), val=slice(64, 96)):
    tr, va = torch.arange(len(labels))[train], torch.arange(len(labels))[val]
    return [Job(seed=i, train=tr, y_train=labels[tr], val=va, y_val=labels[va], settings=s)
            for i, s in enumerate(settings)]


def _reference(job, bank, freeze_bn=True):
    return train_run(small_net(job.seed, freeze_bn), bank.images[job.train], job.y_train, bank.images[job.val], job.y_val,
                     settings=job.settings, seed=job.seed, device=CPU)


def test_an_early_stopped_run_keeps_its_best_epoch_while_the_others_go_on():
    bank, labels = synthetic()
    settings = [RunSettings(lr=lr, weight_decay=1e-4, epochs=5, batch_size=16, patience=1) for lr in (0.3, 0.01)]
    jobs = _jobs(labels, settings)
    stopped, going = train_stack(jobs, [small_net(j.seed) for j in jobs], bank=bank)
    assert len(stopped.val_curve) < 5 and stopped.best_epoch < len(stopped.val_curve)  # stopped by patience
    assert all(math.isfinite(v) for v in stopped.val_curve) and not stopped.diverged
    assert len(going.val_curve) == 5
    for run, job in ((stopped, jobs[0]), (going, jobs[1])):
        ref = _reference(job, bank)
        assert (run.best_epoch, len(run.val_curve)) == (ref.best_epoch, len(ref.val_curve))
        np.testing.assert_allclose(run.val_curve, ref.val_curve, rtol=1e-5)
        for key, value in ref.state.items():  # the best epoch's weights, not the last one's
            torch.testing.assert_close(run.state[key], value, rtol=1e-4, atol=1e-5)


def test_batch_statistics_are_per_model_when_batchnorm_trains():
    bank, labels = synthetic()
    jobs = _jobs(labels, [RunSettings(lr=lr, weight_decay=0.0, epochs=1, batch_size=16) for lr in (0.05, 0.02)])
    runs = train_stack(jobs, [small_net(j.seed, freeze_bn=False) for j in jobs], bank=bank)
    for run, job in zip(runs, jobs):
        ref = _reference(job, bank, freeze_bn=False)
        for key in ("backbone.stem.1.running_mean", "backbone.stages.3.bn2.running_var"):
            torch.testing.assert_close(run.state[key], ref.state[key], rtol=1e-4, atol=1e-6)
        assert int(run.state["backbone.stem.1.num_batches_tracked"]) == steps_per_epoch(64, 16)
    assert not torch.equal(runs[0].state["backbone.stem.1.running_mean"], runs[1].state["backbone.stem.1.running_mean"])


def test_cosine_schedule_warms_up_and_decays_to_zero_within_the_budget():
    total, per_epoch = 40, 4
    factors = [lr_factor(s, total=total, per_epoch=per_epoch, schedule="cosine") for s in range(total)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]  # warm-up: 10% of the steps, here one epoch
    assert all(a >= b for a, b in zip(factors[3:], factors[4:])) and 0 < factors[-1] < 0.01
    assert all(lr_factor(s, total=total, per_epoch=per_epoch, schedule="constant") == 1.0 for s in range(total))
    with pytest.raises(UserError, match="`schedule`"):
        FinetuneConfig(schedule="linear")
    with pytest.raises(UserError, match="`engine`"):
        FinetuneConfig(engine="threads")


def test_runs_are_stacked_by_shape_and_memory():
    _, labels = synthetic()
    settings = RunSettings(lr=0.01, weight_decay=0.0)
    jobs = _jobs(labels, [settings] * 5) + _jobs(labels, [settings] * 2, train=slice(0, 48))
    assert group_jobs(jobs, 2) == [[0, 1], [2, 3], [4], [5, 6]]  # never mixes training-set sizes
    net = small_net(0)
    assert model_bytes(net, side=SIDE, batch_size=64) > model_bytes(net, side=SIDE, batch_size=8) > 0
    assert 1 <= choose_models(net, side=SIDE, batch_size=64, device=CPU) <= 4


def test_config_patience_and_schedule_reach_every_run():
    config = FinetuneConfig(lrs=(0.1, 0.01), weight_decays=(0.0,), schedule="cosine", patience=3)
    assert [(s.patience, s.schedule) for s in config.settings()] == [(3, "cosine")] * 2
    assert FinetuneConfig().engine == "auto" and resolve_engine("auto", CPU) == "loop"
    assert resolve_engine("auto", torch.device("cuda")) == "batched" and resolve_engine("batched", CPU) == "batched"
    with pytest.raises(UserError, match="patience"):
        FinetuneConfig(patience=-1)
