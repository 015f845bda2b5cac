"""Feature store: write/read round trip, layout, provenance, and refusal of bad files."""

from __future__ import annotations

import fcntl
import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from extract.errors import UserError
from extract.store.reader import (
    SCHEMA_VERSION,
    FeatureStore,
    StoreWriter,
    make_provenance,
    open_store,
    partial_path,
)

N, D = 23, 12


def _metadata(n=N, prefix="img"):
    rng = np.random.default_rng(1)
    return pd.DataFrame({
        "image_id": [f"{prefix}_{i:03d}é" for i in range(n)],  # non-ASCII on purpose
        "split": np.array(["train", "val", "test"])[np.arange(n) % 3],
        "smiling": rng.integers(0, 2, n).astype(np.int8),
        "hat": rng.integers(-1, 2, n).astype(np.int8),
    })


def _provenance(n=N, d=D, *, dataset="fake", manifest="abc123", backbone="smallcnn.scratch", sha=None, seed=0):
    config = {"name": backbone, "feature_dim": d, "seed": seed, "weights_path": None, "weights_sha256": sha,
              "preprocess": {"resize": 32, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3,
                             "interpolation": "bilinear"}}
    return make_provenance(dataset_name=dataset, manifest_hash=manifest, n_rows=n, backbone_config=config,
                           extraction={"batch_size": 8, "device": "cpu", "precision": "float32"})


def write_store(out, features, *, meta=None, finalize=True, **provenance):
    meta = _metadata(len(features)) if meta is None else meta
    writer = StoreWriter.start(out, metadata=meta, attributes=["smiling", "hat"],
                               provenance=_provenance(*features.shape, **provenance))
    with writer:
        for start in range(0, len(features), 8):
            writer.write(start, features[start:start + 8])
        if finalize:
            return writer.finalize()
    return partial_path(out)


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(N, D)).astype(np.float16)


def test_round_trip_features_metadata_and_dtypes(tmp_path, features):
    path = write_store(tmp_path / "s.h5", features)
    assert path == tmp_path / "s.h5" and not partial_path(path).exists()
    store = FeatureStore.open(path)
    assert store.features.dtype == np.float16 and store.features.shape == (N, D)
    np.testing.assert_array_equal(store.features, features)
    assert store.features is store.features  # loaded once, cached
    assert store.features_float32().dtype == np.float32
    np.testing.assert_array_equal(store.rows([5, 2, 5], dtype=np.float32), features[[5, 2, 5]].astype(np.float32))
    expected = _metadata()
    pd.testing.assert_frame_equal(store.metadata, expected, check_dtype=False)
    assert store.metadata["smiling"].dtype == np.int8
    assert store.attributes == ["smiling", "hat"]
    assert (store.n_rows, store.feature_dim) == (N, D)


def test_layout_is_contiguous_uncompressed_and_plain_h5py_readable(tmp_path, features):
    path = write_store(tmp_path / "s.h5", features)
    with h5py.File(path, "r") as h5:
        ds = h5["features"]
        assert ds.chunks is None and ds.compression is None and ds.dtype == np.float16
        assert ds.id.get_offset() is not None  # contiguous: one block in the file
        np.testing.assert_array_equal(ds[...], features)
        assert list(h5["image_id"].asstr()[:2]) == ["img_000é", "img_001é"]
        assert list(h5["split"].asstr()[:3]) == ["train", "val", "test"]
        assert h5["attributes/hat"].dtype == np.int8
        assert bool(h5.attrs["complete"]) and int(h5.attrs["rows_written"]) == N
        assert json.loads(h5.attrs["backbone_config"])["name"] == "smallcnn.scratch"


def test_provenance_fields(tmp_path, features):
    prov = open_store(write_store(tmp_path / "s.h5", features, sha="f" * 64)).provenance
    assert prov["schema_version"] == SCHEMA_VERSION and prov["format"] == "biastransfer-feature-store"
    assert prov["dataset_name"] == "fake" and prov["manifest_hash"] == "abc123"
    assert prov["backbone_name"] == "smallcnn.scratch" and prov["weights_sha256"] == "f" * 64
    assert prov["backbone_seed"] == -1  # weights were loaded, the init seed is moot
    assert json.loads(prov["preprocess"])["crop"] == 32
    assert set(prov["versions"]) >= {"biastransfer", "torch", "torchvision", "numpy", "h5py"}
    assert prov["extraction"]["batch_size"] == 8 and prov["precision"] == "float32"
    assert prov["created_utc"].endswith("+00:00")


def test_incomplete_store_refuses_to_open(tmp_path, features):
    partial = write_store(tmp_path / "s.h5", features, finalize=False)
    assert partial.exists() and not (tmp_path / "s.h5").exists()
    with pytest.raises(UserError, match="rerun `biastransfer extract` with the same arguments to resume"):
        FeatureStore.open(partial)
    with pytest.raises(UserError, match="interrupted.*resume"):
        FeatureStore.open(tmp_path / "s.h5")


def test_truncated_and_foreign_files_are_one_sentence(tmp_path, features):
    path = write_store(tmp_path / "s.h5", features)
    data = path.read_bytes()
    (tmp_path / "half.h5").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt") as info:
        FeatureStore.open(tmp_path / "half.h5")
    assert "\n" not in str(info.value)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5" * 100)
    with pytest.raises(UserError, match="not a readable HDF5"):
        FeatureStore.open(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(UserError, match="not a biastransfer feature store"):
        FeatureStore.open(tmp_path / "other.h5")
    with pytest.raises(UserError, match="does not exist"):
        FeatureStore.open(tmp_path / "missing.h5")


def test_schema_version_and_missing_provenance_are_checked(tmp_path, features):
    path = write_store(tmp_path / "s.h5", features)
    bumped = shutil.copy(path, tmp_path / "bumped.h5")
    with h5py.File(bumped, "r+") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(UserError, match="schema version"):
        FeatureStore.open(bumped)
    with h5py.File(path, "r+") as h5:
        del h5.attrs["manifest_hash"]
    with pytest.raises(UserError, match="manifest_hash"):
        FeatureStore.open(path)


def test_nan_features_refused_at_write_and_at_read(tmp_path, features):
    bad = features.copy()
    bad[11, 3] = np.nan
    with pytest.raises(UserError, match="NaN or infinite features for image 'img_011é'"):
        write_store(tmp_path / "s.h5", bad)
    huge = features.astype(np.float32)
    huge[4, 0] = 1e6  # overflows float16
    with pytest.raises(UserError, match="row 4"):
        write_store(tmp_path / "t.h5", huge)
    path = write_store(tmp_path / "u.h5", features)
    with h5py.File(path, "r+") as h5:  # a file damaged after it was written
        h5["features"][17, 5] = np.inf
    store = FeatureStore.open(path)
    with pytest.raises(UserError, match="NaN or infinite features.*img_017é"):
        store.features
    assert FeatureStore.open(path, check_finite=False).features[17, 5] == np.inf


def test_writer_refuses_out_of_order_and_early_finalize(tmp_path, features):
    writer = StoreWriter.start(tmp_path / "s.h5", metadata=_metadata(), attributes=["smiling", "hat"],
                               provenance=_provenance())
    with writer:
        with pytest.raises(ValueError, match="in order"):
            writer.write(8, features[8:16])
        writer.write(0, features[:8])
        with pytest.raises(ValueError, match="8 of 23 rows"):
            writer.finalize()


@pytest.mark.parametrize("resume", [True, False])
def test_partial_held_by_another_writer_is_neither_resumed_nor_deleted(tmp_path, features, resume):
    partial = write_store(tmp_path / "s.h5", features, finalize=False)
    size = partial.stat().st_size
    with open(partial, "rb") as other:  # HDF5 locks with flock: a lock on another descriptor conflicts
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="open for writing in another process"):
            StoreWriter.start(tmp_path / "s.h5", metadata=_metadata(), attributes=["smiling", "hat"],
                              provenance=_provenance(), resume=resume)
        with pytest.raises(UserError, match="open for writing in another process"):
            FeatureStore.open(partial)
    assert partial.stat().st_size == size


def test_attribute_names_with_slashes_are_refused(tmp_path):
    meta = _metadata().rename(columns={"hat": "hat/cap"})
    with pytest.raises(UserError, match="'hat/cap' contains '/'"):
        StoreWriter.start(tmp_path / "s.h5", metadata=meta, attributes=["smiling", "hat/cap"],
                          provenance=_provenance())
    assert not partial_path(tmp_path / "s.h5").exists()
