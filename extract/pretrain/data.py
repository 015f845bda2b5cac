"""Data side of pretraining: row selection and checks, the val carve, images in memory, hashes.

See :mod:`extract.pretrain.train` for the recipe these serve.
"""

from __future__ import annotations

import difflib
import hashlib

import numpy as np
import torch

from extract.backbones import Preprocess
from extract.datasets.base import Adapter
from extract.errors import UserError
from extract.extraction import prepare_uint8

STREAM_VAL_SPLIT = 1  # seed stream of the val carve (the training order uses its own)


def select_rows(adapter: Adapter, rows, attributes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Checked row positions and their labels.

    Returns
    -------
    rows : ndarray of shape (n,), int64
    labels : ndarray of shape (n, len(attributes)), float32, 0/1
    """
    meta = adapter.metadata()
    if not attributes:
        raise UserError("no pretraining attribute given; name at least one with `attributes` (e.g. dark_skin).")
    if len(set(attributes)) != len(attributes):
        raise UserError(f"the pretraining attributes {attributes} repeat a name; give each attribute once.")
    for name in attributes:
        if name not in adapter.attributes:
            close = difflib.get_close_matches(name, adapter.attributes, n=2)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UserError(f"unknown attribute {name!r} for the {adapter.name} dataset; {hint}choose from {adapter.attributes}.")
    positions = check_positions(len(meta), rows)
    labels = meta[attributes].to_numpy()[positions]
    for j, name in enumerate(attributes):
        values = set(np.unique(labels[:, j]).tolist())
        if -1 in values:
            raise UserError(f"attribute {name!r} is unknown (-1) for some of the rows; pass rows= without them.")
        if len(values) < 2:
            raise UserError(f"attribute {name!r} has a single class ({values.pop()}) in the pretraining rows; pick another attribute or more rows.")
    return positions, labels.astype(np.float32)


def check_positions(n_rows: int, rows) -> np.ndarray:
    """``rows`` (default: every row) as checked int64 positions: 1-d, at least 2, distinct, in range."""
    positions = np.arange(n_rows) if rows is None else np.asarray(rows)
    if positions.dtype == bool or positions.ndim != 1 or positions.dtype.kind not in "iu":
        raise UserError("rows must be a 1-d array of integer row positions; convert a mask with np.flatnonzero(mask).")
    if len(positions) < 2 or positions.min() < 0 or positions.max() >= n_rows or len(np.unique(positions)) != len(positions):
        raise UserError(f"rows must be at least 2 distinct positions in [0, {n_rows}); check the row selection.")
    return positions.astype(np.int64)


def split_train_val(n: int, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded carve of ``range(n)`` into sorted train and val positions (val may be empty)."""
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and not 1 <= n_val <= n - 2:
        raise UserError(f"val_fraction {val_fraction} leaves no usable train or val rows out of {n}; change it or use more rows.")
    order = np.random.default_rng([seed, STREAM_VAL_SPLIT]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_images(adapter: Adapter, rows: np.ndarray, image_size: int | None) -> torch.Tensor:
    """Decode ``rows`` once into a uint8 tensor (n, 3, S, S), resized and centre-cropped to
    ``image_size`` (default: the shorter side of the first image)."""
    if hasattr(adapter, "read_images"):
        images = torch.from_numpy(_writable(adapter.read_images(rows))).permute(0, 3, 1, 2)
        size = image_size or min(images.shape[-2:])
        return prepare_uint8(images, Preprocess(resize=size, crop=size))
    first = np.asarray(adapter.open_image(int(rows[0])))
    size = image_size or min(first.shape[:2])
    prep = Preprocess(resize=size, crop=size)
    out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
    for k, i in enumerate(rows):
        out[k] = prepare_uint8(torch.from_numpy(_writable(adapter.open_image(int(i)))).permute(2, 0, 1), prep)
    return out


def _writable(image) -> np.ndarray:
    """``image`` (an array or a PIL image) as a C-contiguous array torch may wrap: copied when it is
    read-only (``np.asarray`` of a PIL image is), as ``torch.from_numpy`` warns on a read-only array."""
    return np.require(image, requirements=("C", "W"))


def sha256_rows(rows: np.ndarray) -> str:
    """sha256 of the row positions as little-endian int64 (order matters)."""
    return hashlib.sha256(np.ascontiguousarray(rows, dtype="<i8").tobytes()).hexdigest()


def describe_labels(labels: np.ndarray, attributes: list[str], sensitive: np.ndarray | None) -> dict:
    """Base rate of each attribute and its phi coefficient with the sensitive attribute."""
    out = {}
    for j, name in enumerate(attributes):
        entry = {"base_rate": float(labels[:, j].mean())}
        if sensitive is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                phi = np.corrcoef(labels[:, j], sensitive)[0, 1]
            entry["phi_with_sensitive"] = None if not np.isfinite(phi) else float(phi)
        out[name] = entry
    return out


def describe_data(adapter, positions, labels, attributes, n_train, n_val) -> dict:
    meta = adapter.metadata()
    sensitive_name = getattr(adapter, "sensitive_attribute", None)
    sensitive = meta[sensitive_name].to_numpy()[positions] if sensitive_name in meta.columns else None
    data = {
        "dataset": adapter.name, "root": str(adapter.root), "manifest_hash": adapter.manifest_hash(),
        "rows_sha256": sha256_rows(positions), "n_rows": int(len(positions)), "n_train": int(n_train), "n_val": int(n_val),
        "sensitive_attribute": sensitive_name, "labels": describe_labels(labels, attributes, sensitive),
    }
    if getattr(adapter, "generator", None):
        gen = adapter.generator
        data["generator"] = {k: gen[k] for k in ("n", "size", "seed", "preset", "sensitive_rate") if k in gen}
    return data
