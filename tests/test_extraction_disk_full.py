"""A full disk stops ``extract`` with one sentence (no HDF5 traceback, no crash at exit) and leaves a
partial store that the same command resumes to the uninterrupted result."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from analyze.cli import main
from extract.store.reader import FeatureStore

REPO = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"\d+%\||it/s|img/s")

# The child fails every row write from the third batch on with ENOSPC, as a full disk does.
CHILD = textwrap.dedent("""
    import errno, os, sys
    real, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    os.pwrite = pwrite
    from analyze.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _argv(cache, out):
    return ["extract", "--dataset", "avatars", "--root", str(cache), "--backbone", "smallcnn.scratch",
            "--image-size", "32", "--batch-size", "128", "--device", "cpu", "--out", str(out)]


def test_full_disk_stops_extract_cleanly_and_the_rerun_resumes(avatar_cache, avatar_store, tmp_path):
    out = tmp_path / "store.h5"
    child = subprocess.run([sys.executable, "-c", CHILD, *_argv(avatar_cache, out)], cwd=REPO, capture_output=True,
                           text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [seg for seg in re.split(r"[\r\n]", child.stderr) if seg.strip() and not PROGRESS.search(seg)]
    assert child.returncode == 2, child.stderr[-3000:]  # not 139 (a segmentation fault at exit)
    assert len(lines) == 1, child.stderr[-3000:]
    assert re.fullmatch(r"biastransfer extract: error: cannot write rows 256\.\. of the feature store \S+store\.h5\.partial: "
                        r"no space left on device; free some space or choose another --out, then rerun the same "
                        r"command to resume from row 256\.", lines[0]), lines[0]
    assert not out.exists() and (tmp_path / "store.h5.partial").exists()
    assert main(_argv(avatar_cache, out)) == 0  # space freed: the same command resumes
    resumed = FeatureStore.open(out)
    np.testing.assert_array_equal(resumed.features, avatar_store.features)  # bit for bit
    assert (resumed.metadata == avatar_store.metadata).all().all()


def test_too_little_free_space_is_refused_before_any_work(avatar_cache, tmp_path, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4096))
    out = tmp_path / "store.h5"
    assert main(_argv(avatar_cache, out)) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(r"the feature store \S+store\.h5 needs about 187\.5 kB more but \S+ has 4\.0 kB free; free some "
                     r"space or choose another --out", err), err
    assert not list(tmp_path.iterdir())


# A file size limit below the store's size makes HDF5's own metadata writes fail, as a disk
# that fills up while the store is created does; before the fix this ended in a segfault.
LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (120000, 120000))
    from analyze.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_FSIZE and SIGXFSZ")
def test_a_store_that_cannot_be_created_is_one_sentence(avatar_cache, tmp_path):
    out = tmp_path / "store.h5"
    child = subprocess.run([sys.executable, "-c", LIMITED, *_argv(avatar_cache, out)], cwd=REPO, capture_output=True,
                           text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [seg for seg in re.split(r"[\r\n]", child.stderr) if seg.strip() and not PROGRESS.search(seg)]
    assert child.returncode == 2 and len(lines) == 1, child.stderr[-3000:]
    assert re.fullmatch(r"biastransfer extract: error: cannot create the feature store \S+store\.h5\.partial "
                        r"\(.*File too large.*\); free some space or choose another --out, then run the command "
                        r"again\.", lines[0]), lines[0]
    assert not list(tmp_path.iterdir())
