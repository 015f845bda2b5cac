"""Atomic file writes: the one temp-file-then-rename writer of the toolkit.

Every output that a later step reads back (result records, tables, figures, reports,
checkpoints, avatar caches, grid manifests) is written to a hidden temporary file in the
destination folder and renamed over the destination only when complete, so a killed or
failed write never leaves a file that reads as valid. Temporary files are named
``.<name>.<random>.tmp``; :func:`remove_stale_temporaries` clears the ones a killed run left.
Files get the usual umask-respecting mode (``0o666 & ~umask``), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from extract.errors import UserError

TEMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _failure(path: Path, exc: OSError, hint: str) -> UserError:
    if exc.errno == errno.ENOSPC:
        return UserError(f"cannot write {path}: no space left on device; free some space or choose another "
                         "location, then run the command again.")
    return UserError(f"cannot write {path} ({exc.strerror or exc}); {hint}.")


def replace_file(src: str | Path, dst: str | Path) -> Path:
    """Flush ``src`` to disk and rename it over ``dst`` (same folder), the commit step of every writer."""
    src, dst = Path(src), Path(dst)
    _fsync(src)
    os.replace(src, dst)
    return dst


@contextmanager
def atomic_write(path: str | Path, *, hint: str = "choose a writable output path"):
    """Yield a temporary path beside ``path``; on success, flush it and rename it over ``path``.

    The caller writes the whole file to the yielded path (by name: ``to_csv``, ``savefig``,
    ``h5py.File``, ``torch.save`` ...). If the block raises, the temporary file is removed and
    ``path`` is left as it was. An ``OSError`` (unwritable folder, full disk) becomes one
    :class:`~extract.errors.UserError` sentence ending in ``hint``.

    Example
    -------
    >>> with atomic_write(folder / "table.csv") as tmp:  # doctest: +SKIP
    ...     table.to_csv(tmp, index=False)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
    except OSError as exc:
        raise _failure(path, exc, hint) from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        replace_file(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _failure(path, exc, hint) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, *, hint: str = "choose a writable output path") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, hint=hint) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files (``.*.tmp``) a killed writer left in ``folder``; return how many."""
    removed = 0
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            stale.unlink()
            removed += 1
        except OSError:
            pass
    return removed


__all__ = ["TEMP_SUFFIX", "atomic_write", "remove_stale_temporaries", "replace_file", "write_text"]
