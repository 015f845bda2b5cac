"""COCO 2014: perceived gender from captions, objects from instance annotations.

Layout::

    <root>/annotations/instances_train2014.json   <root>/annotations/captions_train2014.json
    <root>/annotations/instances_val2014.json     <root>/annotations/captions_val2014.json
    <root>/train2014/COCO_train2014_000000000009.jpg ...
    <root>/val2014/COCO_val2014_000000000042.jpg ...

Columns:

- ``female``: gender read from the captions with Wang & Russakovsky's rule (their
  ``coco_gender.py``): the words of an image are ``w.lower().strip()`` for every ``w`` in
  ``caption.split(' ')`` over all its captions, *without* stripping punctuation (so
  ``"man."`` is not a male word). ``female = 0`` (male) if some word is in
  :data:`MALE_WORDS` and none in :data:`FEMALE_WORDS`, ``1`` (female) in the mirror case,
  and ``-1`` (unknown) when both or neither occur (or the image has no captions).
- one column per object category, named after the category with spaces as underscores
  (``person``, ``dining_table``, ...): 1 if the image has at least one instance, else 0.

Splits: ``train2014`` -> ``"train"``, except a seeded ``val_fraction`` of it (default 0.1)
-> ``"val"``; ``val2014`` -> ``"test"`` (COCO's test images have no annotations).
``image_id`` is COCO's integer image id as text; rows follow the ``images`` list of the
instances files, train2014 first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from extract.datasets.base import Adapter
from extract.datasets.manifest import carve_validation, check_fraction, column_name
from extract.errors import UserError

MALE_WORDS = frozenset({"male", "boy", "man", "gentleman", "boys", "men", "males", "gentlemen"})
FEMALE_WORDS = frozenset({"female", "girl", "woman", "lady", "girls", "women", "females", "ladies"})
PARTS = {"train2014": "train", "val2014": "test"}


def caption_gender(captions: Sequence[str]) -> int:
    """Gender of one image from its captions: 1 female, 0 male, -1 unknown (see module doc)."""
    words = {w.lower().strip() for caption in captions for w in caption.split(" ")}
    male, female = bool(words & MALE_WORDS), bool(words & FEMALE_WORDS)
    return 0 if male and not female else 1 if female and not male else -1


def gender_from_captions(image_ids: np.ndarray, caption_image_ids: np.ndarray, captions: Sequence[str]) -> np.ndarray:
    """Vectorised :func:`caption_gender` over many images.

    Parameters
    ----------
    image_ids : ndarray of shape (n_images,)
        The images to label.
    caption_image_ids, captions : arrays of shape (n_captions,)
        One entry per caption: the image it describes and its text.

    Returns
    -------
    female : ndarray of shape (n_images,), int8
        1 female, 0 male, -1 unknown.
    """
    # A word set's union over captions meets a list iff one caption's words do, so
    # per-caption flags OR-ed per image give exactly the paper's rule.
    flags = np.zeros((len(captions), 2), bool)
    for k, caption in enumerate(captions):
        words = {w.lower().strip() for w in caption.split(" ")}
        flags[k] = (not MALE_WORDS.isdisjoint(words), not FEMALE_WORDS.isdisjoint(words))
    has_male, has_female = flags[:, 0], flags[:, 1]
    rows = pd.Index(image_ids).get_indexer(caption_image_ids)
    known = rows >= 0  # captions of images outside ``image_ids`` are ignored
    male = np.zeros(len(image_ids), bool)
    female = np.zeros(len(image_ids), bool)
    np.logical_or.at(male, rows[known], has_male[known])
    np.logical_or.at(female, rows[known], has_female[known])
    out = np.full(len(image_ids), -1, np.int8)
    out[male & ~female] = 0
    out[female & ~male] = 1
    return out


class COCOAdapter(Adapter):
    """COCO 2014 with caption gender and object presence (see the module docstring).

    Parameters
    ----------
    root : path
        Folder holding ``annotations/``, ``train2014/`` and ``val2014/``.
    categories : list of str, optional
        Object columns to keep, by COCO name (``"dining table"``) or column name
        (``"dining_table"``); default all 80.
    parts : sequence of {"train2014", "val2014"}, default both
        Which official parts to read (e.g. only ``("val2014",)`` for a val-only copy).
    val_fraction : float in [0, 1), default 0.1
        Share of train2014 moved to ``"val"``; 0 keeps all of it in ``"train"``.
    seed : int, default 0
        Seed of that choice.
    """

    name = "coco"
    EXPECTED_LAYOUT = ("<root>/annotations/instances_{train,val}2014.json and captions_{train,val}2014.json "
                       "with the images in <root>/train2014/ and <root>/val2014/")

    def __init__(self, root, *, categories: Sequence[str] | None = None,
                 parts: Sequence[str] = tuple(PARTS), val_fraction: float = 0.1, seed: int = 0):
        super().__init__(root)
        parts = (parts,) if isinstance(parts, str) else tuple(parts)
        unknown = sorted(set(parts) - set(PARTS)) if parts else ["(none)"]
        if unknown:
            raise UserError(f"parts={list(parts)} names no COCO 2014 part or an unknown one {unknown}; "
                            f"choose from {list(PARTS)}.")
        self.categories = None if categories is None else list(categories)
        self.parts = tuple(parts)
        self.val_fraction = check_fraction(val_fraction, name="val_fraction")
        self.seed = seed

    def _build_metadata(self) -> pd.DataFrame:
        frames, category_table = [], None
        for part in self.parts:
            meta, objects, cats = self._read_part(part)
            if category_table is not None and cats != category_table:
                raise self.layout_error(f"instances_{part}.json lists other categories than the other part")
            category_table = cats
            frames.append(pd.concat([meta, objects], axis=1))
        meta = pd.concat(frames, ignore_index=True)
        meta["split"] = carve_validation(meta["split"].to_numpy(), val_fraction=self.val_fraction, seed=self.seed)
        keep = self._selected_columns(list(category_table.values()))
        return meta[["image_id", "path", "split", "female", *keep]]

    def _selected_columns(self, columns: list[str]) -> list[str]:
        if self.categories is None:
            return columns
        wanted = [column_name(c) for c in self.categories]
        unknown = [c for c in wanted if c not in columns]
        if unknown:
            raise UserError(f"the categories {unknown} are not in the COCO files; choose from {columns}.")
        return wanted

    def _read_part(self, part: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, str]]:
        """Metadata, object matrix and {category id: column name} of one official part."""
        if not (self.root / part).is_dir():
            raise self.layout_error(f"the image folder {self.root / part} is missing")
        ids, files, cats, ann_image, ann_cat = self._read_instances(part)
        cap_image, cap_text = self._read_captions(part)
        meta = pd.DataFrame({"image_id": ids.astype(str), "path": [f"{part}/{f}" for f in files],
                             "split": PARTS[part], "female": gender_from_captions(ids, cap_image, cap_text)})
        return meta, self._object_matrix(ids, ann_image, ann_cat, cats), cats

    def _read_instances(self, part: str):
        """Image ids and file names, categories, and (image id, category id) per instance."""
        # Only these arrays outlive the call: the parsed JSON (several GB for train2014,
        # mostly segmentation polygons) is freed before the captions are read.
        instances = self._load_json(f"instances_{part}.json", keys=("images", "annotations", "categories"))
        try:
            ids = np.array([img["id"] for img in instances["images"]], dtype=np.int64)
            files = [str(img["file_name"]) for img in instances["images"]]
            cats = {int(c["id"]): column_name(c["name"]) for c in instances["categories"]}
            ann_image = np.array([a["image_id"] for a in instances["annotations"]], dtype=np.int64)
            ann_cat = np.array([a["category_id"] for a in instances["annotations"]], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.layout_error(f"instances_{part}.json lacks a COCO field ({exc!r})") from None
        if len(np.unique(ids)) != len(ids):
            raise self.layout_error(f"instances_{part}.json lists an image id twice")
        if len(set(cats.values())) != len(cats) or {"image_id", "path", "split", "female"} & set(cats.values()):
            raise self.layout_error(f"the categories of instances_{part}.json have clashing names")
        return ids, files, cats, ann_image, ann_cat

    def _read_captions(self, part: str) -> tuple[np.ndarray, list[str]]:
        """(image id, caption text) per caption annotation."""
        captions = self._load_json(f"captions_{part}.json", keys=("annotations",))
        try:
            cap_image = np.array([a["image_id"] for a in captions["annotations"]], dtype=np.int64)
            cap_text = [str(a["caption"]) for a in captions["annotations"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self.layout_error(f"captions_{part}.json lacks a COCO field ({exc!r})") from None
        return cap_image, cap_text

    def _object_matrix(self, ids, ann_image, ann_cat, cats: dict[int, str]) -> pd.DataFrame:
        rows = pd.Index(ids).get_indexer(ann_image)
        cols = pd.Index(list(cats)).get_indexer(ann_cat)
        if (rows < 0).any() or (cols < 0).any():
            raise self.layout_error("an instance annotation refers to an image or category that is not listed")
        matrix = np.zeros((len(ids), len(cats)), np.int8)
        matrix[rows, cols] = 1
        return pd.DataFrame(matrix, columns=list(cats.values()))

    def _load_json(self, filename: str, *, keys: Sequence[str]) -> dict:
        path = self.root / "annotations" / filename
        if not path.is_file():
            raise self.layout_error(f"the file {path} is missing")
        try:
            with open(path, "rb") as handle:
                data = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self.layout_error(f"the file {path} is not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in keys):
            raise self.layout_error(f"the file {path} lacks the list(s) {list(keys)}")
        return data
