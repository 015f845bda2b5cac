"""HDF5 feature stores: one file per (dataset, backbone), written resumably, read at once.

Layout (readable with plain ``h5py``)::

    /features            (N, D) float16, contiguous, uncompressed
    /image_id            (N,) UTF-8 strings, the dataset's canonical row order
    /split               (N,) UTF-8 strings: train / val / test
    /attributes/<name>   (N,) int8: 0, 1 or -1 (unknown)
    root attributes      provenance (see :func:`make_provenance`), ``rows_written``, ``complete``

Writing happens at ``<out>.partial``; only :meth:`StoreWriter.finalize` (every row written,
``complete`` set) renames the file to ``<out>``, so a killed run never leaves a file under
the final name. Rows are written in order and ``rows_written`` is updated only after the
rows themselves reach the file, so a resumed run continues from ``rows_written``.

Reading (:meth:`FeatureStore.open`) checks the schema, the ``complete`` flag and the
provenance, then loads the whole matrix with one contiguous read; rows are gathered in
memory (h5py fancy indexing is ~100x slower, see PERFORMANCE.md).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from extract.errors import UserError

log = logging.getLogger(__name__)

STORE_FORMAT = "biastransfer-feature-store"
SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"
# Provenance that decides what the features mean: a resumed run and an existing store must
# agree on all of it. Batch size, device and worker count do not change what is measured.
IDENTITY_KEYS = ("dataset_name", "manifest_hash", "n_rows", "backbone_name", "weights_sha256",
                 "backbone_seed", "preprocess", "feature_dim", "precision")
REQUIRED_ATTRS = ("format", "schema_version", "created_utc", "versions", "dataset_name", "manifest_hash",
                  "n_rows", "feature_dim", "backbone_name", "backbone_config", "weights_sha256",
                  "backbone_seed", "preprocess", "precision", "extraction", "attribute_names",
                  "rows_written", "complete")
_JSON_ATTRS = ("versions", "backbone_config", "extraction", "attribute_names")
# Lock where the file system supports it (a second writer gets a clear error); file systems
# without locks (some NFS mounts) would otherwise make every store unreadable.
LOCKING = "best-effort"
_FINITE_BLOCK = 1 << 18  # elements per isfinite block: stays in cache, no N x D bool array


# -- provenance -----------------------------------------------------------------------------
def package_versions() -> dict:
    """Versions of the packages that shape the features (recorded in every store)."""
    versions = {"python": platform.python_version()}
    for package in ("biastransfer", "torch", "torchvision", "numpy", "h5py", "pillow"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    if versions["biastransfer"] is None:  # running from a source tree that is not installed
        from extract import __version__
        versions["biastransfer"] = __version__
    return versions


def make_provenance(*, dataset_name: str, manifest_hash: str, n_rows: int, backbone_config: dict,
                    extraction: dict) -> dict:
    """The provenance attributes of a new store.

    Parameters
    ----------
    dataset_name, manifest_hash : str
        The adapter's ``name`` and ``manifest_hash()``.
    n_rows : int
        Number of images N.
    backbone_config : dict
        ``Backbone.config()``: name, feature_dim, preprocess, weights sha256, seed.
    extraction : dict
        Run settings (batch size, device, precision, ...); ``precision`` is required
        (``"float32"`` or ``"bfloat16"``) because it changes the features.
    """
    sha = backbone_config.get("weights_sha256")
    return {
        "format": STORE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "dataset_name": str(dataset_name),
        "manifest_hash": str(manifest_hash),
        "n_rows": int(n_rows),
        "feature_dim": int(backbone_config["feature_dim"]),
        "backbone_name": str(backbone_config["name"]),
        "backbone_config": backbone_config,
        "weights_sha256": sha or "",
        # The seed only matters for random initialisation; -1 when weights were loaded.
        "backbone_seed": int(backbone_config["seed"]) if not sha and backbone_config.get("seed") is not None else -1,
        "preprocess": json.dumps(backbone_config["preprocess"], sort_keys=True),
        "precision": str(extraction["precision"]),
        "extraction": extraction,
    }


def identity(provenance: dict) -> dict:
    """The part of the provenance that two runs must share to write the same store."""
    return {key: provenance[key] for key in IDENTITY_KEYS}


def first_difference(expected: dict, found: dict) -> str | None:
    """A phrase naming the first identity key that differs, or None when they agree."""
    for key in IDENTITY_KEYS:
        if expected[key] != found[key]:
            return f"{key} {found[key]!r} instead of {expected[key]!r}"
    return None


def _encode_attr(key, value):
    return json.dumps(value, sort_keys=True, default=str) if key in _JSON_ATTRS else value


def _decode_attr(key, value):
    if isinstance(value, bytes):
        value = value.decode()
    if key in _JSON_ATTRS:
        return json.loads(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_provenance(h5: h5py.File) -> dict:
    """Root attributes of an open store as plain Python values (JSON attributes decoded)."""
    missing = [key for key in REQUIRED_ATTRS if key not in h5.attrs]
    if missing:
        raise UserError(f"{h5.filename} lacks the provenance attribute(s) {missing}; "
                        "it was not written by `biastransfer extract`, so re-extract it.")
    return {key: _decode_attr(key, h5.attrs[key]) for key in h5.attrs}


# -- paths ----------------------------------------------------------------------------------
def partial_path(out: str | Path) -> Path:
    """Where a store is written until it is complete: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def check_output_writable(out: str | Path) -> Path:
    """Create the output folder if needed and prove a file can be written there.

    Call it before heavy work (building a backbone, reading a dataset). Raises
    :class:`UserError` naming the folder when it cannot be created or written.
    """
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"the output {out} is a folder; pass a file path such as {out / 'features.h5'}.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to the output folder {out.parent} ({exc.strerror or exc.__class__.__name__}); "
                        "choose a writable output path.") from None
    return out


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
        raise UserError(f"{out} exists but is not a complete feature store; delete it or pass --overwrite.")
    difference = first_difference(identity(provenance), identity(found))
    if difference is not None:
        raise UserError(f"{out} already holds features with {difference}; pass --overwrite to replace it "
                        "or choose another output path.")
    FeatureStore.open(out, check_finite=False)  # schema and shape checks
    return True


def _open_h5(path: Path, mode: str) -> h5py.File:
    """Open an HDF5 file, turning lock and corruption errors into one sentence."""
    if path.is_dir():  # HDF5's own error for this spans several lines
        raise UserError(f"{path} is a folder, not a feature store; pass the .h5 file written by `biastransfer extract`.")
    try:
        return h5py.File(path, mode, locking=LOCKING)
    except BlockingIOError:
        raise UserError(f"{path} is open for writing in another process; wait for that run to finish "
                        "or choose another output.") from None
    except OSError as exc:
        raise UserError(f"{path} is not a readable HDF5 feature store (truncated or corrupt: {_h5_reason(exc)}); "
                        "delete it and rerun `biastransfer extract`.") from None


def _h5_reason(exc: OSError) -> str:
    text = " ".join(str(exc).split())  # HDF5 messages can embed newlines; keep one line
    return text[text.find("(") + 1:text.rfind(")")] if "(" in text else text


# -- writer ---------------------------------------------------------------------------------
class StoreWriter:
    """Writes a store in row order at ``<out>.partial`` and renames it when complete.

    Use :meth:`start` to create or resume, :meth:`write` for each block of rows (in order,
    starting at :attr:`rows_written`), then :meth:`finalize`. As a context manager it
    closes the partial file on exit (without finalising), so an exception leaves a
    resumable partial store behind.
    """

    def __init__(self, out: Path, h5: h5py.File, image_ids: np.ndarray, *, resumed_settings: dict | None = None):
        self.out = Path(out)
        self.partial = partial_path(out)
        self._h5 = h5
        self._features = h5["features"]
        self._image_ids = image_ids
        self.n_rows, self.feature_dim = self._features.shape
        self.rows_written = int(h5.attrs["rows_written"])
        # Extraction settings of the interrupted run this writer resumes (None when fresh).
        self.resumed_settings = resumed_settings

    @classmethod
    def start(cls, out: str | Path, *, metadata: pd.DataFrame, attributes: list[str], provenance: dict,
              resume: bool = True) -> "StoreWriter":
        """Resume ``<out>.partial`` when it matches ``provenance``, else create it.

        Parameters
        ----------
        out : path
            Final store path.
        metadata : DataFrame
            ``image_id``, ``split`` and the ``attributes`` columns, N rows in store order.
        attributes : list of str
            Attribute columns to store (int8).
        provenance : dict
            From :func:`make_provenance`.
        resume : bool
            When False an existing partial file is discarded.
        """
        out = check_output_writable(out)
        slashed = [name for name in attributes if "/" in name]
        if slashed:
            raise UserError(f"attribute name {slashed[0]!r} contains '/', which HDF5 reserves for groups; "
                            "rename that column of the dataset.")
        partial = partial_path(out)
        if partial.exists():
            writer = cls._resume(out, provenance) if resume else _refuse_if_in_use(partial)
            if writer is not None:
                return writer
            partial.unlink()
        try:  # exclusive create: never truncate a file that another run has just created
            h5 = h5py.File(partial, "w-", locking=LOCKING)
        except OSError as exc:
            raise UserError(f"cannot create the feature store {partial} ({exc.__class__.__name__}); "
                            "check that no other run writes it and that the folder is writable.") from None
        _initialise(h5, metadata=metadata, attributes=attributes, provenance=provenance)
        return cls(out, h5, metadata["image_id"].to_numpy(dtype=object))

    @classmethod
    def _resume(cls, out: Path, provenance: dict) -> "StoreWriter | None":
        partial = partial_path(out)
        try:
            h5 = h5py.File(partial, "r+", locking=LOCKING)
        except BlockingIOError:
            raise UserError(f"{partial} is open for writing in another process; wait for that run to finish "
                            "or choose another output.") from None
        except OSError as exc:
            log.warning("cannot reopen the partial store %s (%s); starting the extraction over", partial, _h5_reason(exc))
            return None
        try:
            found = read_provenance(h5)
            image_ids = h5["image_id"].asstr()[...]
            _ = h5["features"].shape
        except (UserError, KeyError, OSError, RuntimeError, ValueError) as exc:  # killed during set-up
            h5.close()
            log.warning("the partial store %s is unusable (%s); starting the extraction over", partial, exc)
            return None
        difference = first_difference(identity(provenance), identity(found))
        if difference is not None:
            h5.close()
            raise UserError(f"the partial store {partial} was started with {difference}; delete it to start over "
                            "or choose another output path.")
        writer = cls(out, h5, np.asarray(image_ids, dtype=object), resumed_settings=found["extraction"])
        log.info("resuming %s from row %d of %d", partial, writer.rows_written, writer.n_rows)
        return writer

    def write(self, start: int, features: np.ndarray) -> None:
        """Write rows ``start : start + k`` and record them as written.

        Parameters
        ----------
        start : int
            Must equal :attr:`rows_written` (rows are written in order).
        features : ndarray of shape (k, D), float16
            Non-finite values are refused with a :class:`UserError` naming the first image.
        """
        features = np.asarray(features)
        if start != self.rows_written:
            raise ValueError(f"rows must be written in order: got start={start}, expected {self.rows_written}")
        if features.ndim != 2 or features.shape[1] != self.feature_dim or start + len(features) > self.n_rows:
            raise ValueError(f"a block of shape {features.shape} does not fit rows {start}.. of a "
                             f"{self.n_rows} x {self.feature_dim} store")
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            features = features.astype(np.float16, copy=False)
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise UserError(f"the backbone produced NaN or infinite features for image {self._image_ids[row]!r} "
                            f"(row {row}; float16 holds at most 65504), so check the weights file and the images.")
        stop = start + len(features)
        self._features[start:stop] = features
        # Rows reach the file before the counter that vouches for them (kill safety).
        self._h5.flush()
        self._h5.attrs.modify("rows_written", np.int64(stop))
        self._h5.flush()
        self.rows_written = stop

    def finalize(self) -> Path:
        """Mark the store complete, close it and rename it to its final path."""
        if self.rows_written != self.n_rows:
            raise ValueError(f"cannot finalize {self.partial}: {self.rows_written} of {self.n_rows} rows written")
        self._h5.attrs.modify("complete", np.True_)
        self._h5.flush()
        os.fsync(self._h5.id.get_vfd_handle())  # durable before it becomes visible
        self._h5.close()
        os.replace(self.partial, self.out)
        return self.out

    def close(self) -> None:
        """Close the partial file without finalising (it stays resumable)."""
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _refuse_if_in_use(partial: Path) -> None:
    """Raise when another process holds ``partial`` open for writing (its lock is taken)."""
    try:
        h5py.File(partial, "r", locking=LOCKING).close()
    except BlockingIOError:
        raise UserError(f"{partial} is open for writing in another process; wait for that run to finish "
                        "or choose another output.") from None
    except OSError:
        pass  # unreadable leftovers of a killed run may be deleted


def _initialise(h5: h5py.File, *, metadata: pd.DataFrame, attributes: list[str], provenance: dict) -> None:
    """Create datasets and provenance; ``rows_written`` is written last and flushed."""
    n, d = int(provenance["n_rows"]), int(provenance["feature_dim"])
    if len(metadata) != n:
        raise ValueError(f"metadata has {len(metadata)} rows, provenance says {n}")
    strings = h5py.string_dtype("utf-8")
    h5.create_dataset("image_id", data=metadata["image_id"].astype(str).to_numpy(dtype=object), dtype=strings)
    h5.create_dataset("split", data=metadata["split"].astype(str).to_numpy(dtype=object), dtype=strings)
    group = h5.create_group("attributes")
    for name in attributes:
        group.create_dataset(name, data=metadata[name].to_numpy(dtype=np.int8))
    # Contiguous and uncompressed: full reads at disk speed, no chunk decompression.
    h5.create_dataset("features", shape=(n, d), dtype=np.float16)
    for key, value in provenance.items():
        h5.attrs[key] = _encode_attr(key, value)
    h5.attrs["attribute_names"] = json.dumps(list(attributes))
    h5.attrs["complete"] = np.False_
    h5.flush()
    h5.attrs["rows_written"] = np.int64(0)
    h5.flush()


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
        return cls(path, provenance, metadata, check_finite=check_finite)

    @property
    def features(self) -> np.ndarray:
        """The (N, D) float16 matrix, read once with one contiguous read and cached."""
        if self._features is None:
            self._features = self._load_features()
        return self._features

    def features_float32(self) -> np.ndarray:
        """A new (N, D) float32 copy of :attr:`features` (for solvers)."""
        return self.features.astype(np.float32)

    def rows(self, indices, *, dtype=np.float16) -> np.ndarray:
        """Rows ``indices`` gathered from the in-memory matrix, shape (k, D)."""
        return np.take(self.features, np.asarray(indices, dtype=np.int64), axis=0).astype(dtype, copy=False)

    def check_same_rows(self, other: "FeatureStore") -> None:
        """Raise :class:`UserError` unless ``other`` has the same rows in the same order."""
        check_same_rows(self, other)

    def _load_features(self) -> np.ndarray:
        out = np.empty((self.n_rows, self.feature_dim), dtype=np.float16)
        with _open_h5(self.path, "r") as h5:
            try:
                h5["features"].read_direct(out)
            except OSError as exc:
                raise UserError(f"cannot read the features of {self.path} (truncated or corrupt: {_h5_reason(exc)}); "
                                "delete it and rerun `biastransfer extract`.") from None
        if self.check_finite:
            _check_finite(out, self)
        out.flags.writeable = False  # shared by every caller of .features
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
