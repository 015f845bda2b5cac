"""Fault injection: ``biastransfer extract`` SIGKILLed at seeded random points, then resumed.

The run is killed three times at random points (once a few milliseconds after its partial
file appears, i.e. while the store is being set up or its first rows written, then twice
once a random number of rows is on disk, watched through plain h5py), each time resumed by
rerunning the same command. After every kill no file exists under the final name and
neither path opens as a complete store; the finished store equals an uninterrupted run bit
for bit. (``test_extraction_resume.py`` covers one kill at a fixed point in-process.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore, identity, partial_path

REPO = Path(__file__).resolve().parents[1]
BATCH = 4  # 150 batches of the 600-avatar cache: many points to be killed at
SEED = 20240917
POLL_SECONDS = 0.003


def extract_command(cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "analyze.cli", "extract", "--dataset", "avatars", "--root", str(cache),
            "--backbone", "smallcnn.scratch", "--image-size", "32", "--batch-size", str(BATCH), "--device", "cpu",
            "--workers", "0", "--out", str(out)]


def child_env() -> dict:
    # One thread, as the in-process reference: the same arithmetic, bit for bit.
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BIASTRANSFER_WORK": "/nonexistent-work-dir"}


def rows_on_disk(partial: Path) -> int | None:
    """``rows_written`` of a partial store being written by another process (None if unreadable)."""
    try:
        with h5py.File(partial, "r", locking=False) as h5:  # the writer holds the lock
            return int(h5.attrs["rows_written"])
    except (OSError, KeyError, RuntimeError, ValueError):
        return None  # not created yet, or caught between two flushes


def run_until(command: list[str], partial: Path, *, rows: int | None = None, delay: float | None = None,
              timeout: float = 240.0) -> subprocess.Popen:
    """Start ``command``; SIGKILL it once ``rows`` rows are on disk or ``delay`` s after ``partial`` appears."""
    proc = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    began, appeared = time.monotonic(), None
    while proc.poll() is None and time.monotonic() - began < timeout:
        if delay is not None and appeared is None and partial.exists():
            appeared = time.monotonic()
        due = (appeared is not None and time.monotonic() - appeared >= delay) if delay is not None \
            else (rows_on_disk(partial) or 0) >= rows
        if due:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(POLL_SECONDS)
    else:
        if proc.poll() is None:
            proc.kill()
            pytest.fail(f"extraction did not reach the kill point within {timeout} s")
    proc.wait()
    proc.stderr_text = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return proc


def assert_never_complete(out: Path) -> None:
    """Neither the final nor the partial path opens as a complete store."""
    assert not out.exists(), "a killed run left a file under the final name"
    with pytest.raises(UserError, match="interrupted|does not exist"):
        FeatureStore.open(out)
    if partial_path(out).exists():
        with pytest.raises(UserError, match="incomplete|not a readable|lacks the provenance|not a biastransfer"):
            FeatureStore.open(partial_path(out))


@pytest.fixture(scope="module")
def reference(avatar_cache, tmp_path_factory):
    """The uninterrupted run, in-process with one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("reference") / "ref.h5"
        extract_features(AvatarAdapter(avatar_cache), create_backbone("smallcnn.scratch", image_size=32), out, options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))
    finally:
        torch.set_num_threads(before)
    return FeatureStore.open(out)


def test_killed_at_random_points_then_resumed_equals_uninterrupted(avatar_cache, reference, tmp_path):
    out = tmp_path / "stores" / "killed.h5"
    partial, n = partial_path(out), reference.n_rows
    rng = np.random.default_rng(SEED)
    thresholds = np.sort(rng.choice(np.arange(n // 10, n * 3 // 4, BATCH), size=2, replace=False))
    plan = [{"delay": float(rng.uniform(0.0, 0.05))}] + [{"rows": int(k)} for k in thresholds]
    command = extract_command(avatar_cache, out)
    killed_mid_run = 0
    for point in plan:
        proc = run_until(command, partial, **point)
        if proc.returncode == 0:  # the run finished before the kill landed (a very fast machine)
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr_text[-2000:]
        assert_never_complete(out)
        written = rows_on_disk(partial)
        killed_mid_run += written is not None and 0 < written < n
        if "rows" in point and written is not None:
            assert written >= point["rows"]  # the counter never runs ahead of, or behind, the kill point
    assert killed_mid_run >= 2, "the kills did not land while rows were being written"
    final = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=240)
    assert final.returncode == 0, final.stderr[-2000:]
    assert not partial.exists()
    store = FeatureStore.open(out)
    np.testing.assert_array_equal(store.features.view(np.uint16), reference.features.view(np.uint16))
    assert store.metadata.equals(reference.metadata)
    assert identity(store.provenance) == identity(reference.provenance)
    store.check_same_rows(reference)
