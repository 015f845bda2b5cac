"""Writing a feature store: provenance of a new store, the output check and :class:`StoreWriter`.

Writing happens at ``<out>.partial``; only :meth:`StoreWriter.finalize` (every row written,
``complete`` set) renames the file to ``<out>``, so a killed run never leaves a file under
the final name. Rows are written in order and ``rows_written`` is updated only after the
rows themselves reach the file, so a resumed run continues from ``rows_written``.

The ``/features`` block is allocated when the store is created (contiguous, not filled), and
rows are written into it with ``os.pwrite`` at its file offset, not through HDF5. A failed
row write (a full disk) is therefore an ordinary ``OSError`` that leaves HDF5's own state
untouched: the writer raises one :class:`~extract.errors.OutputError` sentence, the file
closes cleanly and stays resumable. (A write that fails inside HDF5 leaves metadata that can
neither be flushed nor closed, and the process crashed with a segmentation fault at exit.)
Before a store is created or resumed, the free space of its folder is compared with the
bytes still to write.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from extract.errors import OutputError, UserError
from extract.io import replace_file
from extract.store.format import (
    LOCKING,
    SCHEMA_VERSION,
    STORE_FORMAT,
    _encode_attr,
    _h5_reason,
    first_difference,
    identity,
    partial_path,
    read_provenance,
)

log = logging.getLogger("extract.store.reader")  # the store's logger, as before the writer had its own module


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


# -- output ---------------------------------------------------------------------------------
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


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_store_output(out: str | Path) -> Path:
    """:func:`check_output_writable` for a feature store, which also refuses a file the toolkit did not write.

    An existing file under ``out`` that is not an HDF5 file, or an HDF5 file without the
    store's ``format`` attribute (an avatar cache, say), is never replaced, not even with
    ``overwrite``: the user named the wrong path, and deleting it is not the fix. An HDF5
    file that cannot be read is left to the caller (it may be a damaged store).
    """
    out = check_output_writable(out)
    if not out.is_file():
        return out
    try:
        with open(out, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
    except OSError:
        return out  # unreadable: the store check that follows names the problem
    if head != _HDF5_SIGNATURE and not h5py.is_hdf5(out):  # is_hdf5 also finds a superblock after a user block
        raise UserError(f"{out} exists and is not a feature store (it is not an HDF5 file), and extract never "
                        "replaces a file it did not write; choose another `out`.")
    try:
        with h5py.File(out, "r", locking=LOCKING) as h5:
            found = h5.attrs.get("format")
    except OSError:
        return out
    if isinstance(found, bytes):
        found = found.decode(errors="replace")
    if found != STORE_FORMAT:
        what = f"its format attribute is {found!r}" if found is not None else "it has no format attribute"
        raise UserError(f"{out} exists and is an HDF5 file but not a feature store ({what}, not {STORE_FORMAT!r}), "
                        "and extract never replaces a file it did not write; choose another `out`.")
    return out


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
        # rows go straight into the allocated /features block (module docstring)
        self._fd: int | None = None
        self._offset = self._features.id.get_offset()
        if self._offset is None:
            raise ValueError(f"{self.partial} has no allocated /features block")
        self._fd = os.open(self.partial, os.O_WRONLY)

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
        _check_free_space(out, int(provenance["n_rows"]) * int(provenance["feature_dim"]) * 2 + len(metadata) * 64)
        try:  # exclusive create: never truncate a file that another run has just created
            h5 = h5py.File(partial, "w-", locking=LOCKING)
        except OSError as exc:
            raise UserError(f"cannot create the feature store {partial} ({exc.__class__.__name__}); "
                            "check that no other run writes it and that the folder is writable.") from None
        try:
            _initialise(h5, metadata=metadata, attributes=attributes, provenance=provenance)
        except (OSError, RuntimeError) as exc:  # HDF5 could not write its metadata (full disk, file size limit)
            _abandon(h5, partial)
            raise OutputError(f"cannot create the feature store {partial} ({_h5_reason(exc)}); free some space or "
                              "choose another `out`, then run the command again.") from None
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
        if h5["features"].id.get_offset() is None:  # made by an earlier version and no row written yet
            h5.close()
            log.warning("the partial store %s holds no rows yet; starting the extraction over", partial)
            return None
        remaining = (int(found["n_rows"]) - int(found["rows_written"])) * int(found["feature_dim"]) * 2
        try:
            _check_free_space(out, remaining)
        except OutputError:
            h5.close()
            raise
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
        data = memoryview(np.ascontiguousarray(features, dtype="<f2").tobytes())
        position = self._offset + start * self.feature_dim * 2
        try:  # rows reach the file before the counter that vouches for them (kill safety)
            while data:
                written = os.pwrite(self._fd, data, position)
                data, position = data[written:], position + written
        except OSError as exc:
            raise self._write_error(start, exc) from None
        self._h5.attrs.modify("rows_written", np.int64(stop))
        self._h5.flush()
        self.rows_written = stop

    def _write_error(self, start: int, exc: OSError) -> OutputError:
        reason = ("no space left on device" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                  else (exc.strerror or exc.__class__.__name__).lower())
        return OutputError(f"cannot write rows {start}.. of the feature store {self.partial}: {reason}; free some "
                           f"space or choose another `out`, then rerun the same command to resume from row "
                           f"{self.rows_written}.")

    def finalize(self) -> Path:
        """Mark the store complete, close it and rename it to its final path."""
        if self.rows_written != self.n_rows:
            raise ValueError(f"cannot finalize {self.partial}: {self.rows_written} of {self.n_rows} rows written")
        self._h5.attrs.modify("complete", np.True_)
        self._h5.flush()
        self.close()
        replace_file(self.partial, self.out)  # fsyncs the file (rows and metadata) before the rename
        return self.out

    def close(self) -> None:
        """Close the partial file without finalising (it stays resumable)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _abandon(h5: h5py.File, partial: Path) -> None:
    """Close a file whose metadata HDF5 could not write, and delete it (it holds no row).

    HDF5 reports the same write error again from every handle it releases; those reports
    (printed by Python as ignored exceptions) say nothing new, so they are silenced here.
    """
    import gc
    import sys

    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        try:
            h5.close()
        except (OSError, RuntimeError, ValueError):
            pass
        del h5
        gc.collect()
    finally:
        sys.unraisablehook = hook
    partial.unlink(missing_ok=True)


def _check_free_space(out: Path, needed: int) -> None:
    """Refuse to start when the folder of ``out`` has fewer than ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        return  # unknown: the writes themselves will tell
    if free < needed:
        raise OutputError(f"the feature store {out} needs about {_size(needed)} more but {out.parent} has "
                          f"{_size(free)} free; free some space or choose another `out` (a rerun resumes from "
                          "the rows already written).")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


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
    # Contiguous and uncompressed: full reads at disk speed, no chunk decompression. Allocated
    # now (at a fixed offset, so rows are written there with os.pwrite) but never filled.
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    h5.create_dataset("features", shape=(n, d), dtype="<f2", dcpl=dcpl, fill_time="never")
    for key, value in provenance.items():
        h5.attrs[key] = _encode_attr(key, value)
    h5.attrs["attribute_names"] = json.dumps(list(attributes))
    h5.attrs["complete"] = np.False_
    h5.flush()
    h5.attrs["rows_written"] = np.int64(0)
    h5.flush()
