"""The dataset adapter contract shared by every dataset.

An adapter reads a local copy of a dataset (it never downloads) and exposes:

- ``metadata()``: a :class:`pandas.DataFrame`, one row per image, with columns
  ``image_id`` (str, unique), ``path`` (str, relative to ``root``, never escaping it),
  ``split`` (``"train"``, ``"val"`` or ``"test"``) and binary attribute columns
  (int8: 0/1, -1 = unknown). Row order is the dataset's canonical order and is the row
  order of every feature store extracted from it.
- ``open_image(i)``: the RGB :class:`PIL.Image.Image` of row ``i`` (a position, not an id).
- ``manifest_hash()``: sha256 of the metadata table, recorded in stores as provenance.

A missing or malformed root raises :class:`extract.errors.UserError` with one sentence
that lists the expected layout (``EXPECTED_LAYOUT``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from extract.errors import UserError

SPLITS = ("train", "val", "test")
BASE_COLUMNS = ("image_id", "path", "split")


class Adapter:
    """Base class of dataset adapters.

    Subclasses set ``name`` and ``EXPECTED_LAYOUT`` and implement :meth:`_build_metadata`.
    The metadata table is built once, validated and cached.
    """

    name: str = "base"
    EXPECTED_LAYOUT: str = ""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise self.layout_error(f"the dataset root {self.root} does not exist")
        self._metadata: pd.DataFrame | None = None

    # -- to implement -------------------------------------------------------------------
    def _build_metadata(self) -> pd.DataFrame:
        raise NotImplementedError

    # -- contract -----------------------------------------------------------------------
    def metadata(self) -> pd.DataFrame:
        """The validated metadata table (a copy-safe cached DataFrame)."""
        if self._metadata is None:
            self._metadata = validate_metadata(self._build_metadata(), dataset=self.name, root=self.root)
        return self._metadata

    def __len__(self) -> int:
        return len(self.metadata())

    @property
    def attributes(self) -> list[str]:
        """Names of the binary attribute columns."""
        return [c for c in self.metadata().columns if c not in BASE_COLUMNS]

    def image_path(self, i: int) -> Path:
        """Absolute path of row ``i``, checked to stay inside the root."""
        return safe_join(self.root, self.metadata()["path"].iat[i])

    def open_image(self, i: int) -> Image.Image:
        """Decode row ``i`` as RGB; a missing or corrupt file is a :class:`UserError`."""
        return load_rgb(self.image_path(i))

    def manifest_hash(self) -> str:
        """sha256 of the metadata table (ids, paths, splits and attributes, in order)."""
        return hash_frame(self.metadata())

    def layout_error(self, problem: str) -> UserError:
        """A one-sentence error naming the problem and the expected layout."""
        return UserError(
            f"{problem}; the {self.name} adapter expects {self.EXPECTED_LAYOUT} "
            "(adapters never download: point `root` at a local copy)."
        )


#: Integer grayscale modes whose values span 0..65535 (16-bit PNG and TIFF files). Pillow's own
#: conversion to RGB clips them at 255, which turns almost every pixel white.
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image to 8-bit RGB, scaling 16-bit grayscale to 0..255.

    16-bit grayscale (``I;16`` and relatives, and ``I``, which older Pillow versions
    use for 16-bit PNGs) is divided by 257 and rounded, so 65535 maps to 255 and the
    image keeps its contrast; every other mode uses Pillow's conversion.
    """
    if img.mode in WIDE_GRAY_MODES:
        wide = np.asarray(img, dtype=np.float64)
        gray = np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


def load_rgb(path: Path) -> Image.Image:
    """Open an image file as RGB, turning I/O and decode failures into one sentence."""
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except FileNotFoundError:
        raise UserError(f"image file {path} is missing; restore it or remove its row from the dataset.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UserError(
            f"image file {path} is corrupt or not an image ({exc.__class__.__name__}); "
            "replace it or remove its row from the dataset."
        ) from None


def safe_join(root: Path, relative: str) -> Path:
    """Join ``relative`` to ``root``, refusing paths that escape the root.

    The text is checked first (no absolute path, no ``..``), then the resolved path: a
    symbolic link inside the root that leads outside it (to a file or a folder) is refused
    too. Links that stay inside the root are followed.
    """
    rel = Path(str(relative).replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise UserError(
            f"manifest path {relative!r} escapes the dataset root {root}; "
            "paths must be relative and stay inside the root."
        )
    joined = root / rel
    real_root, real = root.resolve(), joined.resolve()
    if real != real_root and real_root not in real.parents:
        raise UserError(
            f"image path {relative!r} leads outside the dataset root {root} through a symbolic link "
            f"(to {real}); copy the file into the root or remove its row from the dataset."
        )
    return joined


def validate_metadata(meta: pd.DataFrame, *, dataset: str, root: Path | None = None) -> pd.DataFrame:
    """Check the metadata contract and normalise dtypes; return a new frame.

    ``root`` (the dataset root) only names the folder in the error for escaping paths.
    """
    missing = [c for c in BASE_COLUMNS if c not in meta.columns]
    if missing:
        raise UserError(f"the {dataset} metadata lacks the column(s) {missing}; every adapter must provide {list(BASE_COLUMNS)}.")
    if len(meta) == 0:
        raise UserError(f"the {dataset} dataset has no images; check the root and the manifest.")
    meta = meta.reset_index(drop=True).copy()
    meta["image_id"] = meta["image_id"].astype(str)
    meta["path"] = meta["path"].astype(str)
    meta["split"] = meta["split"].astype(str)
    empty = meta["path"].str.strip() == ""
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise UserError(
            f"row {row} (image_id {meta['image_id'].iat[row]!r}) of the {dataset} metadata has an empty "
            "'path' cell; fill in the image path or remove the row."
        )
    dup = meta["image_id"][meta["image_id"].duplicated()]
    if len(dup):
        raise UserError(f"the {dataset} metadata repeats image_id {dup.iat[0]!r}; image ids must be unique.")
    bad_split = sorted(set(meta["split"]) - set(SPLITS))
    if bad_split:
        raise UserError(f"the {dataset} metadata has unknown split value(s) {bad_split}; use {list(SPLITS)}.")
    # Vectorised: absolute paths or a ".." component escape the root.
    escaping = meta["path"].str.startswith(("/", "\\")) | meta["path"].str.contains(r"(?:^|[/\\])\.\.(?:[/\\]|$)")
    if escaping.any():
        safe_join(Path(root or "<root>"), meta["path"][escaping].iat[0])  # raises with the message
    for col in meta.columns:
        if col in BASE_COLUMNS:
            continue
        values = pd.to_numeric(meta[col], errors="coerce")
        if values.isna().any() or not values.isin((-1, 0, 1)).all():
            raise UserError(
                f"attribute column {col!r} of {dataset} is not binary (values must be 0, 1 or -1 for unknown); "
                "recode it or leave it out."
            )
        meta[col] = values.astype(np.int8)
    return meta


def hash_frame(meta: pd.DataFrame) -> str:
    """Deterministic sha256 of a metadata frame (column names, then values, in order)."""
    h = hashlib.sha256()
    for col in meta.columns:
        h.update(col.encode())
        h.update(b"\0")
        values = meta[col].to_numpy()
        if values.dtype.kind in "iub":
            h.update(np.ascontiguousarray(values.astype(np.int64)).tobytes())
        else:
            h.update("\n".join(map(str, values)).encode())
        h.update(b"\1")
    return h.hexdigest()
