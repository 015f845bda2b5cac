"""Sweep worker processes die with their parent: SIGKILL a 2-worker sweep, its workers are gone in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GRID = """
[grid]
name = "long"
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


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_exit_when_the_sweep_is_killed(avatar_store, tmp_path):
    grid = tmp_path / "long.toml"
    grid.write_text(GRID.format(store=avatar_store.path))
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; from analyze.cli import main; sys.exit(main(sys.argv[1:]))",
         "sweep", str(grid), "--out", str(out), "--n-jobs", "2", "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None:  # both workers have written records
            if len(list(out.glob("*.json"))) >= 2 and len(_children(parent.pid)) >= 2:
                break
            time.sleep(0.2)
        assert parent.poll() is None, "the sweep ended before it could be killed; make the grid longer"
        workers = _children(parent.pid)
        assert len(workers) >= 2  # two loky workers (and loky's resource tracker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(map(_alive, workers)):
            time.sleep(0.1)
        survivors = [pid for pid in workers if _alive(pid)]
        assert not survivors, f"processes {survivors} outlived the killed sweep"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _manifest_tree(root: Path) -> Path:
    """160 random 16 px images with a target ``y`` and a sensitive ``s`` (40 rows per cell)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    lines = ["path,split,y,s"]
    for i in range(160):
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(root / "imgs" / f"{i}.png")
        split = "train" if i < 100 else "val" if i < 130 else "test"
        lines.append(f"imgs/{i}.png,{split},{i % 2},{(i // 2) % 2}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


FINETUNE_GRID = """
[grid]
name = "ftm"
targets = ["y"]
sensitive = "s"
runners = ["finetune"]

[data]
dataset = "manifest"
root = "{root}"

[[backbones]]
name = "scratch"
base_kind = "scratch"
base = "smallcnn.scratch"

[[subsets]]
kind = "correlation"
levels = [0.0, 1.0]
n = [40]
seeds = [0]

[finetune]
lrs = [0.05]
weight_decays = [0.0001]
epochs = 1
batch_size = 16
image_size = 16
conditions_per_task = 1
device = "cpu"
"""


def test_two_workers_finetune_a_manifest_dataset(tmp_path, capsys):
    """Each worker decodes its images itself: no DataLoader processes inside a loky worker."""
    import pandas as pd

    from analyze.cli import main

    grid = tmp_path / "ftm.toml"
    grid.write_text(FINETUNE_GRID.format(root=_manifest_tree(tmp_path / "data")))
    out = tmp_path / "results"
    assert main(["sweep", str(grid), "--n-jobs", "2", "--out", str(out), "--no-progress"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert main(["collect", str(out), "--out", str(tmp_path / "table.csv")]) == 0
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 2 and (table["runner"] == "finetune").all() and table["auc"].between(0, 1).all()
