"""Sweeps on a Dask cluster (dask.distributed LocalCluster, 2 single-thread worker processes)
write the same collected table as a run in this process."""

import pandas as pd
import pytest
from dask.distributed import LocalCluster

from analyze.results.collect import collect
from analyze.sweep.grid import build_grid
from analyze.sweep.run import sweep

CELLS = 2 * 3 * 2  # targets x levels x seeds


def _grid(store_path):
    return build_grid({
        "grid": {"name": "dask", "targets": ["hat", "long_hair"], "sensitive": "dark_skin", "chunk_size": 3},
        "backbones": [{"name": "only", "base_kind": "control", "store": str(store_path)}],
        "subsets": [{"kind": "correlation", "levels": [0.0, 0.5, 1.0], "n": [40], "seeds": [0, 1]}],
        "probe": {"Cs": [0.1, 1.0]},
    })


@pytest.fixture(scope="module")
def local_table(avatar_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("local")
    sweep(_grid(avatar_store.path), out=folder, progress=False)
    return collect(folder).drop(columns="created")


def test_scheduler_address_gives_the_same_table(avatar_store, local_table, tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        summary = sweep(_grid(avatar_store.path), out=tmp_path, scheduler=cluster.scheduler_address, progress=False)
        assert list(summary["status"]) == ["written"] * CELLS
        workers = cluster.scheduler_info["workers"].values()
        assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers)
    table = collect(tmp_path).drop(columns="created")
    assert len(table) == CELLS
    pd.testing.assert_frame_equal(table, local_table)


def test_local_cluster_option_resumes(avatar_store, local_table, tmp_path):
    sweep(_grid(avatar_store.path), out=tmp_path, progress=False)
    for path in sorted(tmp_path.glob("*.json"))[:4]:
        path.unlink()
    summary = sweep(_grid(avatar_store.path), out=tmp_path, local_cluster=2, progress=False)
    assert (summary["status"] == "written").sum() >= 4
    pd.testing.assert_frame_equal(collect(tmp_path).drop(columns="created"), local_table)
