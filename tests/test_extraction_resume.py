"""Extraction: resume after an interruption (exception or SIGKILL) is bitwise identical."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from extract.backbones import create_backbone
from extract.datasets.base import Adapter
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore, StoreWriter, partial_path

N_IMAGES, BATCH = 37, 8  # five batches, the last one short
REPO = Path(__file__).resolve().parents[1]


class PngAdapter(Adapter):
    """PNG files of varied sizes under ``root`` (written by :func:`write_pngs`)."""

    name = "pngs"

    def _build_metadata(self) -> pd.DataFrame:
        n = len(list(self.root.glob("*.png")))
        return pd.DataFrame({"image_id": [f"p{i:03d}" for i in range(n)], "path": [f"{i}.png" for i in range(n)],
                             "split": ["train", "test"] * (n // 2) + ["val"] * (n % 2),
                             "stripe": (np.arange(n) % 3 == 0).astype(np.int8)})


def write_pngs(root: Path, n: int = N_IMAGES, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        height, width = 36 + i % 5, 40 + i % 7  # resize + crop are exercised
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


# The killed run happens in a subprocess with one thread; same arithmetic here.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_pngs(tmp_path_factory.mktemp("pngs"))


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    extract_features(PngAdapter(images), create_backbone("smallcnn.scratch", image_size=32), out, options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))
    return FeatureStore.open(out).features


def _extract(images, out, backbone="smallcnn.scratch", **options):
    options = {"batch_size": BATCH, "device": "cpu", "num_workers": 0, "progress": False, **options}
    return extract_features(PngAdapter(images), create_backbone(backbone, image_size=32), out,
                            options=ExtractOptions(**options))


def test_interrupted_then_resumed_equals_uninterrupted(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "f.h5"
    original, calls = StoreWriter.write, []

    def failing_write(self, start, features):
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does mid-run
        calls.append(start)
        original(self, start, features)

    monkeypatch.setattr(StoreWriter, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        _extract(images, out)
    assert not out.exists()
    with pytest.raises(UserError, match="resume"):
        FeatureStore.open(out)
    with h5py.File(partial_path(out), "r") as h5:
        assert int(h5.attrs["rows_written"]) == 2 * BATCH and not h5.attrs["complete"]
    monkeypatch.setattr(StoreWriter, "write", lambda self, start, f: (calls.append(start), original(self, start, f)))
    _extract(images, out)
    assert calls == [0, 8, 16, 24, 32]  # the resumed run only computed the missing rows
    store = FeatureStore.open(out)
    np.testing.assert_array_equal(store.features.view(np.uint16), reference.view(np.uint16))
    assert not partial_path(out).exists()


KILLED_RUN = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
from test_extraction_resume import PngAdapter
import extract.store.reader as store
from extract.backbones import create_backbone
from extract.extraction import ExtractOptions, extract_features

torch.set_num_threads(1)
original, calls = store.StoreWriter.write, []

def write_then_die(self, start, features):
    calls.append(start)
    if len(calls) == 3:  # rows reach the file, the process dies before the counter moves
        self._features[start:start + len(features)] = features
        self._h5.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, start, features)

store.StoreWriter.write = write_then_die
extract_features(PngAdapter({images!r}), create_backbone("smallcnn.scratch", image_size=32), {out!r},
                 options=ExtractOptions(batch_size={batch}, device="cpu", num_workers=0, progress=False))
"""


def test_sigkill_then_resume_equals_uninterrupted(images, reference, tmp_path):
    out = tmp_path / "killed.h5"
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), images=str(images), out=str(out), batch=BATCH)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not out.exists()  # a killed run never leaves a file under the final name
    with pytest.raises(UserError, match="incomplete"):
        FeatureStore.open(partial_path(out))
    with h5py.File(partial_path(out), "r") as h5:
        assert int(h5.attrs["rows_written"]) == 2 * BATCH
    _extract(images, out)
    np.testing.assert_array_equal(FeatureStore.open(out).features.view(np.uint16), reference.view(np.uint16))


def test_resume_with_another_backbone_is_refused(images, tmp_path, monkeypatch):
    out = tmp_path / "f.h5"
    monkeypatch.setattr(StoreWriter, "finalize", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        _extract(images, out)
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"started with backbone_name .*delete it to start over"):
        _extract(images, out, backbone="smallcnn_w32.scratch")
    with pytest.raises(UserError, match="backbone_seed 0 instead of 1"):
        extract_features(PngAdapter(images), create_backbone("smallcnn.scratch", image_size=32, seed=1), out, options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))
    # resume=False discards the partial file and starts over
    _extract(images, out, backbone="smallcnn_w32.scratch", resume=False)
    assert FeatureStore.open(out).provenance["backbone_name"] == "smallcnn_w32.scratch"


def test_unreadable_partial_starts_over(images, reference, tmp_path, caplog):
    out = tmp_path / "f.h5"
    partial_path(out).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # killed while HDF5 set up the file
    with caplog.at_level(logging.WARNING, logger="extract.store.reader"):
        _extract(images, out)
    assert "starting the extraction over" in caplog.text
    np.testing.assert_array_equal(FeatureStore.open(out).features, reference)


def test_complete_store_is_skipped_refused_or_overwritten(images, tmp_path, monkeypatch, caplog):
    out = _extract(images, tmp_path / "f.h5")
    monkeypatch.setattr(StoreWriter, "start", lambda *a, **k: pytest.fail("a complete store was redone"))
    with caplog.at_level(logging.INFO, logger="extract.extraction"):
        assert _extract(images, out) == out
    assert "skipping" in caplog.text
    with pytest.raises(UserError, match="already holds features with backbone_name.*pass `overwrite=True` to replace it"):
        _extract(images, out, backbone="smallcnn_w32.scratch")
    monkeypatch.undo()
    _extract(images, out, backbone="smallcnn_w32.scratch", overwrite=True)
    assert FeatureStore.open(out).feature_dim == 256


def test_killed_between_complete_flag_and_rename(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "f.h5"

    def no_rename(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("extract.store.writer.os.replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        _extract(images, out)
    monkeypatch.undo()
    assert not out.exists() and partial_path(out).exists()
    monkeypatch.setattr(StoreWriter, "write", lambda *a: pytest.fail("finished rows were recomputed"))
    _extract(images, out)
    np.testing.assert_array_equal(FeatureStore.open(out).features, reference)
