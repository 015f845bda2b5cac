"""HDF5 feature stores: one file per (dataset, backbone), written resumably, read at once.

Layout (readable with plain ``h5py``)::

    /features            (N, D) float16, contiguous, uncompressed
    /image_id            (N,) UTF-8 strings, the dataset's canonical row order
    /split               (N,) UTF-8 strings: train / val / test
    /attributes/<name>   (N,) int8: 0, 1 or -1 (unknown)
    root attributes      provenance (see :func:`make_provenance`), ``rows_written``, ``complete``

Writing (:mod:`extract.store.writer`) happens at ``<out>.partial``; only :meth:`StoreWriter.finalize` (every row written,
``complete`` set) renames the file to ``<out>``, so a killed run never leaves a file under
the final name. Rows are written in order and ``rows_written`` is updated only after the
rows themselves reach the file, so a resumed run continues from ``rows_written``.

Reading (:meth:`FeatureStore.open`) checks the schema, the ``complete`` flag and the
provenance. The feature matrix (contiguous, uncompressed) is then memory-mapped at its
offset in the file, read-only: every process that opens the same store shares the same
pages of the operating system's page cache, so N workers hold one copy, not N, and a
process never holds more than the pages it touched. Rows are gathered from the map (h5py
fancy indexing is ~100x slower, see PERFORMANCE.md). A matrix that cannot be mapped
(chunked or compressed by another tool) is read into memory instead.

This module is the reader; the format shared with the writer lives in
:mod:`extract.store.format`. Every public name of both is importable from here.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from extract.errors import UserError
from extract.store.format import (
    SCHEMA_VERSION,
    STORE_FORMAT,
    _decode_attr,
    _h5_reason,
    _open_h5,
    first_difference,
    identity,
    partial_path,
    read_provenance,
)
from extract.store.writer import (
    StoreWriter,
    check_output_writable,
    make_provenance,
    package_versions,
)

_FINITE_BLOCK = 1 << 18  # elements per isfinite block: stays in cache, no N x D bool array


# -- an existing store ----------------------------------------------------------------------
def existing_store_matches(out: str | Path, provenance: dict) -> bool:
    """True when ``out`` is a complete, valid store with the identity of ``provenance``.

    Raises :class:`UserError` when ``out`` is something else (another backbone or
    dataset, an incomplete or foreign file), so a run never silently overwrites it.
    """
    out = Path(out)
    with _open_h5(out, "r") as h5:
        try:
            found = read_provenance(h5)
        except UserError:
            found = None
    if found is None or found.get("format") != STORE_FORMAT or not found.get("complete"):
        raise UserError(f"{out} exists but is not a complete feature store; delete it or pass `overwrite=True`.")
    difference = first_difference(identity(provenance), identity(found))
    if difference is not None:
        raise UserError(f"{out} already holds features with {difference}; pass `overwrite=True` to replace it "
                        "or choose another output path.")
    FeatureStore.open(out, check_finite=False)  # schema and shape checks
    return True


# -- reader ---------------------------------------------------------------------------------
class FeatureStore:
    """A complete feature store, opened read-only. Build it with :meth:`open`.

    Attributes
    ----------
    path : Path
    provenance : dict
        Root attributes (JSON ones decoded): dataset, backbone, versions, settings.
    metadata : DataFrame
        ``image_id`` (str), ``split`` (str) and one int8 column per attribute, N rows.
    attributes : list of str
    n_rows, feature_dim : int
    """

    def __init__(self, path: Path, provenance: dict, metadata: pd.DataFrame, *, check_finite: bool = True):
        self.path = Path(path)
        self.provenance = provenance
        self.metadata = metadata
        self.attributes = list(provenance["attribute_names"])
        self.n_rows = int(provenance["n_rows"])
        self.feature_dim = int(provenance["feature_dim"])
        self.check_finite = check_finite
        self._features: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path, *, check_finite: bool = True) -> "FeatureStore":
        """Open and validate a store; the feature matrix loads on first use.

        Parameters
        ----------
        path : path
            A store written by ``biastransfer extract``.
        check_finite : bool
            Refuse NaN or infinite features when the matrix is loaded (costs ~0.3 s per
            GB on one core).
        """
        path = Path(path).expanduser()
        if not path.exists():
            hint = (f"the extraction was interrupted ({partial_path(path).name} exists), so rerun `biastransfer extract` "
                    "with the same arguments to resume" if partial_path(path).exists()
                    else "run `biastransfer extract` first or check the path")
            raise UserError(f"feature store {path} does not exist; {hint}.")
        with _open_h5(path, "r") as h5:
            _check_header(h5, path)
            provenance = read_provenance(h5)
            if not provenance["complete"]:
                raise UserError(f"feature store {path} is incomplete ({provenance['rows_written']} of "
                                f"{provenance['n_rows']} rows); rerun `biastransfer extract` with the same arguments to resume.")
            metadata = _read_metadata(h5, path, provenance)
        _check_backbone_config(provenance, path)
        return cls(path, provenance, metadata, check_finite=check_finite)

    @property
    def features(self) -> np.ndarray:
        """The (N, D) float16 matrix, read-only, memory-mapped from the file and cached."""
        if self._features is None:
            self._features = self._load_features()
        return self._features

    def features_float32(self) -> np.ndarray:
        """A new (N, D) float32 copy of :attr:`features` (for solvers)."""
        return self.features.astype(np.float32)

    def rows(self, indices, *, dtype=np.float16) -> np.ndarray:
        """Rows ``indices`` gathered from the matrix, shape (k, D)."""
        return np.take(self.features, np.asarray(indices, dtype=np.int64), axis=0).astype(dtype, copy=False)

    def check_same_rows(self, other: "FeatureStore") -> None:
        """Raise :class:`UserError` unless ``other`` has the same rows in the same order."""
        check_same_rows(self, other)

    def _load_features(self) -> np.ndarray:
        with _open_h5(self.path, "r") as h5:
            dataset = h5["features"]
            offset = dataset.id.get_offset()
            mappable = (offset is not None and dataset.chunks is None and dataset.compression is None
                        and dataset.dtype == np.dtype("=f2"))
            out = None if mappable else self._read_features(dataset)
        if out is None:
            shape = (self.n_rows, self.feature_dim)
            if offset + 2 * shape[0] * shape[1] > self.path.stat().st_size:
                raise UserError(f"cannot read the features of {self.path} (truncated: the file ends before its "
                                "feature matrix); delete it and rerun `biastransfer extract`.")
            out = np.memmap(self.path, dtype=np.float16, mode="r", offset=offset, shape=shape).view(np.ndarray)
        if self.check_finite:
            _check_finite(out, self)
        out.flags.writeable = False  # shared by every caller of .features
        return out

    def _read_features(self, dataset) -> np.ndarray:
        out = np.empty((self.n_rows, self.feature_dim), dtype=np.float16)
        try:
            dataset.read_direct(out)
        except OSError as exc:
            raise UserError(f"cannot read the features of {self.path} (truncated or corrupt: {_h5_reason(exc)}); "
                            "delete it and rerun `biastransfer extract`.") from None
        return out

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, dataset={self.provenance['dataset_name']!r}, "
                f"backbone={self.provenance['backbone_name']!r}, n_rows={self.n_rows}, feature_dim={self.feature_dim})")


def open_store(path: str | Path, *, check_finite: bool = True) -> FeatureStore:
    """Same as :meth:`FeatureStore.open`."""
    return FeatureStore.open(path, check_finite=check_finite)


def _check_header(h5: h5py.File, path: Path) -> None:
    fmt = _decode_attr("format", h5.attrs.get("format", b""))
    if fmt != STORE_FORMAT:
        raise UserError(f"{path} is not a biastransfer feature store (no format attribute {STORE_FORMAT!r}); "
                        "pass a file written by `biastransfer extract`.")
    version = int(h5.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise UserError(f"{path} has store schema version {version}, this biastransfer reads version {SCHEMA_VERSION}; "
                        "re-extract it with this version.")


def _check_backbone_config(provenance: dict, path: Path) -> None:
    """The width and backbone name must agree with the backbone config the store records.

    ``feature_dim`` and ``/features`` are already checked against each other; a file whose
    features were cut and whose ``feature_dim`` was edited to match still disagrees with
    ``backbone_config`` (written once, from the backbone itself), as does a renamed backbone.
    """
    config = provenance.get("backbone_config")
    if not isinstance(config, dict) or "feature_dim" not in config or "name" not in config:
        raise UserError(f"{path} is damaged: its backbone_config lacks feature_dim or name, so re-extract it.")
    width, recorded = int(provenance["feature_dim"]), config["feature_dim"]
    if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded != width:
        raise UserError(f"{path} has {width} features per image, but its backbone_config records {config['name']} "
                        f"with {recorded}; the file was edited or damaged, so re-extract it.")
    if str(provenance["backbone_name"]) != str(config["name"]):
        raise UserError(f"{path} names backbone {provenance['backbone_name']!r} but its backbone_config records "
                        f"{config['name']!r}; the file was edited or damaged, so re-extract it.")


def _read_metadata(h5: h5py.File, path: Path, provenance: dict) -> pd.DataFrame:
    n, d = int(provenance["n_rows"]), int(provenance["feature_dim"])
    names = list(provenance["attribute_names"])
    expected = {"features": (n, d), "image_id": (n,), "split": (n,), **{f"attributes/{a}": (n,) for a in names}}
    for key, shape in expected.items():
        if key not in h5 or h5[key].shape != shape:
            found = h5[key].shape if key in h5 else "missing"
            raise UserError(f"{path} has /{key} of shape {found} where its provenance implies {shape}; "
                            "the file is damaged, so re-extract it.")
    if h5["features"].dtype != np.float16:
        raise UserError(f"{path} stores features as {h5['features'].dtype}, not float16; re-extract it.")
    columns = {"image_id": h5["image_id"].asstr()[...].astype(object),
               "split": h5["split"].asstr()[...].astype(object)}
    for name in names:
        columns[name] = h5["attributes"][name][...].astype(np.int8)
    return pd.DataFrame(columns)


def _check_finite(features: np.ndarray, store: FeatureStore) -> None:
    """Blockwise isfinite (no N x D temporary); the error names the first bad image."""
    flat = features.reshape(-1)
    for lo in range(0, flat.size, _FINITE_BLOCK):
        block = flat[lo:lo + _FINITE_BLOCK]
        if not np.isfinite(block).all():
            row = (lo + int(np.argmin(np.isfinite(block)))) // store.feature_dim
            raise UserError(f"feature store {store.path} holds NaN or infinite features (first at image "
                            f"{store.metadata['image_id'].iat[row]!r}, row {row}); re-extract it with valid weights.")


def check_same_rows(a: FeatureStore, b: FeatureStore) -> None:
    """Check that two stores describe the same images in the same order.

    Raises :class:`UserError` when the dataset names differ, when the same images come in
    another order or the image sets differ (both name the first differing row and its
    ids), or when the ids agree but the manifest hashes do not (relabelled attributes).
    """
    pa, pb = a.provenance, b.provenance
    if pa["dataset_name"] != pb["dataset_name"]:
        raise UserError(f"{a.path} holds dataset {pa['dataset_name']!r} but {b.path} holds {pb['dataset_name']!r}; "
                        "compare stores extracted from the same dataset.")
    ids_a = a.metadata["image_id"].to_numpy()
    ids_b = b.metadata["image_id"].to_numpy()
    if len(ids_a) == len(ids_b) and (ids_a == ids_b).all():
        if pa["manifest_hash"] != pb["manifest_hash"]:
            raise UserError(f"{a.path} and {b.path} list the same images but different dataset manifests "
                            f"({pa['manifest_hash'][:12]} vs {pb['manifest_hash'][:12]}, e.g. relabelled attributes); "
                            "re-extract both from the same dataset copy.")
        return
    common = min(len(ids_a), len(ids_b))
    differ = np.flatnonzero(ids_a[:common] != ids_b[:common])
    i = int(differ[0]) if len(differ) else common
    first = f"row {i} is {_id_at(ids_a, i)} vs {_id_at(ids_b, i)}"
    if len(ids_a) == len(ids_b) and set(ids_a) == set(ids_b):
        raise UserError(f"{a.path} and {b.path} list the same images in different orders ({first}); "
                        "re-extract one of them so both follow the dataset's canonical order.")
    raise UserError(f"{a.path} and {b.path} hold different images of {pa['dataset_name']!r} "
                    f"({len(ids_a)} vs {len(ids_b)} rows, {first}), so they come from different dataset copies; "
                    "compare stores extracted from the same copy.")


def _id_at(ids: np.ndarray, i: int) -> str:
    return repr(ids[i]) if i < len(ids) else "<no row>"


__all__ = ["FeatureStore", "StoreWriter", "check_output_writable", "check_same_rows", "existing_store_matches",
           "first_difference", "identity", "make_provenance",
           "open_store", "package_versions", "partial_path", "read_provenance", "SCHEMA_VERSION"]
