"""Benchmark: the paper's correlation grid on synthetic CelebA-size stores, vs tuned scikit-learn.

Builds (or reuses) ``--stores`` synthetic feature stores of CelebA's shape, runs the
``wr-correlation`` grid on them with :func:`analyze.sweep.run.sweep` (4 attributes x 11
levels x n in {128, 1024} x 5 seeds = 440 probe cells per store, 7 values of C chosen on
validation rows), and, in the same run, a tuned scikit-learn baseline on a random sample
of the same cells. Writes one CSV row to ``benchmarks/results/grid-<device>.csv`` and
prints it.

The synthetic stores (seeded; the same metadata in every store, features differ per store):

* shape: ``--n-rows`` rows (default 202,599, CelebA's size) x 2,048 float16 features
  (ResNet-50's pooled width): 0.83 GB per store at full size;
* splits in CelebA's proportions and order: 162,770 train, 19,867 val, 19,962 test rows
  (scaled with ``--n-rows``);
* attributes with CelebA-like rates: ``Male`` 41.7%; ``Wearing_Earrings`` 18.9%,
  ``Brown_Hair`` 20.5%, ``Blond_Hair`` 14.8%, ``Bags_Under_Eyes`` 20.5% of rows, with
  P(Male | attribute) = 0.05, 0.35, 0.06 and 0.64 (earrings and blond hair mostly
  female, bags under the eyes mostly male), so the smallest (attribute, Male) cell of
  the train split holds about 1,400 rows, as in CelebA (n = 1024 feasible at every level);
* features: ReLU-like and low-rank, ``relu(z @ W + 0.5 * noise + 0.2) * gains`` with
  ``z`` = five attribute factors (the attribute coded +-1 times a per-store signal, 0.8 to
  1.4, plus a standard normal: the features never determine a label exactly, as with
  real images) and 64 Gaussian factors with a power-law spectrum, ``W`` a random
  (69, 2048) map, ``noise`` i.i.d. normal and per-channel log-normal ``gains``:
  non-negative, sparse, a large shared mean and an ill-conditioned covariance, like
  pooled CNN features.

Below the full size, ``n = 1024`` is lowered to the largest training size that every
target allows (printed).

The baseline is what a careful researcher runs: scikit-learn ``LogisticRegression``
(lbfgs) with ONE BLAS thread per process x ``--n-jobs`` loky processes (pool warmed before
timing), for each sampled cell a path over the same C grid (ascending, warm-started), C
chosen by the lowest validation log-loss, scored on the same test rows, with the same
``tol`` and ``max_iter`` as the engine. Its rows are read from a memory map of the same
store. The CSV gives both rates, their ratio and the largest |AUC difference| between
the sweep's records and the baseline on the sampled cells.

Memory is sampled over this process and its children (loky workers): every 5 s the peak
of the summed proportional set size (PSS: a page shared by k processes counts 1/k in each,
so a shared store counts once), the part of it that is store pages mapped from the store
files, and the difference; every 0.5 s the summed anonymous resident memory (never store
pages). ``beyond_stores_gb`` is the larger of the two peaks (:class:`MemorySampler`).

    python benchmarks/grid.py --n-rows 20000 --stores 1           # a quick run
    python benchmarks/grid.py                                     # 5 CelebA-size stores, 2,200 cells
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from extract.paths import work_dir  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CELEBA_ROWS = 202_599
CELEBA_SPLITS = (("train", 162_770), ("val", 19_867), ("test", 19_962))
FEATURE_DIM = 2048
SENSITIVE, MALE_RATE = "Male", 0.417
# attribute: (share of rows, P(Male | attribute))
TARGETS = {"Wearing_Earrings": (0.189, 0.05), "Brown_Hair": (0.205, 0.35),
           "Blond_Hair": (0.148, 0.06), "Bags_Under_Eyes": (0.205, 0.64)}
LATENT_RANK, NOISE, OFFSET, CHANNEL_SPREAD = 64, 0.5, 0.2, 0.5
BLOCK_ROWS = 8192
GRID_BACKBONES = ("scratch", "tv2_in1k", "moco_v3", "simclr", "places365")  # the preset's names
SAMPLE_EVERY_S = 0.5
SMAPS_EVERY = 10  # page walks every 5 s (see MemorySampler)
FIELDS = ["n_rows", "stores", "cells", "n_jobs", "device", "sweep_seconds", "cells_per_s", "store_gb",
          "peak_pss_gb", "peak_store_pss_gb", "beyond_stores_gb", "peak_anon_sum_gb", "peak_rss_sum_gb",
          "baseline_cells", "baseline_jobs", "baseline_seconds", "baseline_cells_per_s", "ratio_vs_baseline", "max_abs_auc_diff",
          "median_abs_auc_diff", "n_values", "tol", "max_iter"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-rows", type=int, default=CELEBA_ROWS, help="rows per store (default CelebA's 202,599)")
    parser.add_argument("--stores", type=int, default=5, help="stores (bases) in the grid, 1-5 (default 5: 2,200 cells)")
    parser.add_argument("--n-jobs", type=int, default=2, help="sweep workers and baseline processes")
    parser.add_argument("--device", default="cpu", help="probe device of the sweep (cpu or cuda)")
    parser.add_argument("--baseline-cells", type=int, default=40, help="cells sampled for the sklearn baseline")
    parser.add_argument("--seed", type=int, default=0, help="seeds the stores and the baseline's sample")
    parser.add_argument("--store-dir", type=Path, default=None,
                        help="where the synthetic stores live (default <work>/benchmarks/grid-stores; reused)")
    parser.add_argument("--out", type=Path, default=None, help="CSV (default benchmarks/results/grid-<device>.csv)")
    args = parser.parse_args(argv)
    if not 1 <= args.stores <= len(GRID_BACKBONES):
        parser.error(f"--stores takes 1 to {len(GRID_BACKBONES)}, got {args.stores}.")
    if args.n_rows < 2000:
        parser.error(f"--n-rows must be at least 2000 (the smallest cells need rows), got {args.n_rows}.")
    return args


# -- synthetic stores -------------------------------------------------------------------------
def make_metadata(n_rows, seed):
    """image_id, split (CelebA's proportions and order) and the five binary attributes."""
    rng = np.random.default_rng([seed, 0])
    sizes = [round(n_rows * count / CELEBA_ROWS) for _, count in CELEBA_SPLITS]
    sizes[0] += n_rows - sum(sizes)
    split = np.repeat([name for name, _ in CELEBA_SPLITS], sizes)
    male = rng.random(n_rows) < MALE_RATE
    columns = {"image_id": [f"{i + 1:06d}.jpg" for i in range(n_rows)], "split": split,
               SENSITIVE: male.astype(np.int8)}
    for name, (rate, male_share) in TARGETS.items():
        given_male = rate * male_share / MALE_RATE
        given_female = rate * (1 - male_share) / (1 - MALE_RATE)
        chance = np.where(male, given_male, given_female)
        columns[name] = (rng.random(n_rows) < chance).astype(np.int8)
    return pd.DataFrame(columns)


def _generator_settings(args, index):
    return {"generator": "benchmarks/grid.py", "version": 2, "seed": args.seed, "store": index,
            "n_rows": args.n_rows, "rank": LATENT_RANK, "noise": NOISE, "offset": OFFSET,
            "channel_spread": CHANNEL_SPREAD, "targets": TARGETS, "male_rate": MALE_RATE}


def build_store(path, meta, args, index):
    """Write one synthetic store (module docstring); returns its path."""
    from extract.store.writer import StoreWriter, make_provenance

    settings = _generator_settings(args, index)
    rng = np.random.default_rng([args.seed, 1, index])
    attributes = [SENSITIVE, *TARGETS]
    signal = 0.8 + 0.15 * index  # bases differ in how strongly they encode the attributes
    spectrum = np.arange(1, LATENT_RANK + 1) ** -0.5
    mixing = rng.standard_normal((len(attributes) + LATENT_RANK, FEATURE_DIM)) / np.sqrt(len(attributes) + 4)
    gains = np.exp(CHANNEL_SPREAD * rng.standard_normal(FEATURE_DIM))
    codes = (2.0 * meta[attributes].to_numpy(np.float32) - 1.0) * signal
    manifest = hashlib.sha256(json.dumps({k: v for k, v in settings.items() if k != "store"},
                                         sort_keys=True).encode()).hexdigest()
    config = {"name": f"synthetic_resnet50_{index}", "feature_dim": FEATURE_DIM, "seed": args.seed + index,
              "weights_sha256": None, "preprocess": {"synthetic": True}}
    provenance = make_provenance(dataset_name="celeba-synthetic", manifest_hash=manifest, n_rows=len(meta),
                                 backbone_config=config, extraction={"precision": "float16", **settings})
    with StoreWriter.start(path, metadata=meta, attributes=attributes, provenance=provenance, resume=False) as writer:
        for first in range(0, len(meta), BLOCK_ROWS):
            block_rng = np.random.default_rng([args.seed, 2, index, first])
            stop = min(first + BLOCK_ROWS, len(meta))
            latent = block_rng.standard_normal((stop - first, LATENT_RANK), dtype=np.float32) * spectrum
            factors = codes[first:stop] + block_rng.standard_normal((stop - first, len(attributes)), dtype=np.float32)
            z = np.concatenate([factors, latent], axis=1).astype(np.float32)
            pre = z @ mixing.astype(np.float32)
            pre += NOISE * block_rng.standard_normal(pre.shape, dtype=np.float32) + OFFSET
            np.maximum(pre, 0.0, out=pre)
            pre *= gains.astype(np.float32)
            writer.write(first, pre.astype(np.float16))
        return writer.finalize()


def ensure_stores(args, meta):
    """The synthetic stores, built unless a matching one exists (settings in the provenance)."""
    from extract.store.reader import FeatureStore

    folder = args.store_dir or work_dir() / "benchmarks" / "grid-stores"
    paths = []
    for index in range(args.stores):
        path = folder / f"celeba-synthetic_{args.n_rows}_seed{args.seed}_{index}.h5"
        if path.exists():
            found = FeatureStore.open(path, check_finite=False).provenance["extraction"]
            if found != {"precision": "float16", **json.loads(json.dumps(_generator_settings(args, index)))}:
                path.unlink()
        if not path.exists():
            began = time.perf_counter()
            build_store(path, meta, args, index)
            print(f"built {path} in {time.perf_counter() - began:.1f} s", flush=True)
        paths.append(path)
    return paths


def training_sizes(meta):
    """n in {128, 1024}, the larger lowered to what the smallest (target, Male) cell allows."""
    train = meta[meta["split"] == "train"]
    smallest = min(int(((train[t] == y) & (train[SENSITIVE] == s)).sum())
                   for t in TARGETS for y in (0, 1) for s in (0, 1))
    largest = 2 * (smallest - round(0.2 * smallest))  # the correlation set's training part
    return sorted({min(128, largest), min(1024, largest)})


# -- memory ----------------------------------------------------------------------------------
class MemorySampler(threading.Thread):
    """Peak summed PSS (and its store-file part), summed RSS and summed anonymous RSS of this process tree.

    PSS needs a walk of every mapped page (``/proc/PID/smaps``: about 27 ms per process with
    two CelebA-size stores mapped), which sampled every 0.5 s took 10-15% of one core from
    the sweep it measures on a 2-core machine. So the page walk runs every
    ``SMAPS_EVERY`` samples, and every sample (``SAMPLE_EVERY_S``) reads the kernel's
    counters in ``/proc/PID/status`` (``RssAnon``: memory that is never store pages), whose
    peak bounds ``beyond_stores`` from below between page walks.
    """

    def __init__(self, store_paths):
        super().__init__(daemon=True)
        self.stores = {str(Path(p).resolve()) for p in store_paths}
        self.peak_pss = self.peak_store = self.peak_beyond = self.peak_rss = self.peak_anon = 0
        self._done = threading.Event()

    def run(self):
        me = psutil.Process()
        sample = 0
        while not self._done.is_set():
            processes = [me, *me.children(recursive=True)]
            self.peak_anon = max(self.peak_anon, sum(_anonymous_bytes(proc.pid) for proc in processes))
            if sample % SMAPS_EVERY == 0:
                self._walk_pages(processes)
            sample += 1
            self._done.wait(SAMPLE_EVERY_S)
        self._walk_pages([me, *me.children(recursive=True)])

    def _walk_pages(self, processes):
        pss = store = rss = 0
        for proc in processes:
            try:
                for region in proc.memory_maps(grouped=True):
                    pss += region.pss
                    rss += region.rss
                    if region.path in self.stores:
                        store += region.pss
            except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                continue
        self.peak_pss, self.peak_store = max(self.peak_pss, pss), max(self.peak_store, store)
        self.peak_beyond, self.peak_rss = max(self.peak_beyond, pss - store), max(self.peak_rss, rss)

    @property
    def beyond_stores(self):
        """Peak memory that is not store pages: page walks, or anonymous memory when higher."""
        return max(self.peak_beyond, self.peak_anon)

    def stop(self):
        self._done.set()
        self.join()


def _anonymous_bytes(pid):
    """``RssAnon`` of a process in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- scikit-learn baseline ---------------------------------------------------------------------
_MAPS = {}


def _store_matrix(path):
    """The store's feature matrix as a read-only memory map (one per process)."""
    import h5py

    if path not in _MAPS:
        with h5py.File(path, "r") as h5:
            dataset = h5["features"]
            offset, shape = dataset.id.get_offset(), dataset.shape
        _MAPS[path] = np.memmap(path, dtype=np.float16, mode="r", offset=offset, shape=shape)
    return _MAPS[path]


def sklearn_cell(path, train, val, test, labels, Cs, tol, max_iter):
    """One probe cell the scikit-learn way; returns (test AUC, seconds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    began = time.perf_counter()
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = _store_matrix(path)
        x_train, x_val = matrix[train].astype(np.float32), matrix[val].astype(np.float32)
        model = LogisticRegression(C=Cs[0], tol=tol, max_iter=max_iter, warm_start=True)
        best = None
        for C in Cs:
            model.set_params(C=C).fit(x_train, labels[train])
            scores = model.decision_function(x_val)
            loss = float(np.mean(np.logaddexp(0, scores) - labels[val] * scores))
            if best is None or loss < best[0]:
                best = (loss, model.coef_[0].copy(), float(model.intercept_[0]))
        test_scores = matrix[test].astype(np.float32) @ best[1] + best[2]
        auc = float(roc_auc_score(labels[test], test_scores))
    return auc, time.perf_counter() - began


def run_baseline(plan, args, Cs, tol, max_iter):
    """Sampled cells through sklearn; returns ({cell_id: AUC}, seconds)."""
    from joblib import Parallel, delayed

    from analyze.probe.cells import build_tasks
    from extract.store.reader import FeatureStore

    rng = np.random.default_rng([args.seed, 3])
    picks = sorted(rng.choice(len(plan.cells), size=min(args.baseline_cells, len(plan.cells)), replace=False))
    stores = {b.name: b.store for b in plan.grid.backbones}
    metas = {}
    jobs = []
    for i in picks:
        cell = plan.cells[i]
        path = stores[cell.backbone]
        if path not in metas:
            metas[path] = FeatureStore.open(path, check_finite=False).metadata
        task = build_tasks(metas[path], [cell.spec])[0]
        jobs.append((cell.cell_id, (path, task.train, task.val, task.test, task.labels, list(Cs), tol, max_iter)))
    parallel = Parallel(n_jobs=args.n_jobs, backend="loky")
    parallel(delayed(sklearn_cell)(*job) for _, job in jobs[:args.n_jobs])  # warm the pool and the maps
    began = time.perf_counter()
    found = parallel(delayed(sklearn_cell)(*job) for _, job in jobs)
    seconds = time.perf_counter() - began
    return {cell: auc for (cell, _), (auc, _) in zip(jobs, found)}, seconds


# -- the run ---------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    from analyze.probe import ProbeConfig
    from analyze.sweep.grid import load_grid
    from analyze.sweep.run import sweep
    from analyze.sweep.units import plan_sweep

    meta = make_metadata(args.n_rows, args.seed)
    paths = ensure_stores(args, meta)
    sizes = training_sizes(meta)
    if sizes != [128, 1024]:
        print(f"--n-rows {args.n_rows}: training sizes {sizes} (n = 1024 needs about 200,000 rows)")
    names = GRID_BACKBONES[:args.stores]
    overrides = [(f"backbones.{name}.store", str(path)) for name, path in zip(names, paths)]
    overrides += [("subsets.*.n", sizes), ("probe.device", args.device)]
    grid = load_grid("wr-correlation", overrides=overrides, backbones=list(names))
    plan = plan_sweep(grid)
    tol, max_iter = ProbeConfig().tol, ProbeConfig().max_iter
    store_bytes = sum(len(meta) * FEATURE_DIM * 2 for _ in paths)

    results = Path(tempfile.mkdtemp(prefix="grid-bench-"))
    try:
        sampler = MemorySampler(paths)
        sampler.start()
        began = time.perf_counter()
        summary = sweep(grid, out=results, n_jobs=args.n_jobs, progress=False, skip_existing=False)
        seconds = time.perf_counter() - began
        sampler.stop()
        records = {c: json.loads((results / f"{c}.json").read_text()) for c in summary["cell_id"]}
        print(f"sweep: {len(records)} cells in {seconds:.1f} s ({len(records) / seconds:.2f} cells/s), "
              f"peak PSS {sampler.peak_pss / 2**30:.2f} GB of which store pages {sampler.peak_store / 2**30:.2f} GB",
              flush=True)
        aucs, baseline_seconds = run_baseline(plan, args, grid.probe["Cs"], tol, max_iter)
    finally:
        shutil.rmtree(results, ignore_errors=True)
    diffs = np.array([abs(records[c]["metrics"]["auc"] - auc) for c, auc in aucs.items()])
    baseline_rate = len(aucs) / baseline_seconds
    row = {"n_rows": args.n_rows, "stores": args.stores, "cells": len(records), "n_jobs": args.n_jobs,
           "device": args.device, "sweep_seconds": round(seconds, 2), "cells_per_s": round(len(records) / seconds, 3),
           "store_gb": round(store_bytes / 2**30, 3), "peak_pss_gb": round(sampler.peak_pss / 2**30, 3),
           "peak_store_pss_gb": round(sampler.peak_store / 2**30, 3),
           "beyond_stores_gb": round(sampler.beyond_stores / 2**30, 3),
           "peak_anon_sum_gb": round(sampler.peak_anon / 2**30, 3),
           "peak_rss_sum_gb": round(sampler.peak_rss / 2**30, 3), "baseline_cells": len(aucs),
           "baseline_jobs": args.n_jobs, "baseline_seconds": round(baseline_seconds, 2),
           "baseline_cells_per_s": round(baseline_rate, 3),
           "ratio_vs_baseline": round(len(records) / seconds / baseline_rate, 2),
           "max_abs_auc_diff": float(diffs.max()), "median_abs_auc_diff": float(np.median(diffs)),
           "n_values": "/".join(map(str, sizes)), "tol": tol, "max_iter": max_iter}
    out = args.out or RESULTS / f"grid-{args.device}.csv"
    write_row(out, row)
    for key in FIELDS:
        print(f"{key:>22}: {row[key]}")
    print(f"-> {out}")


def write_row(out, row):
    """Append ``row`` to the CSV ``out`` (header when new), atomically (temp file + rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = out.read_text() if out.exists() else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=out.parent)
    with os.fdopen(fd, "w", newline="") as handle:
        handle.write(previous)
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if not previous:
            writer.writeheader()
        writer.writerow(row)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
