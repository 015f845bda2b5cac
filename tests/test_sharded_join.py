"""Sharded extraction pieces in one process: shard plan, row-range views, copy and virtual joins."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from extract.backbones import create_backbone
from extract.cli.shard import main, register
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.datasets.base import Adapter
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore
from extract.sharded import (
    RankInfo,
    ShardOptions,
    _raise_failures,
    _run_rank,
    default_rank_workers,
    extract_sharded,
    join_shards,
    rank_device,
    row_range,
    shard_bounds,
    shard_path,
)

N_IMAGES, BATCH, WORLD = 30, 4, 3  # 8 batches over 3 ranks: 2, 3, 3 batches


class PngAdapter(Adapter):
    """PNG files of varied sizes (no in-memory fast path)."""

    name = "pngs"

    def _build_metadata(self) -> pd.DataFrame:
        n = len(list(self.root.glob("*.png")))
        return pd.DataFrame({"image_id": [f"p{i:02d}" for i in range(n)], "path": [f"{i}.png" for i in range(n)],
                             "split": ["train", "val", "test"] * (n // 3), "odd": (np.arange(n) % 2).astype(np.int8)})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (20 + i % 3, 22 + i % 4, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("avatars") / "avatars.h5"
    return render_dataset(out, spec=RenderSpec(n=N_IMAGES, size=32, seed=1, signal_sample=4), workers=1, progress=False)


def backbone():
    return create_backbone("smallcnn.scratch", image_size=16)


def extract(adapter, out):
    return extract_features(adapter, backbone(), out, options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))


def write_shards(adapter, out, world=WORLD):
    """What each rank of a torchrun job writes, done here one rank after the other."""
    statuses = []
    for rank, (start, stop) in enumerate(shard_bounds(len(adapter), world_size=world, batch_size=BATCH)):
        path = shard_path(out, rank, world)
        if stop > start:
            extract(row_range(adapter, start, stop), path)
        statuses.append({"rank": rank, "start": start, "stop": stop, "path": str(path), "device": "cpu", "host": "h"})
    return statuses


def test_shard_bounds_follow_batches():
    assert shard_bounds(30, world_size=3, batch_size=4) == [(0, 8), (8, 20), (20, 30)]
    assert shard_bounds(5, world_size=4, batch_size=4) == [(0, 0), (0, 4), (4, 4), (4, 5)]
    for n in (1, 7, 64, 101):
        for world in (1, 2, 3, 5):
            for batch in (1, 3, 8):
                bounds = shard_bounds(n, world_size=world, batch_size=batch)
                assert bounds[0][0] == 0 and bounds[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
                assert all(start % batch == 0 for start, _ in bounds)
                batches = [-(-(stop - start) // batch) for start, stop in bounds]
                assert max(batches) - min(batches) <= 1
    with pytest.raises(ValueError):
        shard_bounds(10, world_size=0, batch_size=4)


def test_shard_path_sits_next_to_the_store(tmp_path):
    assert shard_path(tmp_path / "f.h5", 1, 4) == tmp_path / "f.shard-1-of-4.h5"


def test_row_range_views_equal_the_parent_rows(pngs, cache):
    for adapter in (PngAdapter(pngs), AvatarAdapter(cache)):
        view = row_range(adapter, 5, 17)
        assert view.name == adapter.name and len(view) == 12
        assert view.metadata().equals(adapter.metadata().iloc[5:17].reset_index(drop=True))
        assert view.manifest_hash() != adapter.manifest_hash()
        assert np.array_equal(np.array(view.open_image(3)), np.array(adapter.open_image(8)))
        assert hasattr(view, "read_images") == hasattr(adapter, "read_images")
    avatars = AvatarAdapter(cache)
    view = row_range(avatars, 5, 17)
    assert np.array_equal(view.read_images([0, 11]), avatars.read_images([5, 16]))
    assert np.array_equal(view.read_images(), avatars.read_images()[5:17])
    with pytest.raises(ValueError):
        row_range(avatars, 10, 10)


@pytest.mark.parametrize("fixture", ["pngs", "cache"])
def test_copy_join_equals_a_single_process_store(fixture, request, tmp_path):
    adapter = PngAdapter(request.getfixturevalue(fixture)) if fixture == "pngs" else AvatarAdapter(request.getfixturevalue(fixture))
    reference = FeatureStore.open(extract(adapter, tmp_path / "single.h5"))
    out = tmp_path / "joined.h5"
    join_shards(adapter, backbone(), out, write_shards(adapter, out), mode="copy")
    joined = FeatureStore.open(out)
    assert joined.features.tobytes() == reference.features.tobytes()
    assert joined.metadata.equals(reference.metadata)
    assert joined.provenance["manifest_hash"] == reference.provenance["manifest_hash"]
    assert joined.provenance["extraction"]["world_size"] == WORLD
    assert not list(tmp_path.glob("joined.shard-*"))  # shards removed after the copy


def test_more_ranks_than_batches_leaves_some_shards_empty(pngs, tmp_path):
    adapter = PngAdapter(pngs)
    reference = FeatureStore.open(extract(adapter, tmp_path / "single.h5"))
    out = tmp_path / "joined.h5"
    statuses = write_shards(adapter, out, world=10)  # 8 batches, 10 ranks
    assert sum(s["stop"] == s["start"] for s in statuses) == 2
    join_shards(adapter, backbone(), out, statuses, mode="copy")
    joined = FeatureStore.open(out)
    assert joined.features.tobytes() == reference.features.tobytes()
    assert [s["file"] is None for s in joined.provenance["extraction"]["shards"]].count(True) == 2


def test_virtual_join_reads_through_the_shards(pngs, tmp_path):
    adapter = PngAdapter(pngs)
    reference = FeatureStore.open(extract(adapter, tmp_path / "single.h5"))
    folder = tmp_path / "virtual"
    out = folder / "joined.h5"
    join_shards(adapter, backbone(), out, write_shards(adapter, out), mode="virtual")
    shutil.move(folder, tmp_path / "moved")  # shards are found by relative name
    joined = FeatureStore.open(tmp_path / "moved" / "joined.h5")
    assert joined.features.tobytes() == reference.features.tobytes()
    assert joined.provenance["extraction"]["join"] == "virtual"
    (tmp_path / "moved" / "joined.shard-1-of-3.h5").unlink()
    with pytest.raises(UserError, match="NaN or infinite"):  # a missing shard is not read as zeros
        _ = FeatureStore.open(tmp_path / "moved" / "joined.h5").features


def test_join_refuses_foreign_shards(pngs, tmp_path):
    adapter = PngAdapter(pngs)
    out = tmp_path / "joined.h5"
    statuses = write_shards(adapter, out)
    other = create_backbone("smallcnn.scratch", image_size=16, seed=1)
    with pytest.raises(UserError, match="backbone_seed"):
        join_shards(adapter, other, out, statuses)
    swapped = [dict(statuses[0], path=statuses[2]["path"])] + statuses[1:]
    with pytest.raises(UserError, match="does not hold rows 0-8"):
        join_shards(adapter, backbone(), out, swapped)
    with pytest.raises(UserError, match="cannot see the shard"):
        join_shards(adapter, backbone(), out, [dict(statuses[0], path=str(tmp_path / "gone.h5"))] + statuses[1:])
    assert not out.exists()


def test_world_size_one_is_plain_extraction(pngs, tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    adapter = PngAdapter(pngs)
    reference = FeatureStore.open(extract(adapter, tmp_path / "single.h5"))
    path = extract_sharded(adapter, backbone(), tmp_path / "sharded.h5", options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))
    store = FeatureStore.open(path)
    assert store.features.tobytes() == reference.features.tobytes()
    assert store.provenance["extraction"] == reference.provenance["extraction"]  # no sharding fields
    with pytest.raises(UserError, match="join mode"):
        extract_sharded(adapter, backbone(), tmp_path / "x.h5", sharding=ShardOptions(join="merge"))


def test_cli_without_torchrun(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "cli.h5"
    args = ["--dataset", "avatars", "--root", str(cache), "--backbone", "smallcnn.scratch", "--image-size", "16",
            "--batch-size", str(BATCH), "--device", "cpu", "--out", str(out)]
    assert main(args) == 0 and FeatureStore.open(out).n_rows == N_IMAGES
    assert main([*args[:-2], "--out", str(tmp_path), "--batch-size", "0"]) == 2
    assert "batch-size" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    parsed = parser.parse_args(["extract-shard", *args, "--join", "virtual"])
    assert parsed.join == "virtual" and callable(parsed.func)


def test_rank_devices_and_workers(pngs, cache, monkeypatch):
    two = RankInfo(rank=1, world_size=2, local_rank=1, local_world_size=2)
    assert rank_device("cpu", two) == "cpu"
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_rank_workers(PngAdapter(pngs), two) == 7  # 16 cores shared by 2 ranks, one for the rank
    assert default_rank_workers(AvatarAdapter(cache), two) == 0  # in memory: no decode workers
    if torch.cuda.is_available():
        assert rank_device("auto", two) == "cuda:1" or torch.cuda.device_count() < 2
        with pytest.raises(UserError, match="every rank on one GPU"):
            rank_device("cuda:0", two)


def test_a_rank_skips_a_complete_store_and_reports_failures(pngs, tmp_path):
    adapter = PngAdapter(pngs)
    out = extract(adapter, tmp_path / "done.h5")
    info = RankInfo(rank=1, world_size=3, local_rank=1, local_world_size=3)
    options = ExtractOptions(device="cpu", batch_size=BATCH, num_workers=0, resume=True, overwrite=False, progress=False)
    status, failure = _run_rank(adapter, backbone(), out, info, options=options)
    assert failure is None and status["skipped"] and (status["start"], status["stop"]) == (8, 20)
    assert not shard_path(out, 1, 3).exists()
    other = create_backbone("smallcnn.scratch", image_size=16, seed=2)
    status, failure = _run_rank(adapter, other, out, info, options=options)
    assert isinstance(failure, UserError) and "pass `overwrite=True`" in status["error"]  # never silently replaced
    with pytest.raises(UserError, match="rank 2 of 3 failed"):
        _raise_failures([{"rank": 0, "error": None}, {"rank": 1, "error": None}, {"rank": 2, "error": "bad image."}],
                        info, None)
    with pytest.raises(KeyError):  # a rank's own exception is raised as is
        _raise_failures([{"rank": 1, "error": "x"}], info, KeyError("x"))
