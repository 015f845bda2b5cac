"""FairFace from its label CSVs (never downloaded).

Layout::

    <root>/fairface_label_train.csv   # file,age,gender,race,service_test
    <root>/fairface_label_val.csv     # e.g. "train/1.jpg,50-59,Male,East Asian,True"
    <root>/train/1.jpg ...  <root>/val/1.jpg ...

Columns (all binary, -1 where the label is missing):

- ``male``: 1 for ``Male``, 0 for ``Female``.
- ``race_<name>``: one-hot over the race labels present in the files, names made
  column-safe (``race_White``, ``race_Black``, ``race_East_Asian``, ``race_Latino_Hispanic``,
  ...), sorted by name.
- ``age_<lo>_<hi>``: one-hot over FairFace's age bins (``age_0_2``, ``age_3_9``, ...,
  ``age_70_plus`` for "more than 70"), plus one threshold column ``age_<T>_plus`` = 1 when
  the bin's lower bound is at least ``age_threshold`` (default 40, so ``age_40_plus``);
  the threshold must be a bin boundary so that the column is exact.

``service_test`` is ignored. Splits: ``fairface_label_train.csv`` -> ``"train"``, except a
seeded ``val_fraction`` (default 0.1) -> ``"val"``; ``fairface_label_val.csv`` -> ``"test"``.
``image_id`` and ``path`` are the ``file`` field; rows follow the train file, then the val file.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from extract.datasets.base import Adapter
from extract.datasets.manifest import carve_validation, check_fraction, column_name, read_csv, require_dirs
from extract.errors import UserError

LABEL_FILES = {"train": "fairface_label_train.csv", "test": "fairface_label_val.csv"}
REQUIRED = ("file", "age", "gender", "race")
AGE_BIN = re.compile(r"^\s*(?:(\d+)\s*-\s*(\d+)|more than (\d+))\s*$")


def parse_age_bin(label: str) -> tuple[int, int | None]:
    """``"10-19"`` -> ``(10, 19)``; ``"more than 70"`` -> ``(70, None)``; else ValueError."""
    match = AGE_BIN.match(str(label))
    if match is None:
        raise ValueError(label)
    low, high, open_low = match.groups()
    return (int(open_low), None) if open_low is not None else (int(low), int(high))


def one_hot(values: pd.Series, *, prefix: str, order: list, names: list[str]) -> dict[str, np.ndarray]:
    """Binary columns ``prefix + name`` for each value in ``order``; missing values give -1."""
    codes = pd.Categorical(values, categories=order).codes  # -1 where missing
    columns = {}
    for k, name in enumerate(names):
        col = (codes == k).astype(np.int8)
        col[codes < 0] = -1
        columns[prefix + name] = col
    return columns


class FairFaceAdapter(Adapter):
    """FairFace (faces balanced over 7 race groups; gender, race and age labels).

    Parameters
    ----------
    root : path
        Folder holding the two label CSVs and the ``train/`` and ``val/`` image folders.
    age_threshold : int or None, default 40
        Lower age bound of the ``age_<T>_plus`` column (a bin boundary); None omits it.
    val_fraction : float in [0, 1), default 0.1
        Share of the official train part moved to ``"val"``; 0 keeps it all in ``"train"``.
    seed : int, default 0
        Seed of that choice.
    """

    name = "fairface"
    EXPECTED_LAYOUT = ("<root>/fairface_label_train.csv and <root>/fairface_label_val.csv "
                       "(columns file,age,gender,race) with the images in <root>/train/ and <root>/val/")

    def __init__(self, root, *, age_threshold: int | None = 40, val_fraction: float = 0.1, seed: int = 0):
        super().__init__(root)
        self.age_threshold = age_threshold
        self.val_fraction = check_fraction(val_fraction, name="val_fraction")
        self.seed = seed

    def _build_metadata(self) -> pd.DataFrame:
        parts = []
        for split, filename in LABEL_FILES.items():
            frame = read_csv(self, self.root / filename, required=REQUIRED, dtype=str)
            parts.append(frame.assign(split=split))
        labels = pd.concat(parts, ignore_index=True)
        labels["file"] = labels["file"].str.strip()
        require_dirs(self, labels["file"])
        split = carve_validation(labels["split"].to_numpy(), val_fraction=self.val_fraction, seed=self.seed)
        gender = labels["gender"].str.strip().map({"Male": 1, "Female": 0})
        columns = {"image_id": labels["file"], "path": labels["file"], "split": split,
                   "male": gender.fillna(-1).astype(np.int8).to_numpy()}
        columns |= self._race_columns(labels["race"])
        columns |= self._age_columns(labels["age"])
        return pd.DataFrame(columns)

    def _race_columns(self, race: pd.Series) -> dict[str, np.ndarray]:
        race = race.str.strip()
        order = sorted(race.dropna().unique())
        names = [column_name(r) for r in order]
        if len(set(names)) != len(names):
            raise self.layout_error(f"the race labels {order} clash once made column-safe")
        return one_hot(race, prefix="race_", order=order, names=names)

    def _age_columns(self, age: pd.Series) -> dict[str, np.ndarray]:
        age = age.str.strip()
        labels = age.dropna().unique()
        try:
            bins = {label: parse_age_bin(label) for label in labels}
        except ValueError as exc:
            raise self.layout_error(f"the age label {exc.args[0]!r} is not a FairFace age bin like '20-29'") from None
        order = sorted(labels, key=lambda label: bins[label][0])
        names = [f"{lo}_plus" if hi is None else f"{lo}_{hi}" for lo, hi in (bins[label] for label in order)]
        columns = one_hot(age, prefix="age_", order=order, names=names)
        if self.age_threshold is not None:
            straddling = [label for label, (lo, hi) in bins.items()
                          if lo < self.age_threshold and (hi is None or self.age_threshold <= hi)]
            if straddling or self.age_threshold <= 0:
                raise UserError(f"age_threshold={self.age_threshold} falls inside the age bin(s) {straddling}; "
                                "choose a bin boundary such as 20, 40 or 60, or None.")
            low = age.map({label: lo for label, (lo, _) in bins.items()})
            above = np.where(low.isna(), -1, low >= self.age_threshold).astype(np.int8)
            columns[f"age_{self.age_threshold}_plus"] = above
        return columns
