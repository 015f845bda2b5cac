"""Atomic file writes: the one temp-file-then-rename writer of the toolkit.

Every output that a later step reads back (result records, tables, figures, reports,
checkpoints, avatar caches, grid manifests) is written to a hidden temporary file in the
destination folder and renamed over the destination only when complete, so a killed or
failed write never leaves a file that reads as valid. Temporary files are named
``.<name>.<pid>@<host>.<random>.tmp`` after the process that writes them, so
:func:`remove_stale_temporaries` can clear the ones a killed run left (its process is gone)
without touching those of a run still writing into the same folder.
Files get the usual umask-respecting mode (``0o666 & ~umask``), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from extract.errors import OutputError

TEMP_SUFFIX = ".tmp"
# .<name>.<pid>@<host>.<random>.tmp ; the random part comes from tempfile (letters, digits, _)
_OWNED = re.compile(r"\.(?P<pid>\d+)@(?P<host>[^/]+)\.[A-Za-z0-9_]+" + re.escape(TEMP_SUFFIX) + "$")
# temporaries without an owner: .tmp-*.json (result records of earlier versions) and
# .<name>.<random>.tmp; they are removed once older than this
UNOWNED_STALE_SECONDS = 3600.0


def _owner() -> str:
    """``<pid>@<host>`` of this process, the part of a temporary name that says who writes it."""
    return f"{os.getpid()}@{socket.gethostname().replace('/', '_')}"


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _failure(path: Path, exc: OSError, hint: str) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {path}: no space left on device; free some space or choose another "
                         "location, then run the command again.")
    return OutputError(f"cannot write {path} ({exc.strerror or exc}); {hint}.")


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
    :class:`~extract.errors.OutputError` sentence (a :class:`~extract.errors.UserError`)
    ending in ``hint``.

    Example
    -------
    >>> with atomic_write(folder / "table.csv") as tmp:  # doctest: +SKIP
    ...     table.to_csv(tmp, index=False)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_owner()}.", suffix=TEMP_SUFFIX)
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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale_temporary(path: str | Path, *, now: float | None = None) -> bool:
    """True for a temporary file whose writer is gone.

    Owned temporaries (``.<name>.<pid>@<host>.<random>.tmp``) are stale when their process
    no longer runs on this host (those of other hosts are left alone); temporaries without
    an owner (``.tmp-*.json`` of earlier versions, ``.<name>.<random>.tmp``) once they are
    older than :data:`UNOWNED_STALE_SECONDS`.
    """
    path = Path(path)
    name = path.name
    owned = _OWNED.search(name) if name.startswith(".") and name.endswith(TEMP_SUFFIX) else None
    if owned is not None:
        host = socket.gethostname().replace("/", "_")
        return owned["host"] == host and not _process_alive(int(owned["pid"]))
    unowned = name.startswith(".tmp-") and name.endswith(".json") or (
        name.startswith(".") and name.endswith(TEMP_SUFFIX))
    if not unowned:
        return False
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    return age > UNOWNED_STALE_SECONDS


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (:func:`is_stale_temporary`);
    return how many. Temporaries of writers still running are kept."""
    folder, removed, now = Path(folder), 0, time.time()
    if not folder.is_dir():
        return 0
    for candidate in [*folder.glob(f".*{TEMP_SUFFIX}"), *folder.glob(".tmp-*.json")]:
        if is_stale_temporary(candidate, now=now):
            try:
                candidate.unlink()
                removed += 1
            except OSError:
                pass
    return removed


__all__ = ["TEMP_SUFFIX", "atomic_write", "is_stale_temporary", "remove_stale_temporaries", "replace_file",
           "write_text"]
