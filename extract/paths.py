"""Where outputs go by default: a git-ignored work directory, never the repository's data/.

``$BIASTRANSFER_WORK`` when set, else ``./work`` under the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def work_dir() -> Path:
    """The default output folder (created on demand by the commands that write to it)."""
    return Path(os.environ.get("BIASTRANSFER_WORK", "work")).expanduser()


def store_file_name(dataset: str, backbone: str) -> str:
    """The default file name of a store: ``<dataset>__<backbone>.h5`` (path separators made ``_``)."""
    safe = str(backbone).replace("/", "_").replace("\\", "_")
    return f"{dataset}__{Path(safe).name}.h5"


def names_folder(out) -> bool:
    """True when ``out`` is text ending in a path separator (``dir/``): it names a folder.

    ``Path`` drops a trailing slash, so only the text the user typed can tell.
    """
    return isinstance(out, str) and out.endswith(tuple(sep for sep in ("/", os.sep, os.altsep) if sep))


def store_output_path(out: str | Path, dataset: str, backbone: str) -> Path:
    """``out`` as a store path: text ending in a separator (``dir/``) is a folder, which gets
    :func:`store_file_name` inside it."""
    return Path(out).expanduser() / store_file_name(dataset, backbone) if names_folder(out) else Path(out)
