"""Dollar Street from ``metadata_full_dollar_street.json`` (never downloaded).

Layout::

    <root>/metadata_full_dollar_street.json   # a JSON list of records, one per image:
                                              # {"id": "5d4be...", "label": "toothbrushes",
                                              #  "country": "India", "region": "Asia",
                                              #  "income": 147.0, "url": ..., "lat": ..., "lng": ...}
    <root>/images/<id>.jpg                    # the images, named by their id

Only images whose topic (``label``) is in the class map are kept, in file order. The class
map is data (default ``data/geography/dollarstreet-coco.toml``: Wang & Russakovsky's 15
topics -> COCO classes, e.g. ``sofas -> couch``). Columns:

- one column per class of the label space (default COCO's 80 object classes,
  ``data/geography/coco-classes.txt``, named like the COCO adapter's object columns):
  1 when the image's topic maps to the class, else 0. A Dollar Street store and a COCO
  store thus share one multi-label target set (``coco-objects``).
- ``region_<name>``: one-hot over the regions present (``region_Africa``,
  ``region_The_Americas``, ...), -1 when the region is missing.
- ``income_bucket_<k>``: one-hot over the income buckets present, where the bucket is
  ``round(ln(income) / 3)`` (monthly income in dollars: 1 below about $90, 2 up to about
  $1,808, 3 above), -1 when the income is missing or not positive.

The non-binary values (topic, country, region, raw ``income`` and the integer
``income_bucket``) are in :meth:`DollarStreetAdapter.descriptors`, row-aligned with the
metadata. Dollar Street has no official split: rows are assigned train/val/test by a seeded
split stratified by topic (``split_fractions``, ``seed``). The geographic experiment draws its
finetuning rows from the train part and scores either the test part or, as Wang & Russakovsky
do, every row a cell did not draw (``test = "unused"``, :mod:`analyze.probe.multilabel`). An id
listed twice keeps its first record.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from extract.datasets.base import Adapter
from extract.datasets.fairface import one_hot
from extract.datasets.manifest import (
    check_split_fractions,
    column_name,
    require_dirs,
    seeded_split,
)
from extract.datasets.targets import DATA_DIR, TARGET_SET_FILES, read_class_list
from extract.errors import UserError

METADATA_FILE = "metadata_full_dollar_street.json"
REQUIRED = ("id", "label", "country", "region", "income")
DEFAULT_CLASS_MAP = DATA_DIR / "dollarstreet-coco.toml"
DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def income_bucket(income) -> np.ndarray:
    """``round(ln(income) / 3)`` per value; -1 where the income is missing or not positive.

    Parameters
    ----------
    income : array-like of float
        Monthly household income in dollars.

    Returns
    -------
    bucket : ndarray of int64
        Python's ``round`` (half to even), as in Wang & Russakovsky's code.
    """
    income = np.asarray(income, dtype=float)
    valid = np.isfinite(income) & (income > 0)
    bucket = np.full(income.shape, -1, dtype=np.int64)
    bucket[valid] = np.rint(np.log(income[valid]) / 3).astype(np.int64)
    return bucket


def load_class_map(path: str | Path) -> dict[str, list[str]]:
    """Topic -> class names from a TOML file with a ``[topics]`` table of string lists."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"the class map {path} does not exist; pass a TOML file like {DEFAULT_CLASS_MAP}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"the class map {path} is not valid TOML ({exc}); fix it or use {DEFAULT_CLASS_MAP}.") from None
    topics = data.get("topics")
    if (not isinstance(topics, dict) or not topics
            or not all(isinstance(v, list) and v and all(isinstance(c, str) for c in v) for v in topics.values())):
        raise UserError(f"the class map {path} needs a [topics] table mapping each topic to a non-empty list of "
                        'class names, e.g. sofas = ["couch"].')
    return {str(topic): list(classes) for topic, classes in topics.items()}


class DollarStreetAdapter(Adapter):
    """Dollar Street household images with COCO labels, region and income (see the module docstring).

    Parameters
    ----------
    root : path
        Folder holding ``metadata_full_dollar_street.json`` and the image folder.
    class_map : path, optional
        TOML topic -> class map; default ``data/geography/dollarstreet-coco.toml``.
    classes : path, optional
        Class list naming the label columns (one class a line); default COCO's 80 classes.
    image_dir : str, default "images"
        Image folder relative to the root; the image of id ``x`` is ``<image_dir>/x.jpg``.
    split_fractions : (train, val, test), default (0.6, 0.2, 0.2)
        Fractions of the seeded split, stratified by topic.
    seed : int, default 0
        Seed of that split.
    """

    name = "dollarstreet"
    EXPECTED_LAYOUT = (f"<root>/{METADATA_FILE} (a JSON list of records with id, label, country, region "
                       "and income) with the images as <root>/images/<id>.jpg")

    def __init__(self, root, *, class_map: str | Path | None = None, classes: str | Path | None = None,
                 image_dir: str = "images", split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                 seed: int = 0):
        super().__init__(root)
        self.class_map_path = Path(class_map) if class_map is not None else DEFAULT_CLASS_MAP
        self.classes_path = Path(classes) if classes is not None else TARGET_SET_FILES["coco-objects"]
        self.image_dir = str(image_dir).strip("/") or "."
        self.split_fractions = tuple(check_split_fractions(split_fractions))
        self.seed = seed
        self._descriptors: pd.DataFrame | None = None

    # -- reading --------------------------------------------------------------------------
    def _records(self) -> pd.DataFrame:
        path = self.root / METADATA_FILE
        if not path.is_file():
            raise self.layout_error(f"the file {path} is missing")
        try:
            with open(path, "rb") as handle:
                data = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self.layout_error(f"the file {path} is not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise self.layout_error(f"the file {path} is not a JSON list of records")
        frame = pd.DataFrame.from_records(data)
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise self.layout_error(f"the records of {path} lack the field(s) {missing}")
        return frame

    def _label_space(self) -> tuple[list[str], dict[str, list[str]]]:
        """Label columns and topic -> label columns, checked against each other."""
        columns = [column_name(c) for c in read_class_list(self.classes_path)]
        topics = {t: [column_name(c) for c in cs] for t, cs in load_class_map(self.class_map_path).items()}
        unknown = sorted({c for cs in topics.values() for c in cs} - set(columns))
        if unknown:
            raise UserError(f"the class map {self.class_map_path} names the class(es) {unknown}, which are not in "
                            f"the class list {self.classes_path}; use names from that list.")
        clash = sorted(set(columns) & {"image_id", "path", "split"})
        if clash or any(c.startswith(("region_", "income_bucket_")) for c in columns):
            raise UserError(f"the class list {self.classes_path} has names that clash with the metadata columns; "
                            "rename those classes.")
        return columns, topics

    def _build_metadata(self) -> pd.DataFrame:
        columns, topics = self._label_space()
        records = self._records()
        records["id"] = records["id"].astype(str).str.strip()
        records["label"] = records["label"].astype(str).str.strip()
        kept = records[records["label"].isin(list(topics))].drop_duplicates("id", keep="first").reset_index(drop=True)
        if kept.empty:
            raise self.layout_error(f"no record of {METADATA_FILE} has a topic of the class map "
                                    f"({sorted(topics)[:3]} ...)")
        paths = self.image_dir + "/" + kept["id"] + ".jpg"
        require_dirs(self, paths)
        income = pd.to_numeric(kept["income"], errors="coerce").to_numpy(dtype=float)
        bucket = income_bucket(income)
        region = kept["region"].map(lambda r: str(r).strip() if isinstance(r, str) and r.strip() else None)
        self._descriptors = pd.DataFrame({
            "image_id": kept["id"], "topic": kept["label"], "country": kept["country"].astype(str),
            "region": region, "income": income, "income_bucket": bucket})
        out = {"image_id": kept["id"], "path": paths,
               "split": seeded_split(len(kept), fractions=self.split_fractions, seed=self.seed,
                                     strata=kept["label"].to_numpy())}
        labels = np.zeros((len(kept), len(columns)), np.int8)
        index = {c: j for j, c in enumerate(columns)}
        for topic, classes in topics.items():
            rows = (kept["label"] == topic).to_numpy()
            for c in classes:
                labels[rows, index[c]] = 1
        out |= dict(zip(columns, labels.T))
        regions = sorted(region.dropna().unique())
        out |= one_hot(region, prefix="region_", order=regions, names=[column_name(r) for r in regions])
        buckets = sorted(set(bucket[bucket >= 0].tolist()))
        bucket_series = pd.Series(np.where(bucket >= 0, bucket, np.nan))
        out |= one_hot(bucket_series, prefix="income_bucket_", order=[float(b) for b in buckets],
                       names=[str(b) for b in buckets])
        return pd.DataFrame(out)

    # -- extras ---------------------------------------------------------------------------
    def descriptors(self) -> pd.DataFrame:
        """Non-binary values per row: image_id, topic, country, region, income, income_bucket.

        Row-aligned with :meth:`metadata`; ``income_bucket`` is -1 (and ``income`` NaN) where
        the income is missing or not positive.
        """
        self.metadata()
        return self._descriptors

    @property
    def label_columns(self) -> list[str]:
        """The multi-label target columns (the class list, in its order)."""
        return self._label_space()[0]


__all__ = ["DollarStreetAdapter", "income_bucket", "load_class_map"]
