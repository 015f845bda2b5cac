"""Where outputs go by default: a git-ignored work directory, never the repository's data/.

``$BIASTRANSFER_WORK`` when set, else ``./work`` under the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def work_dir() -> Path:
    """The default output folder (created on demand by the commands that write to it)."""
    return Path(os.environ.get("BIASTRANSFER_WORK", "work")).expanduser()
