"""Worker processes that end with the run that started them.

Two halves:

* in each worker, :func:`setup_worker` (loky's initializer) starts :func:`exit_with_parent`,
  a thread that ends the worker as soon as the process that started it is gone (a SIGKILL
  of the sweep, which no handler can see). This module imports nothing heavy, so a loky
  worker runs it a fraction of a second after it is spawned, before it imports the
  toolkit, torch or scikit-learn: a worker still starting when its sweep dies ends too.
* in the driver, :func:`ending_on_signals` turns SIGTERM and SIGINT into a
  :class:`Terminated` exception in the main thread, so the sweep unwinds like any error:
  joblib kills its loky workers (and removes its memmapping folder in /dev/shm), a Dask
  ``LocalCluster`` is closed, a record being written loses only its temporary file; the
  command line then exits at once (:func:`exit_now`), its ``atexit`` handlers unlinking
  loky's semaphores, and loky's resource tracker ends with it.
  Without it, SIGTERM's default action ended the sweep on the spot and left all of that
  behind (workers and trackers alive for minutes, ``sem.loky-*`` entries and
  ``joblib_memmapping_folder_*`` folders in /dev/shm).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time

__all__ = ["PARENT_POLL_SECONDS", "Terminated", "ending_on_signals", "exit_now", "exit_with_parent", "setup_worker",
           "tqdm_without_semaphore"]

PARENT_POLL_SECONDS = 0.1


def exit_with_parent(parent: int | None = None, *, interval: float = PARENT_POLL_SECONDS) -> None:
    """End this process as soon as ``parent`` (default: the current parent) is no longer its parent.

    A thread polls the parent's pid every ``interval`` seconds; when the parent dies the
    worker is re-parented (its parent pid changes) and exits at once with ``os._exit``, even
    while a unit is running or a result is blocked on a full pipe. Pass the pid of the
    process that started the worker (loky ``initargs``): a parent that died before this
    runs is then noticed at once, where reading ``os.getppid()`` here would take the
    re-parenting process for the parent and wait forever.
    """
    expected = os.getppid() if parent is None else int(parent)
    if os.getppid() != expected:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="biastransfer-parent-watch", daemon=True).start()


def setup_worker(parent: int | None = None) -> None:
    """Loky worker initializer: :func:`exit_with_parent`, no replacement for mapped stores, tqdm without a semaphore.

    ``parent``: the pid of the sweep process (``initargs=(os.getpid(),)``).

    Loky replaces a worker whose resident size grew by 300 MB after its first task, taking
    it for a leak. Pages of a memory-mapped store count as resident, so every worker that
    moved on to its next store was replaced (re-importing, re-mapping). A worker's growth
    is bounded here (the maps of the two stores it keeps open, shared with the other
    workers), so that check is turned off; loky's periodic garbage collection stays.
    """
    exit_with_parent(parent)
    from joblib.externals.loky import process_executor

    process_executor._USE_PSUTIL = False
    tqdm_without_semaphore()


def tqdm_without_semaphore() -> None:
    """Give tqdm a thread lock in a pool worker (loky or Dask), instead of its multiprocessing one.

    tqdm's default lock holds a multiprocessing semaphore, registered with the sweep's
    resource tracker; a worker killed on a signal never unregistered it, and the tracker
    reported "leaked semaphore objects" when it cleared them. A worker runs one unit at a
    time and draws no bars across processes, so a thread lock serves. Idempotent.
    """
    from tqdm import tqdm

    if not isinstance(getattr(tqdm, "_lock", None), type(_THREAD_LOCK)):
        tqdm.set_lock(threading.RLock())


_THREAD_LOCK = threading.RLock()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived while a sweep ran (``signum``: which); raised in the main thread.

    A :class:`KeyboardInterrupt`, so joblib aborts its workers as it does for Ctrl-C; the
    command line exits with status 128 + ``signum`` (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"received {signal.Signals(self.signum).name}")


_DEFAULTS = {signal.SIGTERM: (signal.SIG_DFL,), signal.SIGINT: (signal.SIG_DFL, signal.default_int_handler)}


@contextlib.contextmanager
def ending_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """Within the block, SIGTERM and SIGINT raise :class:`Terminated` in the main thread.

    The block's cleanup then runs (``finally``, ``with``, joblib's abort of its workers),
    so nothing outlives it. Only signals whose handler is still the default one are taken
    over (a handler of the caller, or an ignored SIGINT of a background job, is left as it
    is), and the handlers are restored when the block ends. After the first signal the
    default action is back: a second SIGTERM or SIGINT during the cleanup ends the process
    at once (its workers then follow through :func:`exit_with_parent`). Outside the main
    thread (where Python cannot set handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, _frame):
        for number in previous:
            signal.signal(number, signal.SIG_DFL)
        raise Terminated(signum)

    try:
        for number in signums:
            current = signal.getsignal(number)
            if current in _DEFAULTS.get(number, (signal.SIG_DFL,)):
                previous[number] = current
                signal.signal(number, handler)
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def exit_now(status: int) -> None:
    """End this process with ``status`` after the ``atexit`` handlers, without the interpreter's teardown.

    For a command ended by a signal (:class:`Terminated`), once its cleanup has run. The
    ``atexit`` handlers still run (multiprocessing's and loky's finalizers unlink their
    semaphores in /dev/shm, logging is flushed, temporary folders are removed); what is
    skipped is the teardown of every module and the last garbage collection, which take
    1-2 s once torch, SciPy and pandas are loaded (on a busy 2-core machine), while loky's
    and multiprocessing's resource trackers, which end when this process does, live on.
    With it, a sweep and every process it started are gone about 0.3 s after SIGTERM.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
