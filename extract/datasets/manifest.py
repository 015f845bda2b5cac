"""Generic CSV manifest adapter, plus the small helpers every real-data adapter shares.

A manifest is a CSV file inside (or beside) a dataset root::

    path,image_id,split,smiling,glasses
    imgs/a.png,a,train,1,0
    imgs/b.png,b,test,0,-1

- ``path`` (required): image path relative to the root; absolute paths and ``..`` are
  rejected, so a manifest can never read outside its root.
- ``image_id`` (optional): unique id; defaults to the path.
- ``split`` (optional): ``train``/``val``/``test``; when the column is absent every row is
  assigned by a seeded random split (``split_fractions``, ``seed``).
- every other column is a binary attribute: 0, 1 or -1 (unknown). Anything else is an error
  (recode it, e.g. -1/1 labels to 0/1, before writing the manifest).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from extract.datasets.base import Adapter, safe_join
from extract.errors import UserError

DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


# -- helpers shared by the real-data adapters --------------------------------------------
def column_name(text: str) -> str:
    """A column-safe name: runs of characters other than letters and digits become ``_``.

    ``"dining table"`` -> ``"dining_table"``, ``"East Asian"`` -> ``"East_Asian"``.
    """
    return re.sub(r"[^0-9A-Za-z]+", "_", str(text)).strip("_")


def check_fraction(value: float, *, name: str) -> float:
    """Check that ``value`` lies in [0, 1); the error names the option."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise UserError(f"{name}={value} is outside [0, 1); pass a fraction such as 0.1 (0 disables it).")
    return value


def check_split_fractions(fractions: Sequence[float]) -> np.ndarray:
    """Check (train, val, test) fractions: three non-negative numbers summing to 1."""
    arr = np.asarray(fractions, dtype=float)
    if arr.shape != (3,) or (arr < 0).any() or not np.isclose(arr.sum(), 1.0):
        raise UserError(
            f"split_fractions={tuple(fractions)} is invalid; pass three non-negative "
            "(train, val, test) fractions that sum to 1, e.g. (0.6, 0.2, 0.2)."
        )
    return arr


def seeded_split(n: int, *, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                 seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """Assign ``n`` rows to train/val/test at random, reproducibly.

    Parameters
    ----------
    n : int
        Number of rows.
    fractions : sequence of 3 floats
        Target (train, val, test) fractions; sizes are rounded per stratum, val and test
        first, and train takes the remainder.
    seed : int
        Seed of :func:`numpy.random.default_rng`; same seed and rows give the same split.
    strata : ndarray of shape (n,), optional
        Group labels; when given each group is split separately (a stratified split).

    Returns
    -------
    split : ndarray of shape (n,), dtype object
        ``"train"``, ``"val"`` or ``"test"`` per row.
    """
    frac = check_split_fractions(fractions)
    rng = np.random.default_rng(seed)
    split = np.full(n, "train", dtype=object)
    groups = [np.arange(n)] if strata is None else [
        np.flatnonzero(strata == g) for g in pd.unique(np.asarray(strata))]
    for rows in groups:
        order = rng.permutation(rows)
        n_val = int(round(frac[1] * len(rows)))
        n_test = int(round(frac[2] * len(rows)))
        split[order[:n_val]] = "val"
        split[order[n_val:n_val + n_test]] = "test"
    return split


def carve_validation(split: np.ndarray, *, val_fraction: float, seed: int) -> np.ndarray:
    """Move a seeded ``val_fraction`` of the ``"train"`` rows to ``"val"`` (new array).

    Used by datasets whose official files only have train and test parts (COCO, FairFace).
    The choice depends only on the row order, ``val_fraction`` and ``seed``.
    """
    split = np.asarray(split, dtype=object).copy()
    train = np.flatnonzero(split == "train")
    n_val = int(round(check_fraction(val_fraction, name="val_fraction") * len(train)))
    chosen = np.random.default_rng(seed).choice(train, size=n_val, replace=False)
    split[chosen] = "val"
    return split


def read_csv(adapter: Adapter, path: Path, *, required: Sequence[str], **read_options) -> pd.DataFrame:
    """Read a CSV of a dataset, turning every failure into the adapter's layout error."""
    if not path.is_file():
        raise adapter.layout_error(f"the file {path} is missing")
    try:
        frame = pd.read_csv(path, **read_options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise adapter.layout_error(f"the file {path} cannot be parsed as a table ({exc.__class__.__name__})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise adapter.layout_error(f"the file {path} lacks the column(s) {missing}")
    return frame


def require_dirs(adapter: Adapter, paths: pd.Series) -> None:
    """Check that the folders holding the images exist (one check per folder, not per image).

    Folders that escape the root raise the :func:`safe_join` error first.
    """
    for folder in sorted(paths.astype(str).str.rpartition("/")[0].unique()):
        if not safe_join(adapter.root, folder or ".").is_dir():
            raise adapter.layout_error(f"the image folder {adapter.root / folder} is missing")


# -- the manifest adapter ----------------------------------------------------------------
class ManifestAdapter(Adapter):
    """Any image collection described by a CSV manifest (see the module docstring).

    Parameters
    ----------
    root : path
        Dataset root; image paths in the manifest are relative to it.
    manifest : path, default "manifest.csv"
        The CSV file, relative to ``root`` unless absolute.
    split_fractions : (train, val, test), default (0.6, 0.2, 0.2)
        Used only when the manifest has no ``split`` column.
    seed : int, default 0
        Seed of that random split.
    """

    name = "manifest"
    EXPECTED_LAYOUT = ("<root>/manifest.csv (or the file of the option manifest=FILE) with a 'path' column of image paths "
                       "relative to the root, optional 'image_id' and 'split' (train/val/test) columns "
                       "and binary 0/1/-1 attribute columns")

    def __init__(self, root, *, manifest: str | Path = "manifest.csv",
                 split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, seed: int = 0):
        super().__init__(root)
        self.manifest = Path(manifest)
        self.split_fractions = tuple(check_split_fractions(split_fractions))
        self.seed = seed

    def _build_metadata(self) -> pd.DataFrame:
        file = self.manifest if self.manifest.is_absolute() else self.root / self.manifest
        # ids, paths and splits stay text ("007" is not 7); attribute columns are parsed
        # as numbers and checked by the base validation.
        text = {"path": str, "image_id": str, "split": str}
        frame = read_csv(self, file, required=["path"], dtype=text, keep_default_na=False)
        empty = frame["path"].str.strip() == ""
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            named = f" (image_id {frame['image_id'].iat[row]!r})" if "image_id" in frame.columns else ""
            raise UserError(
                f"the manifest {file} has an empty 'path' cell in row {row + 1} after the header{named}; "
                "fill in the image path relative to the root or remove the row."
            )
        if "image_id" not in frame.columns:
            frame["image_id"] = frame["path"]
        if "split" not in frame.columns:
            frame["split"] = seeded_split(len(frame), fractions=self.split_fractions, seed=self.seed)
        else:
            frame["split"] = frame["split"].str.strip().str.lower()
        attributes = [c for c in frame.columns if c not in ("image_id", "path", "split")]
        return frame[["image_id", "path", "split", *attributes]]


__all__ = ["ManifestAdapter", "carve_validation", "check_fraction", "check_split_fractions", "column_name",
           "read_csv", "require_dirs", "seeded_split"]
