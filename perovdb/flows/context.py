"""Which database a running job writes to.

A job run by ``perovdb flow run`` uses the Database the runner opened (so ``memory://`` works); a job
run by a remote worker (FireWorks, jobflow-remote) opens ``PEROVDB_URI`` from the worker's environment,
or the URI given in the job's inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from perovdb.db import Database, connect

_current: ContextVar[Database | None] = ContextVar("perovdb_flow_database", default=None)


@contextmanager
def using_database(db: Database) -> Iterator[Database]:
    """Jobs run inside this block write to ``db``."""
    token = _current.set(db)
    try:
        yield db
    finally:
        _current.reset(token)


@contextmanager
def job_database(uri: str | None = None) -> Iterator[Database]:
    """The runner's database when set, else a connection to ``uri`` (default ``PEROVDB_URI``) closed afterwards."""
    current = _current.get()
    if current is not None and (uri is None or uri == current.uri):
        yield current
        return
    db = connect(uri)
    try:
        yield db
    finally:
        db.close()
