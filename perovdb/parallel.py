"""Worker processes for CPU-bound work on many independent records (graph building, ingest parsing)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TextIO

#: seconds between a worker's checks that the process that started it is still alive
PARENT_CHECK_SECONDS = 1.0


def resolve_workers(workers: int | None, configured: int = 0) -> int:
    """Processes to use: ``workers``, or ``configured`` (``Settings.num_workers``) when it is None;
    0 means one per core this process may run on."""
    count = configured if workers is None else workers
    if count < 0:
        raise ValueError(f"worker processes must be 0 (one per core) or more, not {count}")
    if multiprocessing.current_process().daemon:  # e.g. inside a multiprocessing.Pool task
        return 1  # a daemonic process may not start processes of its own
    if count > 0:
        return count
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (containers, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_pool(workers: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked where the platform can (workers inherit the imported
    modules instead of importing pymatgen or torch again); ``initializer`` runs in each after
    ``_start_worker``."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_start_worker,
        initargs=(os.getpid(), initializer),
    )


def _start_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    """Make a worker a quiet helper of ``parent``: Ctrl-C is the parent's to handle (it stops the pool),
    output goes through stream objects of its own on descriptors 1 and 2 (not forked copies of the
    parent's, a progress display's among them), and the worker exits if the parent dies without stopping
    it (killed), instead of idling forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout, sys.stderr = _own_stream(1), _own_stream(2)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True, name="parent-watch").start()
    if initializer is not None:
        initializer()


def _own_stream(descriptor: int) -> TextIO:
    """A new text stream on ``descriptor``: not the parent's stream objects, whose locks a thread of the
    parent (a progress display) may have held at the fork."""
    try:
        return open(descriptor, "w", buffering=1, closefd=False, errors="backslashreplace")
    except OSError:  # no such descriptor (a detached parent)
        return open(os.devnull, "w")


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)
