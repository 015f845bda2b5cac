"""GeoDE from its ``index.csv`` (never downloaded).

Layout::

    <root>/index.csv            # columns file_path,object,region (others, e.g. ip_country, are kept
                                # as descriptors); e.g. "bag/Africa_bag_0001.jpg,bag,Africa"
    <root>/images/<file_path>   # the images

GeoDE has 40 objects photographed in 6 regions. Columns (binary):

- one column per object present, named column-safe (``hand soap`` -> ``hand_soap``), sorted
  by name; each image has exactly one object, so these form a 40-way one-hot target that a
  multi-label model (one sigmoid per object, as in Wang & Russakovsky's GeoDE base) learns.
- ``region_<name>``: one-hot over the regions present (``region_Africa``, ...), -1 when missing.

:meth:`GeodeAdapter.descriptors` gives the text values (object, region and every other
column of the file) row-aligned with the metadata. GeoDE has no official split: rows are
assigned by a seeded split stratified by object, default 64/16/20 (Wang & Russakovsky's
80/20 train/test, then 80/20 train/val). Rows follow the file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from extract.datasets.base import Adapter
from extract.datasets.fairface import one_hot
from extract.datasets.manifest import check_split_fractions, column_name, read_csv, require_dirs, seeded_split

INDEX_FILE = "index.csv"
REQUIRED = ("file_path", "object", "region")
DEFAULT_SPLIT_FRACTIONS = (0.64, 0.16, 0.2)


class GeodeAdapter(Adapter):
    """GeoDE (geographically diverse objects; see the module docstring).

    Parameters
    ----------
    root : path
        Folder holding ``index.csv`` and the image folder.
    image_dir : str, default "images"
        Image folder relative to the root; ``file_path`` is relative to it.
    split_fractions : (train, val, test), default (0.64, 0.16, 0.2)
        Fractions of the seeded split, stratified by object.
    seed : int, default 0
        Seed of that split.
    """

    name = "geode"
    EXPECTED_LAYOUT = (f"<root>/{INDEX_FILE} (columns file_path, object, region) with the images as "
                       "<root>/images/<file_path>")

    def __init__(self, root, *, image_dir: str = "images",
                 split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, seed: int = 0):
        super().__init__(root)
        self.image_dir = str(image_dir).strip("/") or "."
        self.split_fractions = tuple(check_split_fractions(split_fractions))
        self.seed = seed
        self._descriptors: pd.DataFrame | None = None

    def _build_metadata(self) -> pd.DataFrame:
        index = read_csv(self, self.root / INDEX_FILE, required=REQUIRED, dtype=str, keep_default_na=False)
        index = index.apply(lambda col: col.str.strip())
        if (index["file_path"] == "").any() or (index["object"] == "").any():
            row = int(np.flatnonzero((index["file_path"] == "") | (index["object"] == ""))[0])
            raise self.layout_error(f"row {row + 2} of {self.root / INDEX_FILE} has an empty file_path or object")
        paths = self.image_dir + "/" + index["file_path"].str.replace("\\", "/", regex=False).str.lstrip("/")
        require_dirs(self, paths)
        objects = sorted(index["object"].unique())
        names = [column_name(o) for o in objects]
        if len(set(names)) != len(names) or {"image_id", "path", "split"} & set(names) or any(
                n.startswith("region_") for n in names):
            raise self.layout_error(f"the objects of {INDEX_FILE} clash once made column-safe ({names})")
        region = index["region"].where(index["region"] != "", None)
        regions = sorted(region.dropna().unique())
        out = {"image_id": index["file_path"], "path": paths,
               "split": seeded_split(len(index), fractions=self.split_fractions, seed=self.seed,
                                     strata=index["object"].to_numpy())}
        out |= one_hot(index["object"], prefix="", order=objects, names=names)
        out |= one_hot(region, prefix="region_", order=regions, names=[column_name(r) for r in regions])
        self._descriptors = index.drop(columns="file_path").assign(region=region).reset_index(drop=True)
        self._descriptors.insert(0, "image_id", index["file_path"].to_numpy())
        return pd.DataFrame(out)

    def descriptors(self) -> pd.DataFrame:
        """Text values per row: image_id, object, region and the file's other columns."""
        self.metadata()
        return self._descriptors

    @property
    def label_columns(self) -> list[str]:
        """The object columns (the 40-way target set)."""
        return [c for c in self.attributes if not c.startswith("region_")]


__all__ = ["GeodeAdapter"]
