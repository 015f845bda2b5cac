"""Benchmark: full-finetune cells per hour, the batched engine vs a plain PyTorch loop, same run.

Cells are EfficientNet-Lite0 finetunes (ImageNet weights resized to ``--sizes`` px, the
starting point of the avatar bases; BatchNorm statistics frozen, as the demo finetunes) on
their own seeded random ``--n`` training and ``--n-val`` validation rows of one rendered
avatar cache per size, target ``--target``, SGD with momentum 0.9 at lr 0.01, batch
``--batch-size``, ``--epochs`` epochs, validation after every epoch and the best epoch
kept. Methods:

  loop     :func:`analyze.finetune.train.train_run`, one model at a time (what W&R's
           ``classifier.py`` does: one net, one optimizer, a loop over batches), at each
           of ``--loop-threads`` torch thread counts; the fastest is the baseline;
  engine   :func:`analyze.finetune.engine.train_stack`: K cells trained in lockstep as one
           vmapped model, for each K of ``--ks`` and each of ``--engine-threads``.

Both see the same cells, rows, data order and flips. Methods alternate within each of
``--repeats`` rounds and every figure is the median over rounds; ``max |dAUC|`` compares
each cell's test AUC (``--n-test`` test-split rows) under the engine with the loop's. The
machine's load average is printed with the figures (other processes slow both methods;
the ratio is measured side by side). Rows go to ``benchmarks/results/finetune-<device>.csv``.

    python benchmarks/finetune.py --quick      # a few minutes: 32 and 64 px, K = 4
    python benchmarks/finetune.py              # K = 1, 2, 4, 8; 3 rounds
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analyze.finetune.data import ImageBank  # noqa: E402
from analyze.finetune.engine import Job, train_stack  # noqa: E402
from analyze.finetune.evaluate import scores_of  # noqa: E402
from analyze.finetune.train import FinetuneNet, RunSettings, train_run  # noqa: E402
from extract.backbones import create_backbone  # noqa: E402
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "efficientnet_lite0.imagenet"
FIELDS = ["image_size", "method", "k", "threads", "cells", "seconds", "images_per_s", "cells_per_hour",
          "ratio_vs_loop", "max_abs_dauc", "load_before", "load_after"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: K = 4, n = 64, 2 epochs, one round")
    parser.add_argument("--sizes", default="64,32", help="image sides in px")
    parser.add_argument("--ks", default="1,2,4,8", help="cells per engine stack")
    parser.add_argument("--loop-threads", default="1,2", help="torch thread counts tried for the loop")
    parser.add_argument("--engine-threads", default="1,2", help="torch thread counts tried for the engine")
    parser.add_argument("--loop-cells", type=int, default=2, help="cells timed for the loop (a rate is a rate)")
    parser.add_argument("--n", type=int, default=128, help="training rows per cell")
    parser.add_argument("--n-val", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", default="eyewear")
    parser.add_argument("--images", type=int, default=1200, help="avatars rendered per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.ks, args.n, args.n_val, args.epochs, args.repeats = "4", 64, 64, 2, 1
        args.images, args.loop_cells = 600, 2
    return args


def make_cells(size: int, args, scratch: Path):
    """A bank of rendered avatars, one job per cell (seeded rows), the test rows and the base."""
    cache = render_dataset(scratch / f"avatars-{size}.h5", spec=RenderSpec(n=args.images, size=size, seed=args.seed,
                                                                           signal_sample=2), workers=1, progress=False)
    adapter = AvatarAdapter(cache)
    meta = adapter.metadata()
    labels = meta[args.target].to_numpy()
    split = meta["split"].to_numpy()
    base = create_backbone(BASE, image_size=size)
    bank = ImageBank.from_adapter(adapter, base.preprocess, num_workers=0)
    pool = np.flatnonzero((split != "test") & (labels >= 0))
    test = np.flatnonzero((split == "test") & (labels >= 0))[:args.n_test]
    y = torch.from_numpy(labels.astype(np.float32))
    settings = RunSettings(lr=0.01, weight_decay=1e-4, epochs=args.epochs, batch_size=args.batch_size)
    jobs = []
    for cell in range(max(int(k) for k in args.ks.split(","))):
        rows = np.random.default_rng([args.seed, cell]).choice(pool, args.n + args.n_val, replace=False)
        train, val = torch.from_numpy(rows[:args.n]), torch.from_numpy(rows[args.n:])
        jobs.append(Job(seed=cell, train=train, y_train=y[train], val=val, y_val=y[val], settings=settings))
    return bank, jobs, test, labels[test], base


def make_net(base, seed: int) -> FinetuneNet:
    return FinetuneNet(copy.deepcopy(base.model), base.feature_dim, base.preprocess, freeze_bn=True, seed=seed)


def test_auc(base, run, images, y_test) -> float:
    net = make_net(base, 0)
    net.load_state_dict(run.state)
    return float(roc_auc_score(y_test, scores_of(net, images, device=torch.device("cpu"))))


def time_loop(base, bank, jobs, threads: int):
    """Seconds and runs of the plain loop: one net at a time, ``threads`` torch threads."""
    torch.set_num_threads(threads)
    began = time.perf_counter()
    runs = [train_run(make_net(base, j.seed), bank.images[j.train], j.y_train, bank.images[j.val],
                      j.y_val, settings=j.settings, seed=j.seed, device=torch.device("cpu")) for j in jobs]
    return time.perf_counter() - began, runs


def time_engine(base, bank, jobs, threads: int):
    """Seconds and runs of the engine: every job in one stack, ``threads`` torch threads."""
    torch.set_num_threads(threads)
    began = time.perf_counter()
    runs = train_stack(jobs, [make_net(base, j.seed) for j in jobs], bank=bank)
    return time.perf_counter() - began, runs


def measure_size(size: int, args, scratch: Path) -> list[dict]:
    """Every method at one image size, alternating within rounds; one row per method (medians)."""
    bank, jobs, test, y_test, base = make_cells(size, args, scratch)
    ks = [int(k) for k in args.ks.split(",")]
    threads = [int(t) for t in args.loop_threads.split(",")]
    engine_threads = [int(t) for t in args.engine_threads.split(",")]
    loop_jobs = jobs[:args.loop_cells]
    seconds = {("loop", 1, t): [] for t in threads} | {("engine", k, t): [] for k in ks for t in engine_threads}
    runs = {}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for t in threads:
            took, runs[("loop", 1, t)] = time_loop(base, bank, loop_jobs, t)
            seconds[("loop", 1, t)].append(took)
        for k in ks:
            for t in engine_threads:
                took, runs[("engine", k, t)] = time_engine(base, bank, jobs[:k], t)
                seconds[("engine", k, t)].append(took)
    load_after = os.getloadavg()[0]
    test_images = bank.take(test)
    loop_auc = [test_auc(base, r, test_images, y_test) for r in runs[("loop", 1, threads[0])]]
    rows = []
    for (method, k, t), times in seconds.items():
        cells = len(loop_jobs) if method == "loop" else k
        took = statistics.median(times)
        rows.append({"image_size": size, "method": method, "k": k, "threads": t, "cells": cells, "seconds": took,
                     "images_per_s": cells * args.n * args.epochs / took, "cells_per_hour": 3600 * cells / took,
                     "load_before": load_before, "load_after": load_after})
        if method == "engine":
            common = min(len(loop_auc), k)
            aucs = [test_auc(base, r, test_images, y_test) for r in runs[("engine", k, t)][:common]]
            rows[-1]["max_abs_dauc"] = max(abs(a - b) for a, b in zip(aucs, loop_auc))
    best_loop = max(r["cells_per_hour"] for r in rows if r["method"] == "loop")
    for row in rows:
        row["ratio_vs_loop"] = row["cells_per_hour"] / best_loop
    return rows


def write_rows(out: Path, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as scratch:
        for size in (int(s) for s in args.sizes.split(",")):
            rows += measure_size(size, args, Path(scratch))
    out = args.out or RESULTS / "finetune-cpu.csv"
    write_rows(out, rows)
    print(f"cpu ({os.cpu_count()} cores), Lite0, n = {args.n}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.repeats} round(s) -> {out}")
    print(f"{'px':>3} {'method':<7} {'K':>2} {'thr':>3} {'img/s':>7} {'cells/h':>8} {'ratio':>6} {'max|dAUC|':>9} load")
    for r in rows:
        dauc = f"{r['max_abs_dauc']:.4f}" if "max_abs_dauc" in r else "-"
        print(f"{r['image_size']:>3} {r['method']:<7} {r['k']:>2} {r['threads']:>3} {r['images_per_s']:>7.1f} "
              f"{r['cells_per_hour']:>8.0f} {r['ratio_vs_loop']:>5.2f}x {dauc:>9} "
              f"{r['load_before']:.1f}-{r['load_after']:.1f}")
    size = int(args.sizes.split(",")[0])
    best = max((r for r in rows if r["method"] == "engine" and r["image_size"] == size), key=lambda r: r["ratio_vs_loop"])
    print(f"finetune engine vs plain loop: {best['ratio_vs_loop']:.2f}x (Lite0 {size} px, K = {best['k']}, "
          f"{best['images_per_s']:.1f} vs {best['images_per_s'] / best['ratio_vs_loop']:.1f} training images/s, "
          f"max |dAUC| {best['max_abs_dauc']:.4f}, load {best['load_before']:.1f}-{best['load_after']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
