"""A two-worker sweep maps one store once (no copy per worker); a sweep that cannot fit is refused up front."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

import analyze.sweep.execute as execute
from analyze.sweep.run import sweep
from extract.errors import UserError
from extract.store.writer import StoreWriter, make_provenance

ROWS, WIDTH = 40_000, 2048  # 164 MB of float16: larger than any batch or chunk of test rows
GRID = """
[grid]
name = "shared"
targets = ["y"]
sensitive = "s"
runners = ["probe"]
chunk_size = 2

[[backbones]]
name = "one"
base_kind = "scratch"
store = "{store}"

[[subsets]]
kind = "correlation"
levels = [0.0, 1.0]
n = [16]
seeds = [0, 1]

[probe]
Cs = [1.0]
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, ROWS), rng.integers(0, 2, ROWS)
    split = np.where(np.arange(ROWS) < ROWS - 400, "train", "test")
    meta = pd.DataFrame({"image_id": [f"{i}.jpg" for i in range(ROWS)], "split": split,
                         "y": y.astype(np.int8), "s": s.astype(np.int8)})
    config = {"name": "synthetic.scratch", "feature_dim": WIDTH, "seed": 0, "weights_sha256": None,
              "preprocess": {"synthetic": True}}
    provenance = make_provenance(dataset_name="synthetic", manifest_hash="m", n_rows=ROWS, backbone_config=config,
                                 extraction={"precision": "float32"})
    path = tmp_path_factory.mktemp("store") / "synthetic.h5"
    with StoreWriter.start(path, metadata=meta, attributes=["y", "s"], provenance=provenance) as writer:
        for first in range(0, ROWS, 8192):
            block = rng.random((min(8192, ROWS - first), WIDTH), dtype=np.float32)
            block[:, 0] += y[first:first + len(block)]
            writer.write(first, block.astype(np.float16))
        return writer.finalize()


@pytest.fixture
def grid_file(store, tmp_path):
    path = tmp_path / "shared.toml"
    path.write_text(GRID.format(store=store))
    return path


def _regions(pid):
    """(path or '', resident bytes, anonymous bytes) of each mapping of process ``pid``."""
    regions, current = [], None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$", line)
        if head:
            current = [head.group(1).strip(), 0, 0]
            regions.append(current)
        elif line.startswith("Rss:"):
            current[1] = int(line.split()[1]) * 1024
        elif line.startswith("Anonymous:"):
            current[2] = int(line.split()[1]) * 1024
    return regions


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc smaps")
def test_two_workers_share_one_mapping_of_the_store(grid_file, store, tmp_path):
    summary = sweep(grid_file, out=tmp_path / "out", n_jobs=2, progress=False)
    assert list(summary["status"]) == ["written"] * 4  # 2 levels x 2 seeds, in 2 units
    store_bytes = ROWS * WIDTH * 2
    mapping, largest_private = {}, 0
    for child in psutil.Process().children(recursive=True):  # the loky workers outlive the sweep
        try:
            regions = _regions(child.pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        mapped = sum(rss for path, rss, _ in regions if path == str(Path(store).resolve()))
        if mapped:
            mapping[child.pid] = mapped
            # a copy of the matrix would be one anonymous mapping of its size (malloc maps
            # blocks this large on their own, never in the [heap] of small objects)
            largest_private = max([largest_private] + [anon for path, _, anon in regions if path != "[heap]"])
    assert len(mapping) == 2, "both workers map the store file (else it was copied, or one worker ran both units)"
    assert max(mapping.values()) >= 0.9 * store_bytes  # the finite check read every row through the map
    assert largest_private < 0.9 * store_bytes  # and no worker holds a private copy (a copy is resident whole)


def test_a_sweep_that_cannot_fit_is_refused_before_it_runs(grid_file, store, tmp_path, monkeypatch):
    needed, in_stores = execute.memory_needed(
        [execute_unit for execute_unit in _units(grid_file)], workers=2)
    assert in_stores >= ROWS * WIDTH * 2 and needed == in_stores + execute.DRIVER_BYTES + 2 * execute.PROBE_WORKER_BYTES
    monkeypatch.setattr(execute, "available_memory", lambda: needed - 1)
    with pytest.raises(UserError, match=r"needs about .* GB of memory .* shared by all workers.* lower `n_jobs`"):
        sweep(grid_file, out=tmp_path / "out", n_jobs=2, progress=False)
    assert not (tmp_path / "out").exists()  # refused before writing anything
    monkeypatch.setattr(execute, "available_memory", lambda: needed)
    assert list(sweep(grid_file, out=tmp_path / "out", n_jobs=1, progress=False)["status"]) == ["written"] * 4


def _units(grid_file):
    from analyze.sweep.grid import load_grid
    from analyze.sweep.units import plan_sweep

    return plan_sweep(load_grid(grid_file)).units


def test_workers_are_not_replaced_for_the_pages_of_mapped_stores():
    """Loky's leak check counts mapped store pages as growth; sweep workers turn it off."""
    from joblib import Parallel, delayed, parallel_config

    def leak_check_on():
        from joblib.externals.loky import process_executor

        return process_executor._USE_PSUTIL

    with parallel_config(backend="loky", initializer=execute.setup_worker):
        assert Parallel(n_jobs=2)(delayed(leak_check_on)() for _ in range(2)) == [False, False]
