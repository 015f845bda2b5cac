"""Joining shard stores into one feature store (rank 0 of :mod:`extract.sharded` does it).

``copy`` copies the features in large blocks into a new store written by
:class:`extract.store.reader.StoreWriter` (atomic rename when complete). ``virtual`` writes a
store whose ``/features`` is an HDF5 virtual dataset over the shard files: no copy, but the
shard files must stay next to it (they are found by relative name, so the folder can be
moved as a whole), and a missing shard reads as NaN, which
:class:`extract.store.reader.FeatureStore` refuses, never as zeros.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np

from extract.backbones import Backbone
from extract.datasets.base import BASE_COLUMNS, Adapter
from extract.errors import UserError
from extract.io import replace_file
from extract.store.format import IDENTITY_KEYS
from extract.store.reader import (
    FeatureStore,
    StoreWriter,
    make_provenance,
    partial_path,
)

log = logging.getLogger(__name__)

JOIN_MODES = ("copy", "virtual")
COPY_BLOCK_BYTES = 64 << 20  # join copy block: large sequential reads, bounded memory


def joined_provenance(adapter: Adapter, backbone: Backbone, settings: dict) -> dict:
    """The provenance of a single-process store of ``adapter``, with ``settings`` as ``extraction``."""
    meta = adapter.metadata()
    return make_provenance(dataset_name=adapter.name, manifest_hash=adapter.manifest_hash(), n_rows=len(meta),
                           backbone_config=backbone.config(), extraction=settings)


def join_shards(adapter: Adapter, backbone: Backbone, out: str | Path, shards: list[dict], *, mode: str = "copy",
                keep_shards: bool = False) -> Path:
    """Join complete shard stores into the store ``out`` (rows in dataset order).

    Parameters
    ----------
    adapter, backbone
        The whole dataset and the backbone the shards were extracted with.
    out : path
        The joined store; written at ``<out>.partial`` and renamed when complete.
    shards : list of dict
        One per rank, in rank order: ``rank``, ``start``, ``stop``, ``path`` (ignored when
        the range is empty), ``device`` and ``host``.
    mode : {"copy", "virtual"}
    keep_shards : bool
        Keep the shard files after a copy join.
    """
    if mode not in JOIN_MODES:
        raise UserError(f"unknown join mode {mode!r}; use one of {list(JOIN_MODES)}.")
    out = Path(out)
    meta = adapter.metadata()
    present = [s for s in shards if s["stop"] > s["start"]]
    stores = [_open_shard(s, meta) for s in present]
    settings = {**stores[0].provenance["extraction"], "world_size": len(shards), "join": mode,
                "shards": [{**{k: s[k] for k in ("rank", "start", "stop", "device", "host")},
                            "file": Path(s["path"]).name if s["stop"] > s["start"] else None} for s in shards]}
    provenance = joined_provenance(adapter, backbone, settings)
    for store in stores:
        _check_shard_identity(store, provenance)
    attributes = [c for c in meta.columns if c not in BASE_COLUMNS]
    # Always a fresh join: it is seconds of work, and shards may have been redone since a killed join.
    with StoreWriter.start(out, metadata=meta, attributes=attributes, provenance=provenance, resume=False) as writer:
        if mode == "copy":
            _copy_features(writer, present)
            path = writer.finalize()
        else:
            writer.close()
            path = _finish_virtual(out, present, n_rows=len(meta), feature_dim=writer.feature_dim)
    if mode == "copy" and not keep_shards:
        for shard in present:
            Path(shard["path"]).unlink()
    log.info("joined %d shards into %s (%s)", len(present), path, mode)
    return path


def _open_shard(shard: dict, meta) -> FeatureStore:
    path = Path(shard["path"])
    if not path.exists():
        raise UserError(f"rank 0 cannot see the shard {path} written by rank {shard['rank']} on {shard['host']}; "
                        "with several nodes put `out` on a file system that every node shares.")
    store = FeatureStore.open(path, check_finite=False)  # finiteness was checked as the rows were written
    expected = meta["image_id"].to_numpy()[shard["start"]:shard["stop"]]
    found = store.metadata["image_id"].to_numpy()
    if len(found) != len(expected) or (found != expected).any():
        raise UserError(f"the shard {path} does not hold rows {shard['start']}-{shard['stop']} of the dataset; "
                        "delete the shard files and rerun.")
    return store


def _check_shard_identity(store: FeatureStore, provenance: dict) -> None:
    for key in IDENTITY_KEYS:
        if key in ("manifest_hash", "n_rows"):  # the slice's own, checked through the ids above
            continue
        if store.provenance[key] != provenance[key]:
            raise UserError(f"the shard {store.path} has {key} {store.provenance[key]!r} instead of "
                            f"{provenance[key]!r}; delete the shard files and rerun.")


def _copy_features(writer: StoreWriter, shards: list[dict]) -> None:
    """Copy each shard's features into the writer in large contiguous blocks."""
    block = max(1, COPY_BLOCK_BYTES // (2 * writer.feature_dim))
    for shard in shards:
        with h5py.File(shard["path"], "r") as h5:
            features = h5["features"]
            for lo in range(0, len(features), block):
                writer.write(shard["start"] + lo, features[lo:lo + block])


def _finish_virtual(out: Path, shards: list[dict], *, n_rows: int, feature_dim: int) -> Path:
    """Replace the partial store's ``/features`` by a virtual dataset over the shards; rename."""
    partial = partial_path(out)
    layout = h5py.VirtualLayout(shape=(n_rows, feature_dim), dtype=np.float16)
    for shard in shards:
        rows = shard["stop"] - shard["start"]
        # Relative name: HDF5 looks for it next to the joined file, wherever the folder goes.
        layout[shard["start"]:shard["stop"]] = h5py.VirtualSource(
            os.path.relpath(shard["path"], out.parent), "features", shape=(rows, feature_dim))
    with h5py.File(partial, "r+") as h5:
        del h5["features"]  # never written, so no space was allocated for it
        # A missing shard then reads as NaN, which FeatureStore refuses, instead of as zeros.
        h5.create_virtual_dataset("features", layout, fillvalue=np.float16(np.nan))
        h5.attrs.modify("rows_written", np.int64(n_rows))
        h5.attrs.modify("complete", np.True_)
        h5.flush()
    replace_file(partial, out)  # fsyncs the file before the rename
    return out


__all__ = ["COPY_BLOCK_BYTES", "JOIN_MODES", "join_shards", "joined_provenance"]
