"""Builders of tiny fake dataset trees in each real dataset's exact on-disk format.

Each builder writes into a given folder (a pytest ``tmp_path``) and returns what a test
needs to check the adapter against (names, labels, splits). Images are 8 x 8 pixels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, *, seed: int = 0, size: int = 8) -> Path:
    """Write a small random RGB image; the format follows the suffix (.png or .jpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# -- CelebA ------------------------------------------------------------------------------
CELEBA_ATTRIBUTES = ["5_o_Clock_Shadow", "Bangs", "Male", "Wearing_Hat"]


def make_celeba(root: Path, *, n: int = 6, seed: int = 0, images: bool = True) -> dict:
    """CelebA files with ``n`` images and four attributes (-1/1 values, official spacing).

    Returns ``{"files", "attributes" (n x 4 array of -1/1), "partitions"}``.
    """
    rng = np.random.default_rng(seed)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    values = rng.choice([-1, 1], size=(n, len(CELEBA_ATTRIBUTES)))
    partitions = np.arange(n) % 3
    # The official file pads with double spaces before positive values and ends the
    # header line with a space; the parser must cope with both.
    root.mkdir(parents=True, exist_ok=True)
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "]
    lines += [f + " " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, partitions)))
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    if images:
        for i, f in enumerate(files):
            write_image(root / "img_align_celeba" / f, seed=i)
    return {"files": files, "attributes": values, "partitions": partitions}


# -- COCO 2014 ---------------------------------------------------------------------------
COCO_CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 47, "name": "cup", "supercategory": "kitchen"},
                   {"id": 67, "name": "dining table", "supercategory": "furniture"}]


def make_coco(root: Path, parts: dict[str, list[dict]], *, images: bool = True) -> None:
    """COCO 2014 annotation files for ``parts``: ``{"train2014": [image, ...], ...}``.

    Each image is ``{"id": int, "captions": [str, ...], "objects": [category id, ...]}``.
    """
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for part, specs in parts.items():
        imgs = [{"id": s["id"], "file_name": f"COCO_{part}_{s['id']:012d}.jpg", "width": 8, "height": 8}
                for s in specs]
        anns = [{"id": 1000 * s["id"] + k, "image_id": s["id"], "category_id": c, "bbox": [0, 0, 1, 1],
                 "area": 1.0, "iscrowd": 0, "segmentation": [[0, 0, 1, 0, 1, 1]]}
                for s in specs for k, c in enumerate(s["objects"])]
        caps = [{"id": 1000 * s["id"] + k, "image_id": s["id"], "caption": c}
                for s in specs for k, c in enumerate(s["captions"])]
        info = {"description": "fake COCO 2014", "year": 2014}
        (root / "annotations" / f"instances_{part}.json").write_text(json.dumps(
            {"info": info, "images": imgs, "annotations": anns, "categories": COCO_CATEGORIES, "licenses": []}))
        (root / "annotations" / f"captions_{part}.json").write_text(json.dumps(
            {"info": info, "images": imgs, "annotations": caps, "licenses": []}))
        (root / part).mkdir(parents=True, exist_ok=True)
        if images:
            for img in imgs:
                write_image(root / part / img["file_name"], seed=img["id"])


# -- FairFace ----------------------------------------------------------------------------
FAIRFACE_HEADER = ["file", "age", "gender", "race", "service_test"]


def make_fairface(root: Path, train_rows: list[list], val_rows: list[list], *, images: bool = True) -> None:
    """FairFace label CSVs; rows are ``[file, age, gender, race, service_test]``."""
    write_csv(root / "fairface_label_train.csv", FAIRFACE_HEADER, train_rows)
    write_csv(root / "fairface_label_val.csv", FAIRFACE_HEADER, val_rows)
    for i, row in enumerate(train_rows + val_rows):
        if images:
            write_image(root / row[0], seed=i)
        else:
            (root / row[0]).parent.mkdir(parents=True, exist_ok=True)


# -- Waterbirds --------------------------------------------------------------------------
WATERBIRDS_HEADER = ["img_id", "img_filename", "y", "split", "place", "place_filename"]


def make_waterbirds(root: Path, rows: list[list], *, images: bool = True) -> None:
    """Waterbirds ``metadata.csv``; rows are ``[img_id, img_filename, y, split, place, place_filename]``."""
    write_csv(root / "metadata.csv", WATERBIRDS_HEADER, rows)
    for i, row in enumerate(rows):
        if images:
            write_image(root / row[1], seed=i)


# -- Image folder ------------------------------------------------------------------------
def make_folder(root: Path, counts: dict[str, int], *, suffix: str = ".png") -> list[str]:
    """``root/<class>/<k>.png`` with ``counts[class]`` images each; returns the relative paths."""
    paths = []
    for c, n in counts.items():
        for k in range(n):
            rel = f"{c}/{k:03d}{suffix}"
            write_image(root / rel, seed=len(paths))
            paths.append(rel)
    return paths


# -- Dollar Street -----------------------------------------------------------------------
def make_dollarstreet(root: Path, records: list[dict], *, images: bool = True) -> None:
    """``metadata_full_dollar_street.json`` (a JSON list of records) and ``images/<id>.jpg``.

    Each record carries the release's fields: ``id``, ``label``, ``country``, ``region``,
    ``income`` (plus ``url``, ``lat`` and ``lng`` filled in here when absent).
    """
    root.mkdir(parents=True, exist_ok=True)
    full = [{"url": f"https://example.org/480x480-{r['id']}.jpg", "lat": 0.0, "lng": 0.0, **r} for r in records]
    (root / "metadata_full_dollar_street.json").write_text(json.dumps(full))
    (root / "images").mkdir(exist_ok=True)
    if images:
        for i, r in enumerate(records):
            write_image(root / "images" / f"{r['id']}.jpg", seed=i)


# -- GeoDE -------------------------------------------------------------------------------
GEODE_HEADER = ["file_path", "object", "region", "ip_country"]


def make_geode(root: Path, rows: list[list], *, images: bool = True) -> None:
    """GeoDE ``index.csv``; rows are ``[file_path, object, region, ip_country]``, images under ``images/``."""
    write_csv(root / "index.csv", GEODE_HEADER, rows)
    for i, row in enumerate(rows):
        if images:
            write_image(root / "images" / row[0], seed=i)
        else:
            (root / "images" / row[0]).parent.mkdir(parents=True, exist_ok=True)
