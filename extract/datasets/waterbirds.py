"""Waterbirds (Sagawa et al., 2020) from its ``metadata.csv`` (never downloaded).

Layout::

    <root>/metadata.csv   # img_id,img_filename,y,split,place,place_filename
    <root>/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg ...

Columns: ``waterbird`` (the file's ``y``: 1 = waterbird, 0 = landbird) and
``water_background`` (the file's ``place``: 1 = water, 0 = land). Splits: 0/1/2 ->
``"train"``/``"val"``/``"test"``, as released. ``image_id`` is ``img_id`` as text and
``path`` is ``img_filename``; rows follow the file. ``place_filename`` (the Places image the
bird was pasted on) is ignored.
"""

from __future__ import annotations

import pandas as pd

from extract.datasets.base import Adapter
from extract.datasets.manifest import read_csv, require_dirs

METADATA_FILE = "metadata.csv"
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}


class WaterbirdsAdapter(Adapter):
    """Waterbirds: CUB birds pasted on Places backgrounds, bird type vs background.

    Parameters
    ----------
    root : path
        The ``waterbird_complete95_forest2water2`` folder (or any folder laid out like it).
    """

    name = "waterbirds"
    EXPECTED_LAYOUT = (f"<root>/{METADATA_FILE} with columns img_id,img_filename,y,split,place "
                       "(split 0/1/2) and the images at <root>/<img_filename>")

    def _build_metadata(self) -> pd.DataFrame:
        frame = read_csv(self, self.root / METADATA_FILE, required=["img_id", "img_filename", "y", "split", "place"],
                         dtype=str)
        split = frame["split"].str.strip().map(SPLIT_CODES)
        if split.isna().any():
            bad = frame["split"][split.isna()].iat[0]
            raise self.layout_error(f"{METADATA_FILE} has the split value {bad!r} (expected 0, 1 or 2)")
        paths = frame["img_filename"].str.strip()
        require_dirs(self, paths)
        # y and place stay text here; the base validation parses them and rejects
        # anything but 0/1 with a message naming the column.
        return pd.DataFrame({"image_id": frame["img_id"].str.strip(), "path": paths, "split": split,
                             "waterbird": frame["y"].str.strip(), "water_background": frame["place"].str.strip()})
