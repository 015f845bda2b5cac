"""The background store writer: in-order writes off the compute thread, failures never finalised."""

from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest
import torch
from test_extraction_resume import BATCH, PngAdapter, write_pngs

from extract.backbones import create_backbone
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.background import BackgroundWriter
from extract.store.reader import FeatureStore, StoreWriter, partial_path


class FakeStore:
    """Records ``write`` calls; ``fail_at`` raises on that call; ``gate`` holds the first write."""

    def __init__(self, fail_at=None, gate=None):
        self.calls, self.threads, self.fail_at, self.gate = [], set(), fail_at, gate

    def write(self, start, features):
        if self.gate is not None:
            self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        if len(self.calls) == self.fail_at:
            raise UserError("the disk is full; free some space.")
        self.calls.append((start, features.dtype, features.shape))


def test_batches_are_written_in_order_as_float16_off_the_main_thread():
    store = FakeStore()
    with BackgroundWriter(store, depth=2) as background:
        for b in range(6):
            background.submit(4 * b, torch.full((4, 3), float(b)))
    assert store.calls == [(4 * b, np.float16, (4, 3)) for b in range(6)]
    assert store.threads == {"biastransfer-store-writer"}


def test_a_failed_write_is_raised_in_the_loop_and_nothing_is_written_after_it():
    gate = threading.Event()
    store = FakeStore(fail_at=0, gate=gate)
    background = BackgroundWriter(store, depth=1)
    threading.Timer(0.2, gate.set).start()  # the queue is full while the first write is held
    with pytest.raises(UserError, match="the disk is full"):
        for b in range(10):  # never blocks forever: after the failure the thread drains the queue
            background.submit(4 * b, torch.zeros(4, 3))
    with pytest.raises(UserError, match="the disk is full"):
        background.close()
    assert store.calls == []


def test_leaving_on_a_loop_error_keeps_the_computed_rows():
    store = FakeStore()
    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter(store) as background:
            background.submit(0, torch.zeros(4, 3))
            background.submit(4, torch.zeros(4, 3))
            raise KeyboardInterrupt
    assert [start for start, _, _ in store.calls] == [0, 4]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_pngs(tmp_path_factory.mktemp("pngs"))


def test_extraction_write_error_stops_before_finalize(images, tmp_path, monkeypatch):
    out, original, threads = tmp_path / "f.h5", StoreWriter.write, set()
    monkeypatch.setattr(StoreWriter, "finalize", lambda self: pytest.fail("a store with a failed write was finalised"))

    def failing_write(self, start, features):
        threads.add(threading.current_thread().name)
        if start == 2 * BATCH:
            raise UserError("cannot write to the disk; free some space.")
        original(self, start, features)

    monkeypatch.setattr(StoreWriter, "write", failing_write)
    with pytest.raises(UserError, match="cannot write to the disk"):
        extract_features(PngAdapter(images), create_backbone("smallcnn.scratch", image_size=32), out, options=ExtractOptions(batch_size=BATCH, device="cpu", num_workers=0, progress=False))
    assert threads == {"biastransfer-store-writer"}  # writes overlap the next batch's compute
    assert not out.exists()
    with h5py.File(partial_path(out), "r") as h5:
        assert int(h5.attrs["rows_written"]) == 2 * BATCH and not h5.attrs["complete"]
    with pytest.raises(UserError, match="resume"):
        FeatureStore.open(out)
