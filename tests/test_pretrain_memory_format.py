"""Pretraining never takes oneDNN's defective channels_last kernel (issue 23: `make test` died with a segfault).

oneDNN v3.12.0 (torch 2.14.1) computes the input gradient of a 1x1 convolution with stride > 1
and 2-7 input channels in the channels_last layout with ``brgconv_strided:avx2`` wherever it
dispatches AVX2 (CPUs without AVX-512), and that kernel writes out of bounds. The small CNN at
width 4 has such a shortcut (4 -> 8 channels, stride 2), so pretraining it in channels_last
corrupted the heap and the process died later in a backward pass (segfault, abort or bus
error). ``ONEDNN_MAX_CPU_ISA=AVX2`` makes oneDNN take its AVX2 kernels on any x86-64 CPU with
AVX2, so the child below runs the crashing sequence on this machine whatever its CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from extract.backbones import ARCHITECTURES
from extract.datasets.avatars import RenderSpec, render_dataset
from extract.devices import training_memory_format

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import numpy as np, torch
from extract.datasets.avatars import AvatarAdapter
from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.train import pretrain_base
torch.set_num_threads(1)
adapter = AvatarAdapter({cache!r})
light = np.flatnonzero(adapter.metadata()["dark_skin"].to_numpy() == 0)
for _ in range(20):  # the calls of tests/test_pretrain_errors.py::test_single_class_in_rows, repeated
    pretrain_base(adapter, attributes=["long_hair"], model=PretrainModel(arch_kwargs={{"width": 4}}),
                  config=PretrainConfig(epochs=2, batch_size=16, seed=0, val_fraction=0.0),
                  device="cpu", progress=False, rows=light)
print("clean")
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp("onednn") / "pretrain.h5", spec=RenderSpec(n=60, size=32, seed=9, preset="independent", signal_sample=1), workers=1, progress=False)


def test_the_crashing_sequence_exits_cleanly_on_onednn_avx2_kernels(cache):
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CHILD.format(cache=str(cache))], env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0 and child.stdout.strip().endswith("clean"), (child.returncode, child.stderr[-3000:])


@pytest.mark.parametrize("width, expected", [(4, torch.contiguous_format), (7, torch.contiguous_format),
                                             (8, torch.channels_last), (16, torch.channels_last)])
def test_the_small_cnn_trains_channels_last_on_the_cpu_only_without_the_defective_layer(width, expected):
    model = ARCHITECTURES["smallcnn"](width=width)
    assert training_memory_format(model, torch.device("cpu")) == expected
    assert training_memory_format(model, torch.device("cuda")) == torch.channels_last  # cuDNN, not oneDNN


def test_lite0_keeps_channels_last_on_the_cpu():
    model = ARCHITECTURES["efficientnet_lite0"]()
    assert training_memory_format(model, torch.device("cpu")) == torch.channels_last


def test_a_strided_1x1_convolution_of_few_channels_per_group_is_detected():
    few = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 16, 1, stride=2, groups=4))  # 2 per group
    many = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 16, 1, stride=2),
                               torch.nn.Conv2d(4, 8, 1, stride=1), torch.nn.Conv2d(4, 8, 3, stride=2))
    assert training_memory_format(few, torch.device("cpu")) == torch.contiguous_format
    assert training_memory_format(many, torch.device("cpu")) == torch.channels_last
