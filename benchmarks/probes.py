"""Benchmark: linear probes per second, this engine vs scikit-learn, in the same run.

Each probe is an L2 logistic regression on its own ``--n-train`` random rows of one
synthetic feature matrix (``analyze.probe.synthetic``: ``cnn`` = ill-conditioned, CNN-like;
``isotropic`` = well-conditioned), scored on shared test rows. Methods:

  a. sklearn ``LogisticRegression(lbfgs)`` in a plain loop, default threads (timed on the
     first ``--loop-probes`` probes; a rate is a rate);
  b. the same with one BLAS thread per worker x ``--jobs`` joblib processes (pool warmed);
  c. ``fit_probes`` with the ``--engine`` settings (threads, or parallel batches).

All use the same C, ``tol`` (sklearn's stopping rule) and ``max_iter``. With ``--sweep``
every probe also chooses C from a grid on 256 validation rows (sklearn: a warm-started
loop over C, as ``LogisticRegressionCV`` does). Writes one CSV row per (kind, method) to
``benchmarks/results/probes-<device>.csv`` and prints the same table.

    python benchmarks/probes.py                 # CPU, 128 probes, n=1024, d=2048
    python benchmarks/probes.py --device cuda --probes 1024 --engine t1
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analyze.probe import DEFAULT_CS, ProbeConfig, ProbeTask, fit_probes, make_probe_features  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VAL_ROWS, TEST_ROWS = 256, 2048
FIELDS = ["kind", "method", "device", "probes", "seconds", "probes_per_s", "speedup_vs_a",
          "speedup_vs_b", "max_abs_auc_diff_vs_a", "median_iters", "tol", "C"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (engine only)")
    parser.add_argument("--probes", type=int, default=128)
    parser.add_argument("--loop-probes", type=int, default=16, help="probes timed for method a")
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--n-features", type=int, default=2048)
    parser.add_argument("--pool", type=int, default=16384, help="rows the subsets are drawn from")
    parser.add_argument("--kinds", default="cnn,isotropic")
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--tol", type=float, default=1e-4, help="sklearn's default")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--engine", default="t1,t2,j2",
                        help="engine settings: tN = n_threads=N, jN = n_jobs=N (1 thread each)")
    parser.add_argument("--paths", default="joint,warm", help="engine C paths with --sweep")
    parser.add_argument("--sweep", action="store_true", help="choose C on validation rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def make_problem(kind, args):
    """Features, labels, one task per probe (train, val rows) and shared test rows."""
    X, y = make_probe_features(args.pool + TEST_ROWS, args.n_features, kind=kind, random_state=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    tasks = []
    for _ in range(args.probes):
        rows = rng.choice(args.pool, args.n_train + VAL_ROWS, replace=False)
        tasks.append(ProbeTask(train=np.sort(rows[:args.n_train]), val=np.sort(rows[args.n_train:])))
    return X, y, tasks, np.arange(args.pool, args.pool + TEST_ROWS)


def sklearn_probe(X, y, task, test, Cs, tol, max_iter):
    """One probe the way a researcher writes it; returns (test AUC, iterations)."""
    model = LogisticRegression(C=Cs[0], tol=tol, max_iter=max_iter, warm_start=True)
    best = None
    for C in Cs:
        model.set_params(C=C).fit(X[task.train], y[task.train])
        scores = model.decision_function(X[task.val]) if len(Cs) > 1 else None
        loss = 0.0 if scores is None else np.mean(np.logaddexp(0, scores) - y[task.val] * scores)
        if best is None or loss < best[0]:
            best = (loss, roc_auc_score(y[test], model.decision_function(X[test])), int(model.n_iter_[0]))
    return best[1], best[2]


def _one_thread_probe(*args):
    with threadpool_limits(limits=1):
        return sklearn_probe(*args)


def run_kind(kind, args, device):
    X, y, tasks, test = make_problem(kind, args)
    Cs = list(DEFAULT_CS) if args.sweep else [args.C]
    common = (test, Cs, args.tol, args.max_iter)
    rows = []
    loop = tasks[:args.loop_probes]
    start = time.perf_counter()
    a_runs = [sklearn_probe(X, y, task, *common) for task in loop]
    rows.append(_row(kind, "a: sklearn loop, default threads", len(loop), time.perf_counter() - start, a_runs))
    parallel = Parallel(n_jobs=args.jobs)
    parallel(delayed(_one_thread_probe)(X, y, task, *common) for task in tasks[:args.jobs])  # warm the pool
    start = time.perf_counter()
    b_runs = parallel(delayed(_one_thread_probe)(X, y, task, *common) for task in tasks)
    rows.append(_row(kind, f"b: sklearn 1 BLAS thread x {args.jobs} processes", len(tasks),
                     time.perf_counter() - start, b_runs))
    for path in args.paths.split(",") if args.sweep else ["joint"]:
        for setting in args.engine.split(","):
            option = {"t": "n_threads", "j": "n_jobs"}[setting[0]]
            config = ProbeConfig(Cs=Cs, tol=args.tol, max_iter=args.max_iter, device=device, path=path,
                                 **{option: int(setting[1:])})
            found = fit_probes(X, tasks, labels=y, test=test, config=config)
            runs = [(roc_auc_score(y[test], scores), int(found.n_iter[p, found.C_index[p]]))
                    for p, scores in enumerate(found.test_scores)]
            label = f"c: fit_probes {option}={setting[1:]}" + (f" path={path}" if args.sweep else "")
            rows.append(_row(kind, label, len(tasks), found.seconds, runs))
    a_auc = np.array([auc for auc, _ in a_runs])
    for row in rows:
        row["speedup_vs_a"] = row["probes_per_s"] / rows[0]["probes_per_s"]
        row["speedup_vs_b"] = row["probes_per_s"] / rows[1]["probes_per_s"]
        row["max_abs_auc_diff_vs_a"] = float(np.max(np.abs(np.array(row.pop("aucs")[:len(loop)]) - a_auc)))
        row.update(device=device if row["method"].startswith("c") else "cpu", tol=args.tol,
                   C="grid" if args.sweep else args.C)
    return rows


def _row(kind, method, probes, seconds, runs):
    return dict(kind=kind, method=method, probes=probes, seconds=seconds, probes_per_s=probes / seconds,
                aucs=[auc for auc, _ in runs], median_iters=float(np.median([it for _, it in runs])))


def main(argv=None):
    args = parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    out = args.out or RESULTS / f"probes-{device}{'-sweep' if args.sweep else ''}.csv"
    warnings.simplefilter("ignore", ConvergenceWarning)
    rows = [row for kind in args.kinds.split(",") for row in run_kind(kind, args, device)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"n_train={args.n_train} d={args.n_features} tol={args.tol} "
          f"{'C grid ' + str(len(DEFAULT_CS)) if args.sweep else 'C=' + str(args.C)} -> {out}")
    print(f"{'kind':<10} {'method':<45} {'probes':>6} {'s':>7} {'probes/s':>9} {'vs a':>6} {'vs b':>6} "
          f"{'|dAUC|':>7} {'iters':>6}")
    for row in rows:
        print(f"{row['kind']:<10} {row['method']:<45} {row['probes']:>6} {row['seconds']:>7.2f} "
              f"{row['probes_per_s']:>9.2f} {row['speedup_vs_a']:>6.1f} {row['speedup_vs_b']:>6.2f} "
              f"{row['max_abs_auc_diff_vs_a']:>7.4f} {row['median_iters']:>6.0f}")


if __name__ == "__main__":
    main()
