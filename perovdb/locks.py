"""Named locks that serialise writers of one database across threads, processes and hosts.

``memory://`` uses a thread lock (the data lives in one process), ``monty://`` a file lock beside the
store (``fcntl.flock``, released by the OS if the process dies) and ``mongodb://`` a document in the
``locks`` collection with an expiry, so a crashed holder never blocks others forever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from perovdb.errors import PerovdbError

#: seconds between attempts to take a held lock
POLL_SECONDS = 0.2


class LockTimeout(PerovdbError):
    """The lock stayed held by someone else for longer than the timeout."""


class ThreadLocks:
    """Per-name thread locks of one in-process database."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, name: str, timeout: float) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=timeout):
            raise LockTimeout(f"lock {name!r} is held by another writer (waited {timeout:g} s)")
        try:
            yield
        finally:
            lock.release()


#: descriptors of the lock files this process holds: a forked child (a worker process) lets go of its
#: copies, so a lock stays with the process that took it and dies with it, even if a worker outlives it
_HELD_LOCK_FILES: set[int] = set()


def _release_inherited_lock_files() -> None:
    """In a forked child: point each held lock descriptor at /dev/null. That drops the child's reference
    to the locked file, while the number stays taken (closing it would let a new file reuse it, which the
    lock's own cleanup would then unlock and close)."""
    if not _HELD_LOCK_FILES:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for descriptor in _HELD_LOCK_FILES:
            os.dup2(null, descriptor)
    finally:
        os.close(null)
    _HELD_LOCK_FILES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_inherited_lock_files)


@contextmanager
def file_lock(directory: Path, name: str, timeout: float) -> Iterator[None]:
    """Exclusive ``flock`` on ``directory/locks/<name>.lock``."""
    import fcntl

    path = directory / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"lock {name!r} is held by another process (waited {timeout:g} s)") from None
                time.sleep(POLL_SECONDS)
        _HELD_LOCK_FILES.add(handle.fileno())
        try:
            yield
        finally:
            _HELD_LOCK_FILES.discard(handle.fileno())
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def document_lock(collection: Any, name: str, timeout: float, ttl: float = 3600.0) -> Iterator[None]:
    """A lock document ``{_id: name, owner, expires}`` in a pymongo collection; expired locks are taken over."""
    from pymongo.errors import DuplicateKeyError

    from perovdb.documents import utcnow

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    while True:
        now = utcnow()
        expires = now + timedelta(seconds=ttl)
        try:
            collection.insert_one({"_id": name, "owner": owner, "expires": expires})
            break
        except DuplicateKeyError:
            taken = collection.find_one_and_update(
                {"_id": name, "expires": {"$lt": now}}, {"$set": {"owner": owner, "expires": expires}}
            )
            if taken is not None:
                break
        if time.monotonic() > deadline:
            raise LockTimeout(f"lock {name!r} is held by another writer (waited {timeout:g} s)")
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        collection.delete_one({"_id": name, "owner": owner})
