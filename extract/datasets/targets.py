"""Named multi-label target sets: lists of attribute columns that one model predicts together.

A target set is data, not code: ``coco-objects`` is COCO 2014's 80 object classes, read from
``data/geography/coco-classes.txt`` (one COCO class name a line, in category-id order) and
made column-safe the way the COCO adapter names its object columns (``"dining table"`` ->
``dining_table``). The Dollar Street adapter writes the same columns, so stores of both
datasets share one label space and can be mixed (see :class:`analyze.subsets.DomainMix`).
"""

from __future__ import annotations

from pathlib import Path

from extract.datasets.manifest import column_name
from extract.errors import UserError

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "geography"
TARGET_SET_FILES = {"coco-objects": DATA_DIR / "coco-classes.txt"}


def read_class_list(path: str | Path) -> list[str]:
    """Class names of a text file, one a line (blank lines and ``#`` comments skipped).

    Parameters
    ----------
    path : path
        The file.

    Returns
    -------
    names : list of str
        The names as written (not yet column-safe), in file order.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"the class list {path} does not exist; pass a text file with one class name a line.") from None
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    columns = [column_name(n) for n in names]
    if not names or len(set(columns)) != len(columns):
        raise UserError(f"the class list {path} is empty or names a class twice; list each class once, one a line.")
    return names


def coco_classes() -> list[str]:
    """COCO 2014's 80 object classes as column names, in category-id order."""
    return [column_name(n) for n in read_class_list(TARGET_SET_FILES["coco-objects"])]


def target_set(name: str) -> list[str]:
    """The columns of the target set ``name`` (see :data:`TARGET_SET_FILES`)."""
    if name not in TARGET_SET_FILES:
        raise UserError(f"unknown target set {name!r}; choose one of {sorted(TARGET_SET_FILES)}.")
    return [column_name(n) for n in read_class_list(TARGET_SET_FILES[name])]


__all__ = ["DATA_DIR", "TARGET_SET_FILES", "coco_classes", "read_class_list", "target_set"]
