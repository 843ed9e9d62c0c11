"""Shared fixtures: the repo's real data, and one database per backend (memory, embedded, live MongoDB)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from perovdb import Database, connect
from perovdb.config import Settings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MULTIFIDELITY = DATA / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv"
PBE_TABLE = DATA / "mannodi_halide_perovskites" / "PBE_data.csv"
HSE_TABLE = DATA / "mannodi_halide_perovskites" / "HSE_data.csv"
JARVIS = DATA / "jarvis_alignn_sample"
LIVE_URI = os.environ.get("PEROVDB_TEST_MONGODB_URI")

BACKENDS = ["memory", "monty"] + (["mongodb"] if LIVE_URI else [])


def make_database(backend: str, tmp_path: Path) -> Database:
    """A fresh, empty database of the given backend."""
    if backend == "memory":
        return connect("memory://", settings=Settings(uri="memory://"))
    if backend == "monty":
        uri = f"monty://{tmp_path / 'store'}"
        return connect(uri, settings=Settings(uri=uri))
    assert LIVE_URI, "the mongodb backend needs PEROVDB_TEST_MONGODB_URI"
    name = f"perovdb_test_{uuid.uuid4().hex[:8]}"
    uri = urlunsplit(urlsplit(LIVE_URI)._replace(path=f"/{name}"))  # a throw-away database per test
    return connect(uri, settings=Settings(uri=uri, database=name))


def drop_database(db: Database) -> None:
    """Remove a live test database after the test."""
    if db.backend == "mongodb":
        database = db._pymongo_database()
        database.client.drop_database(database.name)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database, once per backend: the same test runs on memory, embedded and (when set) MongoDB."""
    database = make_database(request.param, tmp_path)
    try:
        yield database
    finally:
        database.close()
        drop_database(database)
