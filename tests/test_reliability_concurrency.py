"""Concurrent use: two processes reading one store, and two processes writing one result cell.

Each child announces that it has imported everything (a ready file) and waits for a start
file, which the test creates once both are ready, so that their work overlaps.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from analyze.results.records import RESULT_SCHEMA, cell_id, read_record
from extract.errors import UserError

REPO = Path(__file__).resolve().parents[1]
WRITES_PER_PROCESS = 150

READER = """
import hashlib, os, sys, time
from pathlib import Path
from extract.store.reader import FeatureStore
start = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not start.exists():
    time.sleep(0.002)
digests = []
for _ in range(3):  # open, read and hash repeatedly while the other reader does the same
    store = FeatureStore.open(sys.argv[1])
    h = hashlib.sha256(store.features.tobytes())
    h.update(store.metadata.to_csv(index=False).encode())
    digests.append(h.hexdigest())
print(",".join(digests))
"""

WRITER = """
import json, sys, time
from pathlib import Path
from analyze.results.records import RESULT_SCHEMA, write_record
folder, writer, cell, count = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
start = Path(sys.argv[5])
Path(sys.argv[6]).touch()
while not start.exists():
    time.sleep(0.002)
began = time.time()
for i in range(count):
    record = {"schema": RESULT_SCHEMA, "cell_id": cell, "runner": "probe", "backbone": "smallcnn.scratch",
              "spec": {"kind": "natural", "seed": 0}, "metrics": {"auc": 0.5, "writer": writer, "i": i},
              "padding": writer * 50_000}  # a large record: a torn write would show
    write_record(folder, record)
print(began, time.time())
"""


def _spawn(script: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_together(tmp_path: Path, script: str, args_per_child: list[tuple]) -> list[subprocess.Popen]:
    """Spawn the children, wait until each has touched its ready file, then create the start file."""
    start, ready = tmp_path / "go", [tmp_path / f"ready{i}" for i in range(len(args_per_child))]
    procs = [_spawn(script, *args, start, flag) for args, flag in zip(args_per_child, ready)]
    deadline = time.monotonic() + 180
    while not all(f.exists() for f in ready):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a child failed to start"
        time.sleep(0.005)
    start.touch()
    return procs


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        outs.append(out.strip())
    return outs


def test_two_readers_of_one_store_see_the_same_data(avatar_store, tmp_path):
    procs = _start_together(tmp_path, READER, [(avatar_store.path,)] * 2)
    first, second = _finish(procs)
    h = hashlib.sha256(avatar_store.features.tobytes())
    h.update(avatar_store.metadata.to_csv(index=False).encode())
    assert first == second == ",".join([h.hexdigest()] * 3)


def test_one_cell_written_by_two_processes_is_one_valid_record(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    cell = cell_id(runner="probe", backbone="smallcnn.scratch", spec={"kind": "natural", "seed": 0})
    procs = _start_together(tmp_path, WRITER, [(folder, name, cell, WRITES_PER_PROCESS) for name in ("A", "B")])
    reads = failures = 0
    path = folder / f"{cell}.json"
    while any(p.poll() is None for p in procs):  # a reader meanwhile never sees a partial record
        if path.exists():
            try:
                record = read_record(path)
                assert record["padding"] == record["metrics"]["writer"] * 50_000
                reads += 1
            except UserError:
                failures += 1
        time.sleep(0.001)
    spans = [tuple(map(float, out.split())) for out in _finish(procs)]
    assert max(s[0] for s in spans) < min(s[1] for s in spans), f"the two writers did not overlap: {spans}"
    assert failures == 0 and reads > 0
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temp files left behind
    record = read_record(path)
    assert record["schema"] == RESULT_SCHEMA and record["cell_id"] == cell
    assert record["metrics"]["writer"] in ("A", "B") and record["metrics"]["i"] == WRITES_PER_PROCESS - 1
    assert json.loads(path.read_text()) == record
