"""Image-folder adapter: one sub-folder per class, like torchvision's ``ImageFolder``.

Layout::

    <root>/<class>/<image>.png|.jpg|.jpeg          (default)
    <root>/<split>/<class>/<image>...              (split_folders=True; split in train/val/test)

Columns: one binary column per class folder (one-hot: 1 for images in that folder, 0
otherwise), named after the folder made column-safe (``"golden retriever"`` ->
``golden_retriever``). With two classes this gives two complementary columns; pick either
as the target. Class folders and files are read in sorted order, so the row order is
deterministic; hidden entries (``.name``) are skipped and extensions match case-insensitively.
Without split folders the split is a seeded random split stratified by class
(``split_fractions``, ``seed``). ``image_id`` is the path relative to the root.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from extract.datasets.base import SPLITS, Adapter
from extract.datasets.manifest import DEFAULT_SPLIT_FRACTIONS, check_split_fractions, column_name, seeded_split

DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageFolderAdapter(Adapter):
    """Images sorted into class folders (see the module docstring).

    Parameters
    ----------
    root : path
        Folder of class folders (or of split folders of class folders).
    split_folders : bool, default False
        True when the root holds ``train``/``val``/``test`` folders, each of class folders.
    split_fractions : (train, val, test), default (0.6, 0.2, 0.2)
        Random split per class, used when ``split_folders`` is False.
    seed : int, default 0
        Seed of that split.
    extensions : sequence of str, default (".png", ".jpg", ".jpeg")
        File endings counted as images (case-insensitive).
    """

    name = "folder"
    EXPECTED_LAYOUT = ("<root>/<class>/<image>.png|.jpg|.jpeg, one sub-folder per class "
                       "(or <root>/<split>/<class>/<image> with split_folders=True)")

    def __init__(self, root, *, split_folders: bool = False,
                 split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, seed: int = 0,
                 extensions: Sequence[str] = DEFAULT_EXTENSIONS):
        super().__init__(root)
        self.split_folders = bool(split_folders)
        self.split_fractions = tuple(check_split_fractions(split_fractions))
        self.seed = seed
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)

    def _build_metadata(self) -> pd.DataFrame:
        if not self.root.is_dir():
            raise self.layout_error(f"the root {self.root} is not a folder")
        if self.split_folders:
            splits = [s for s in SPLITS if (self.root / s).is_dir()]
            if not splits:
                raise self.layout_error(f"no train/val/test folder found in {self.root}")
            files = [(s, c, f) for s in splits for c, f in self._scan(self.root / s, prefix=f"{s}/")]
        else:
            files = [("", c, f) for c, f in self._scan(self.root, prefix="")]
        if not files:
            kinds = "/".join(self.extensions)
            raise self.layout_error(f"no {kinds} image was found in class folders under {self.root}")
        split, classes, paths = (np.array(x, dtype=object) for x in zip(*files))
        names = sorted(set(classes))
        columns = [column_name(c) for c in names]
        if len(set(columns)) != len(columns) or {"image_id", "path", "split"} & set(columns) or "" in columns:
            raise self.layout_error(f"the class folder names {names} clash or are empty once made column-safe")
        if not self.split_folders:
            split = seeded_split(len(paths), fractions=self.split_fractions, seed=self.seed, strata=classes)
        meta = pd.DataFrame({"image_id": paths, "path": paths, "split": split})
        one_hot = (classes[:, None] == np.array(names, dtype=object)[None, :]).astype(np.int8)
        return pd.concat([meta, pd.DataFrame(one_hot, columns=columns)], axis=1)

    def _scan(self, folder, *, prefix: str) -> list[tuple[str, str]]:
        """(class name, relative path) of every image in the class folders of ``folder``."""
        found = []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for file in sorted(class_dir.iterdir()):
                if file.is_file() and not file.name.startswith(".") and file.suffix.lower() in self.extensions:
                    found.append((class_dir.name, f"{prefix}{class_dir.name}/{file.name}"))
        return found
