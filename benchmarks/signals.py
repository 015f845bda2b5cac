"""Benchmark: what a signal to a multi-worker ``biastransfer sweep`` leaves behind.

Starts ``biastransfer sweep GRID --n-jobs 2`` (or ``--local-cluster 2``) on a small avatar
store ``--tries`` times, sends it ``--signal`` (TERM, INT or KILL, to the sweep process only,
as ``kill`` does) at a seeded random moment between ``--at LO,HI`` seconds after the sweep
has spawned its processes (workers still importing until about 6 s later on a busy 2-core
machine, fitting and writing records after that), and measures how long until the sweep and
every process it started are gone (polled every 20 ms for 5 s) and counts, 1 s and 5 s after
the signal:

* processes that the sweep started (its descendants just before the signal: loky or Dask
  workers, loky's and multiprocessing's resource trackers) and that still run;
* ``/dev/shm`` entries named after the sweep's or a worker's pid (``sem.loky-<pid>-*``
  semaphores, ``joblib_memmapping_folder_<pid>_*`` folders);
* temporary files (``.*.tmp``) in the results folder.

Survivors are killed and the sweep's /dev/shm entries removed after each try, so tries do
not add up. Prints one line per try and a summary.

Example
-------
python benchmarks/signals.py --tries 9 --at 2,6
python benchmarks/signals.py --tries 5 --backend dask --signal INT
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the toolkit, not benchmarks/extract.py

GRID = """
[grid]
name = "signals"
targets = ["hat", "long_hair"]
sensitive = "dark_skin"
runners = ["probe"]
chunk_size = 2

[[backbones]]
name = "a"
base_kind = "biased"
store = "{store}"

[[subsets]]
kind = "correlation"
levels = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
n = [32]
seeds = 20

[probe]
Cs = [0.01, 0.1, 1.0, 10.0]
"""


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kind(pid: int) -> str:
    """A short name for a process of the sweep: worker, tracker (loky's or multiprocessing's), other."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "popen_loky" in command:
        return "loky-worker"
    if "loky.backend.resource_tracker" in command:
        return "loky-tracker"
    if "multiprocessing.resource_tracker" in command:
        return "mp-tracker"
    if "multiprocessing.spawn" in command or "forkserver" in command:
        return "mp-process"
    return "other"


def shm_entries(pids) -> list[Path]:
    """/dev/shm entries named after one of ``pids`` (loky semaphores, joblib memmapping folders)."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return []
    keys = {str(p) for p in pids}
    found = []
    for entry in shm.iterdir():
        name = entry.name
        if name.startswith("sem.loky-"):
            owner = name[len("sem.loky-"):].split("-")[0]
        elif name.startswith("joblib_memmapping_folder_"):
            owner = name[len("joblib_memmapping_folder_"):].split("_")[0]
        else:
            continue
        if owner in keys:
            found.append(entry)
    return found


def build_store(folder: Path) -> Path:
    from extract.backbones import create_backbone
    from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
    from extract.extraction import ExtractOptions, extract_features

    store = folder / "store.h5"
    if not store.exists():
        cache = render_dataset(folder / "avatars-600-32px-seed0.h5", spec=RenderSpec(n=600, size=32, seed=0, signal_sample=4),
                               workers=1, progress=False)
        extract_features(AvatarAdapter(cache), create_backbone("smallcnn.scratch", image_size=32), store,
                         options=ExtractOptions(batch_size=128, device="cpu", progress=False))
    return store


def one_try(grid: Path, out: Path, *, backend: str, signum: int, delay: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = ["--n-jobs", "2"] if backend == "loky" else ["--local-cluster", "2"]
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; from analyze.cli import main; sys.exit(main(sys.argv[1:]))",
         "sweep", str(grid), "--out", str(out), *workers, "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and parent.poll() is None and len(descendants(parent.pid)) < 3:
        time.sleep(0.05)  # two workers and a tracker (or nanny) are up
    time.sleep(delay)
    started = set(descendants(parent.pid))
    ended_before = parent.poll() is not None
    os.kill(parent.pid, signum)
    began = time.monotonic()
    row = {"delay": delay, "ended_before": ended_before, "processes": len(started), "all_gone_s": float("nan")}
    for at in (1.0, 5.0):
        while time.monotonic() < began + at:
            if parent.poll() is not None and not any(map(alive, started)) and row["all_gone_s"] != row["all_gone_s"]:
                row["all_gone_s"] = time.monotonic() - began
            time.sleep(0.02)
        started |= {p for p in descendants(parent.pid) if parent.poll() is None}
        row[f"alive_{at:.0f}s"] = sum(map(alive, started)) + (parent.poll() is None)
        if at == 1.0:
            row["left_1s"] = ",".join(sorted(kind(p) for p in started if alive(p))
                                      + (["sweep"] if parent.poll() is None else [])) or "-"
        row[f"shm_{at:.0f}s"] = len(shm_entries({parent.pid, *started}))
        row[f"tmp_{at:.0f}s"] = len(list(out.glob(".*.tmp")))
    row["exit"] = parent.wait(timeout=60) if parent.poll() is None else parent.returncode
    row["records"] = len(list(out.glob("*.json")))
    for pid in started:  # leave nothing for the next try
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    for entry in shm_entries({parent.pid, *started}):
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=9)
    parser.add_argument("--at", default="2,6", help="LO,HI: seconds after the worker processes are spawned")
    parser.add_argument("--signal", choices=["TERM", "INT", "KILL"], default="TERM")
    parser.add_argument("--backend", choices=["loky", "dask"], default="loky")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the store (default: a temporary folder)")
    args = parser.parse_args(argv)
    lo, hi = (float(v) for v in args.at.split(","))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="biastransfer-signals-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        grid = work / "signals.toml"
        grid.write_text(GRID.format(store=build_store(work)))
        rows = []
        for i in range(args.tries):
            out = Path(tmp) / f"results-{i}"
            row = one_try(grid, out, backend=args.backend, signum=getattr(signal, f"SIG{args.signal}"),
                          delay=rng.uniform(lo, hi))
            rows.append(row)
            print(f"try {i}: " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in row.items()), flush=True)
    leaked = [r for r in rows if r["alive_1s"] or r["shm_1s"] or r["tmp_1s"]]
    leaked5 = [r for r in rows if r["alive_5s"] or r["shm_5s"] or r["tmp_5s"]]
    gone = sorted(r["all_gone_s"] for r in rows if r["all_gone_s"] == r["all_gone_s"])
    if gone:
        print(f"every process gone after {gone[0]:.2f}-{gone[-1]:.2f} s (median {gone[len(gone) // 2]:.2f} s) in "
              f"{len(gone)} of {len(rows)} tries")
    print(f"{args.backend} SIG{args.signal}: {len(leaked)} of {len(rows)} tries left something 1 s after the signal "
          f"(max {max(r['alive_1s'] for r in rows)} processes, {max(r['shm_1s'] for r in rows)} /dev/shm entries); "
          f"{len(leaked5)} after 5 s (max {max(r['alive_5s'] for r in rows)} processes, "
          f"{max(r['shm_5s'] for r in rows)} /dev/shm entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
