"""One way to open the database, the same behaviour on every backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perovdb import connect
from perovdb.config import Settings
from perovdb.db import EmbeddedStore, SharedMemoryStore, redact_uri
from perovdb.documents import COLLECTIONS
from perovdb.errors import ConfigurationError


def test_every_collection_is_a_connected_maggma_store(db):
    from maggma.core import Store

    for name, store in db.collections().items():
        assert isinstance(store, Store)
        assert store.key == COLLECTIONS[name][1]
        assert store.count() == 0


def test_upsert_replaces_by_key_and_inserts_new(db):
    store = db.store("scratch", key="k")
    store.update([{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    store.update([{"k": "a", "v": 10}, {"k": "c", "v": 3}])
    assert sorted((d["k"], d["v"]) for d in store.query({}, properties=["k", "v"])) == [("a", 10), ("b", 2), ("c", 3)]
    assert store.count() == 3


def test_store_keeps_data_after_close_like_a_server(db):
    """maggma #830: a builder's finalize() closes its target; the data must survive."""
    store = db.store("scratch", key="k")
    store.update([{"k": "x", "v": 1}])
    store.close()
    store.connect()
    assert store.query_one({"k": "x"})["v"] == 1


def test_ensure_indexes_never_fails(db):
    created = db.ensure_indexes()
    assert set(created) == set(COLLECTIONS)
    if db.backend == "monty":
        assert all(fields == [] for fields in created.values())  # montydb has no indexes; queries scan
    else:
        assert "structure_id" in created["structures"]


def test_artifacts_round_trip(db):
    payload = bytes(range(256)) * 1000
    digest = db.artifacts.put("models/m1/weights.pt", payload)
    assert db.artifacts.exists("models/m1/weights.pt")
    assert db.artifacts.get("models/m1/weights.pt") == payload
    assert len(digest) == 64
    db.artifacts.put("models/m1/weights.pt", b"new")
    assert db.artifacts.get("models/m1/weights.pt") == b"new"
    assert db.artifacts.keys("models/") == ["models/m1/weights.pt"]
    db.artifacts.delete("models/m1/weights.pt")
    with pytest.raises(KeyError):
        db.artifacts.get("models/m1/weights.pt")


def test_backend_classes(tmp_path):
    memory = connect("memory://", settings=Settings(uri="memory://"))
    assert isinstance(memory.structures, SharedMemoryStore)
    embedded = connect(f"monty://{tmp_path}/s", settings=Settings())
    assert isinstance(embedded.structures, EmbeddedStore)
    assert embedded.embedded_path == tmp_path / "s"


@pytest.mark.parametrize("uri", ["postgres://x", "sqlite:///a.db", "monty://", "", "mongodb"])
def test_unsupported_uri_is_a_clear_error(uri):
    with pytest.raises(ConfigurationError):
        connect(uri or "nope://", settings=Settings())


def test_passwords_never_shown():
    uri = "mongodb://alice:s3cret@db.example:27017/perovdb?authSource=admin"
    assert "s3cret" not in redact_uri(uri)
    assert "alice" in redact_uri(uri)
    from perovdb.db import Database

    lazy = Database("mongodb://alice:s3cret@127.0.0.1:1/perovdb", Settings())  # pymongo connects lazily
    assert "s3cret" not in repr(lazy) and "alice" in repr(lazy)
    with pytest.raises(ConfigurationError) as error:
        connect("mongodbx://alice:s3cret@host/db", settings=Settings())
    assert "s3cret" not in str(error.value)


def test_uri_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PEROVDB_URI", f"monty://{tmp_path}/env-store")
    db = connect()
    assert db.backend == "monty" and db.embedded_path == tmp_path / "env-store"


def test_embedded_store_persists_across_processes(tmp_path):
    uri = f"monty://{tmp_path / 'store'}"
    write = textwrap.dedent(
        f"""
        from perovdb import connect
        db = connect({uri!r})
        db.store("scratch", key="k").update([{{"k": "p", "v": 42}}])
        db.artifacts.put("blob", b"abc")
        db.close()
        """
    )
    read = textwrap.dedent(
        f"""
        from perovdb import connect
        db = connect({uri!r})
        print(db.store("scratch", key="k").query_one({{"k": "p"}})["v"], db.artifacts.get("blob").decode())
        """
    )
    subprocess.run([sys.executable, "-c", write], check=True, cwd=Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", read], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["42", "abc"]
