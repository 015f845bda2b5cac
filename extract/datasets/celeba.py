"""CelebA from its official annotation files (never downloaded).

Layout::

    <root>/list_attr_celeba.txt      # line 1: image count; line 2: the 40 attribute names;
                                     # then "000001.jpg -1  1  1 ..." (whitespace separated)
    <root>/list_eval_partition.txt   # "000001.jpg 0" with 0/1/2 = train/val/test
    <root>/img_align_celeba/000001.jpg ...

Attributes keep CelebA's names (``Male``, ``Wearing_Hat``, ``Bangs``, ...) and map
-1 -> 0, 1 -> 1, so ``Male == 0`` means female. Splits are the official partitions:
0 -> ``"train"`` (162,770), 1 -> ``"val"`` (19,867), 2 -> ``"test"`` (19,962). Note that
Wang & Russakovsky test on partition 1 (``"val"``) and never use partition 2. Row order is
the order of ``list_attr_celeba.txt``; ``image_id`` is the file name (``"000001.jpg"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from extract.datasets.base import Adapter
from extract.datasets.manifest import read_csv
from extract.errors import UserError

ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
PARTITION_TO_SPLIT = {0: "train", 1: "val", 2: "test"}


class CelebAAdapter(Adapter):
    """CelebA (aligned and cropped faces, 40 binary attributes).

    Parameters
    ----------
    root : path
        Folder holding the two annotation files and ``img_align_celeba/``.
    attributes : list of str, optional
        Keep only these attribute columns (CelebA spelling); default all 40.
    """

    name = "celeba"
    EXPECTED_LAYOUT = (f"<root>/{ATTRIBUTE_FILE} (count line, 40 attribute names, then 'file -1/1 ...' rows), "
                       f"<root>/{PARTITION_FILE} ('file 0|1|2' rows) and the images in <root>/{IMAGE_DIR}/")

    def __init__(self, root, *, attributes: list[str] | None = None):
        super().__init__(root)
        self.selected = None if attributes is None else list(attributes)

    def _build_metadata(self) -> pd.DataFrame:
        if not (self.root / IMAGE_DIR).is_dir():
            raise self.layout_error(f"the image folder {self.root / IMAGE_DIR} is missing")
        attrs = self._read_attributes()
        split = self._read_splits(attrs["image_id"])
        names = [c for c in attrs.columns if c != "image_id"]
        if self.selected is not None:
            unknown = sorted(set(self.selected) - set(names))
            if unknown:
                raise UserError(f"the attribute(s) {unknown} are not in {ATTRIBUTE_FILE}; choose from {names}.")
            names = self.selected
        meta = pd.DataFrame({"image_id": attrs["image_id"], "path": IMAGE_DIR + "/" + attrs["image_id"],
                             "split": split})
        # -1 -> 0 and 1 -> 1 in one vectorised step over the whole 202,599 x 40 block.
        binary = ((attrs[names].to_numpy() + 1) // 2).astype(np.int8)
        return pd.concat([meta, pd.DataFrame(binary, columns=names)], axis=1)

    def _read_attributes(self) -> pd.DataFrame:
        path = self.root / ATTRIBUTE_FILE
        if not path.is_file():
            raise self.layout_error(f"the file {path} is missing")
        with open(path, encoding="utf-8", errors="replace") as handle:
            count_line, names_line = handle.readline(), handle.readline()
        names = names_line.split()
        try:
            count = int(count_line.strip())
        except ValueError:
            raise self.layout_error(f"the first line of {path} is not the image count") from None
        if not names or len(set(names)) != len(names):
            raise self.layout_error(f"the second line of {path} is not a list of distinct attribute names")
        attrs = read_csv(self, path, required=[], sep=r"\s+", skiprows=2, header=None,
                         names=["image_id", *names], dtype={"image_id": str})
        values = attrs[names]
        if len(attrs) != count:
            raise self.layout_error(f"{path} announces {count} images but lists {len(attrs)}")
        if not all(dtype.kind == "i" for dtype in values.dtypes) or not (np.abs(values.to_numpy()) == 1).all():
            raise self.layout_error(f"{path} has attribute values other than -1 and 1 (or rows of the wrong length)")
        return attrs

    def _read_splits(self, image_ids: pd.Series) -> np.ndarray:
        path = self.root / PARTITION_FILE
        parts = read_csv(self, path, required=[], sep=r"\s+", header=None, names=["image_id", "partition"],
                         dtype={"image_id": str})
        if not parts["partition"].isin(list(PARTITION_TO_SPLIT)).all():
            raise self.layout_error(f"{path} has partition values other than 0, 1 and 2")
        if len(parts) != len(image_ids) or not (parts["image_id"].to_numpy() == image_ids.to_numpy()).all():
            # Not the same order: align by name, and refuse lists that differ.
            lookup = parts.drop_duplicates("image_id").set_index("image_id")["partition"]
            if len(lookup) != len(parts) or len(parts) != len(image_ids) or not image_ids.isin(lookup.index).all():
                raise self.layout_error(f"{PARTITION_FILE} and {ATTRIBUTE_FILE} list different images")
            parts = lookup.loc[image_ids].reset_index()
        return parts["partition"].map(PARTITION_TO_SPLIT).to_numpy(dtype=object)
