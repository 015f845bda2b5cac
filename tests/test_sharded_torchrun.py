"""Sharded extraction under torchrun (2 gloo processes on CPU) equals a single-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore
from extract.sharded import shard_path

REPO = Path(__file__).resolve().parents[1]
N_IMAGES, BATCH = 60, 7  # 9 batches: rank 0 gets 4 (rows 0-28), rank 1 gets 5 (rows 28-60, the last one short)
SHARDING_KEYS = {"world_size", "join", "shards"}


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "extract.cli.shard", *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("avatars") / "avatars.h5"
    return render_dataset(out, spec=RenderSpec(n=N_IMAGES, size=32, seed=0, signal_sample=4), workers=1, progress=False)


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks run with OMP_NUM_THREADS=1: same arithmetic
    try:
        out = tmp_path_factory.mktemp("single") / "single.h5"
        extract_features(AvatarAdapter(cache), create_backbone("smallcnn.scratch", image_size=32), out, options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))
    finally:
        torch.set_num_threads(threads)
    return FeatureStore.open(out)


def test_two_gloo_ranks_give_the_single_process_store(cache, reference, tmp_path):
    out = tmp_path / "sharded.h5"
    run = torchrun("--dataset", "avatars", "--root", str(cache), "--backbone", "smallcnn.scratch",
                   "--image-size", "32", "--batch-size", str(BATCH), "--device", "cpu", "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    joined = FeatureStore.open(out)

    assert joined.features.dtype == np.float16
    assert joined.features.tobytes() == reference.features.tobytes()  # bitwise
    assert joined.metadata.equals(reference.metadata)  # ids, splits, attributes, in order
    joined.check_same_rows(reference)

    extraction = dict(joined.provenance["extraction"])
    assert extraction.pop("world_size") == 2 and extraction.pop("join") == "copy"
    shards = extraction.pop("shards")
    assert [(s["rank"], s["start"], s["stop"], s["device"]) for s in shards] == [(0, 0, 28, "cpu"), (1, 28, 60, "cpu")]
    assert extraction == reference.provenance["extraction"]
    same = {k: v for k, v in joined.provenance.items() if k not in {"created_utc", "extraction"}}
    assert same == {k: v for k, v in reference.provenance.items() if k not in {"created_utc", "extraction"}}
    # A copy join deletes the shards; nothing partial is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharded.h5"]

    # Again, overwriting with a virtual join: /features reads through the kept shard files.
    run = torchrun("--dataset", "avatars", "--root", str(cache), "--backbone", "smallcnn.scratch",
                   "--image-size", "32", "--batch-size", str(BATCH), "--device", "cpu", "--out", str(out),
                   "--overwrite", "--join", "virtual")
    assert run.returncode == 0, run.stderr[-3000:]
    with h5py.File(out, "r") as h5:
        assert h5["features"].is_virtual
    virtual = FeatureStore.open(out)
    assert virtual.features.tobytes() == reference.features.tobytes()
    assert virtual.provenance["extraction"]["join"] == "virtual"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sharded.h5", "sharded.shard-0-of-2.h5", "sharded.shard-1-of-2.h5"]


def test_failed_rank_stops_every_rank_and_keeps_finished_shards(tmp_path):
    root = tmp_path / "folder"
    for i in range(12):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 20, 0, 0)).save(root / f"class{i % 2}" / f"{i:02d}.png")
    # Rows are sorted by class folder, then name: class1/11.png is the last row, in rank 1's shard.
    (root / "class1" / "11.png").write_bytes(b"not a png")
    out = tmp_path / "store.h5"
    run = torchrun("--dataset", "folder", "--root", str(root), "--backbone", "smallcnn.scratch", "--image-size", "16",
                   "--batch-size", "3", "--device", "cpu", "--workers", "0", "--out", str(out))
    assert run.returncode != 0
    assert "rank 1 of 2 failed" in run.stderr and "11.png" in run.stderr  # rank 0 names the failed rank
    assert not out.exists()
    with h5py.File(shard_path(out, 0, 2), "r") as h5:  # rows 0-6 are done and resumable
        assert bool(h5.attrs["complete"]) and h5["features"].shape == (6, 128)
