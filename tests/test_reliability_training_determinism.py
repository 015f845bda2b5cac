"""Same inputs, same weights: pretraining and finetuning an EfficientNet-Lite0 repeat bit for bit on the CPU.

Lite0 applies dropout (``drop_rate = 0.2``) to its pooled features in training mode, and
dropout can only draw from torch's global RNG. Before it was seeded, two runs of the same
recipe gave different bases (max |dw| 0.0075 after one epoch on 200 avatars) because the
draws depended on what had consumed the global RNG earlier in the process. These tests
train twice with the global RNG left in different states, and once in a fresh process with
a CPU-bound process beside it, at one torch thread, and compare the weights bitwise.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analyze.finetune.train import FinetuneNet, RunSettings, train_run
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.train import pretrain_base

REPO = Path(__file__).resolve().parents[1]
INIT = "efficientnet_lite0.imagenet"
CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_reliability_training_determinism import pretrain_digest
print(pretrain_digest({cache!r}))
"""

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    try:
        create_backbone(INIT, image_size=32)
    except UserError as exc:  # the optional weights package is absent
        pytest.skip(str(exc))
    return render_dataset(tmp_path_factory.mktemp("det") / "pretrain.h5", spec=RenderSpec(n=48, size=32, seed=11, preset="independent", signal_sample=1), workers=1, progress=False)


def digest(state: dict) -> str:
    h = hashlib.sha256()
    for key, value in state.items():
        h.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def pretrain_digest(cache: str) -> str:
    model, _ = pretrain_base(AvatarAdapter(cache), attributes=["hat"], device="cpu", progress=False,
                             model=PretrainModel(arch="efficientnet_lite0", init=INIT),
                             config=PretrainConfig(freeze_bn=True, epochs=1, batch_size=16, lr=0.01, seed=0))
    return digest(model.state_dict())


def test_pretraining_does_not_depend_on_the_global_rng_and_leaves_it_alone(cache):
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = pretrain_digest(str(cache))
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    torch.rand(1000)  # another state of the global RNG
    assert pretrain_digest(str(cache)) == first


def test_pretraining_repeats_in_a_fresh_process_beside_a_busy_one(cache):
    here = pretrain_digest(str(cache))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        child = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent), cache=str(cache))],
                               env=env, capture_output=True, text=True, timeout=600)
    finally:
        busy.kill()
        busy.wait()
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.strip().splitlines()[-1] == here


def test_finetuning_a_lite0_does_not_depend_on_the_global_rng(cache):
    adapter = AvatarAdapter(cache)
    images = torch.from_numpy(np.ascontiguousarray(adapter.read_images(np.arange(48)))).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(adapter.metadata()["hat"].to_numpy(), dtype=torch.float32)
    runs = []
    for consume in (0, 1000):
        torch.rand(consume)
        base = create_backbone(INIT, image_size=32)
        net = FinetuneNet(base.model, base.feature_dim, base.preprocess, freeze_bn=True, seed=0)
        run = train_run(net, images[:32], labels[:32], images[32:], labels[32:], device=torch.device("cpu"), seed=0,
                        settings=RunSettings(lr=0.01, weight_decay=1e-4, epochs=2, batch_size=16))
        runs.append((digest(run.state), run.val_curve))
    assert runs[0] == runs[1]
