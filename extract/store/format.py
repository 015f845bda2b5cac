"""The feature store's on-disk format, shared by the writer and the reader.

Layout constants, the provenance attributes (encoding, decoding, the identity two runs
must share), the ``<out>.partial`` path and opening a file with one-sentence errors.
See :mod:`extract.store.reader` for the layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from extract.errors import UserError

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


# -- provenance -----------------------------------------------------------------------------
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


# -- paths and files ------------------------------------------------------------------------
def partial_path(out: str | Path) -> Path:
    """Where a store is written until it is complete: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


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
