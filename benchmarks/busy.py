"""Benchmark: training and extraction throughput on a busy machine, OpenMP's default wait policy vs PASSIVE.

torch's CPU threads wait for each other at the end of every parallel region. With OpenMP's
default policy a waiting thread spins; when another CPU-bound process holds one of the cores,
the spinning thread takes the core the lagging thread needs, and each of a small network's
thousands of parallel regions per step waits for a scheduler slice. ``biastransfer`` therefore
sets ``OMP_WAIT_POLICY=PASSIVE`` unless the caller set a policy (:mod:`analyze.cli`).

Each measurement runs in its own child process (OpenMP reads the policy when torch loads), at
torch's default thread count, on an EfficientNet-Lite0 (ImageNet weights) at ``--size`` px:

  train    SGD steps of one model on a batch of 64 (the finetune loop's step, BatchNorm
           statistics frozen as the avatar finetunes);
  extract  forward passes without gradients on a batch of 256 (feature extraction).

Each (method, policy) pair is timed quiet, then with one competing CPU-bound process that the
benchmark starts itself (a Python busy loop, killed at the end). The figure of merit is
busy/quiet: the share of the quiet default-policy throughput a run keeps when one core is taken.
The last line reads ``busy machine, PASSIVE vs default: train busy/quiet R.RR vs R.RR (...)``.

    python benchmarks/busy.py            # about 2 minutes on 2 cores
    python benchmarks/busy.py --seconds 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import copy, sys, time
import torch
from torch.nn import functional as F
from extract.backbones import create_backbone
from analyze.finetune.train import FinetuneNet

method, size, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
base = create_backbone("efficientnet_lite0.imagenet", image_size=size)
g = torch.Generator().manual_seed(0)
if method == "train":
    net = FinetuneNet(copy.deepcopy(base.model), base.feature_dim, base.preprocess, freeze_bn=True, seed=0).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 255, (64, 3, size, size), dtype=torch.uint8, generator=g)
    y = (torch.rand(64, generator=g) < 0.5).float()
    def step():
        loss = F.binary_cross_entropy_with_logits(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
    per = 64
else:
    model = base.model.eval(); x = torch.rand(256, 3, size, size, generator=g)
    def step():
        with torch.no_grad():
            model(x)
    per = 256
step()
began, steps = time.perf_counter(), 0
while steps < 2 or time.perf_counter() - began < seconds:
    step(); steps += 1
print(per * steps / (time.perf_counter() - began), torch.get_num_threads())
"""

SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def measure(method: str, policy: str, *, size: int, seconds: float) -> tuple[float, int]:
    """Images per second and torch threads of one child process under ``policy`` ("default" or "PASSIVE")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, "-c", CHILD, method, str(size), str(seconds)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a"


def run(size: int, seconds: float) -> dict:
    """``{(method, policy, busy): images/s}``, quiet first, then beside one competing process."""
    figures = {}
    for busy in (False, True):
        rival = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
        try:
            if rival is not None:
                time.sleep(1.0)
            for method in ("train", "extract"):
                for policy in ("default", "PASSIVE"):
                    rate, threads = measure(method, policy, size=size, seconds=seconds)
                    figures[method, policy, busy] = rate
                    print(f"{method:<8} {policy:<8} {'busy' if busy else 'quiet':<6} {rate:8.1f} images/s  "
                          f"threads {threads}  load {load()}", flush=True)
        finally:
            if rival is not None:
                rival.kill()
                rival.wait()
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64, the demo's)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement (default 8)")
    args = parser.parse_args(argv)
    f = run(args.size, args.seconds)
    lines = []
    for method in ("train", "extract"):
        quiet = f[method, "default", False]
        ratios = {p: f[method, p, True] / quiet for p in ("default", "PASSIVE")}
        cost = f[method, "PASSIVE", False] / quiet
        print(f"{method}: busy/quiet {ratios['PASSIVE']:.2f} with PASSIVE, {ratios['default']:.2f} with the default "
              f"policy; PASSIVE quiet {cost:.2f}x the default")
        lines.append(f"{method} busy/quiet {ratios['PASSIVE']:.2f} vs {ratios['default']:.2f}")
    print(f"busy machine, PASSIVE vs default: {'; '.join(lines)} ({args.size} px, one competing process, "
          f"{os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
