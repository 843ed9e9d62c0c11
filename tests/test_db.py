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


@pytest.mark.parametrize("n_wanted", [5, 150, 400])
def test_long_in_lists_find_what_the_backend_finds(db, n_wanted):
    """Lists past the scan thresholds (projected and whole documents) give the backend's own answer."""
    from perovdb.db import SCAN_IN_THRESHOLD

    assert 5 < SCAN_IN_THRESHOLD["projected"] < 150 < SCAN_IN_THRESHOLD["whole"] < 400
    store = db.store("scratch", key="k")
    store.update([{"k": f"id{i:04d}", "v": i, "parity": i % 2} for i in range(1200)])
    wanted = [f"id{i:04d}" for i in range(0, 3 * n_wanted, 3)] + ["absent"]
    criteria = {"k": {"$in": wanted}, "parity": 0}
    expected = [d["k"] for d in store._collection.find(criteria, sort=[("k", 1)])]
    assert len(expected) == (n_wanted + 1) // 2
    for properties in (None, ["k"], ["v"]):
        found = list(store.query(criteria, properties=properties, sort={"k": 1}))
        if properties == ["v"]:
            assert [d["v"] for d in found] == [int(k[2:]) for k in expected] and all("k" not in d for d in found)
        else:
            assert [d["k"] for d in found] == expected
    page = list(store.query(criteria, properties=["k"], sort={"k": 1}, skip=2, limit=3))
    assert [d["k"] for d in page] == expected[2:5]


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


def test_embedded_fast_reads_equal_montydb_answers(tmp_path, monkeypatch):
    """The embedded store's direct SQLite reads give exactly what montydb's engine gives."""
    from datetime import datetime

    import perovdb.db
    from perovdb import embedded_scan

    db = connect(f"monty://{tmp_path / 'db'}", settings=Settings(uri=f"monty://{tmp_path / 'db'}"))
    store = db.store("scratch", key="k")
    docs = [
        {"k": "a", "n": 1, "tags": ["x", "y"], "sub": {"deep": [1, {"z": 2}]}, "when": datetime(2026, 1, 2, 3, 4, 5)},
        {"k": "b", "n": 1.0, "tags": ["y"], "flag": True},
        {"k": "c", "n": 2, "tags": [], "sub": None},
        {"k": "d", "flag": 1, "tags": "x"},
        {"k": "e", "n": "1", "tags": [["x"]]},
        {"k": "f", "sub": {"deep": 3, "mix": "Pure"}, "list": [{"deep": 3}]},
        {"k": "g", "sub": {"other": 1}, "n": 2},
    ]
    store.update(docs)

    def engine_used(*args, **kwargs):
        raise AssertionError("a plain query went to montydb's engine")

    queries = [
        ({}, None),
        ({}, ["k", "sub", "when"]),
        ({"n": 1}, ["k"]),
        ({"tags": "x"}, ["k", "tags"]),
        ({"tags": {"$in": ["y", "q"]}}, None),
        ({"flag": 1}, ["k"]),
        ({"k": {"$in": ["a", "c", "zz"]}, "n": {"$in": [1, 2]}}, {"k": 1, "n": 1}),
        ({"missing": "x"}, ["k"]),
        ({}, ["k", "sub.deep", "sub.mix"]),  # dotted projections: {} for a document without the leaf
        ({"sub.mix": "Pure"}, ["sub"]),
        ({"sub.deep": {"$in": [3, 4]}}, ["k", "sub.mix"]),
        ({"n": {"$gte": 1, "$lt": 2}}, ["k"]),  # 1 and 1.0, not "1"
        ({"$or": [{"k": "a"}, {"n": {"$gt": 1.5}}], "tags": {"$all": ["y"]}}, ["k"]),
        ({"$and": [{"n": {"$eq": 2}}, {"sub.other": 1}]}, ["k"]),
    ]
    for criteria, properties in queries:
        with monkeypatch.context() as patch:
            patch.setattr(perovdb.db, "scan_query", engine_used)
            fast = list(store.query(criteria, properties=properties))
        engine = list(store._collection.find(criteria, {p: 1 for p in properties} if properties else None))
        assert fast == engine, (criteria, properties)
        assert store.count(criteria) == len(engine)
    assert [d["k"] for d in store.query({}, properties=["k"], skip=1, limit=2)] == ["b", "c"]
    # sorting (null/missing < numbers < strings < booleans < dates), then skip and limit, as montydb does
    sorts = ({"n": 1, "k": -1}, {"n": -1, "k": 1}, {"flag": 1, "k": 1}, {"when": -1, "k": 1}, {"sub.other": -1, "k": 1})
    for sort in sorts:
        with monkeypatch.context() as patch:
            patch.setattr(perovdb.db, "scan_query", engine_used)
            fast = [d["k"] for d in store.query({}, properties=["k"], sort=sort, skip=1, limit=4)]
        engine = [d["k"] for d in store._collection.find({}, {"k": 1}, sort=list(sort.items()), skip=1, limit=4)]
        assert fast == engine, sort
    # a dotted path through an array is montydb's to answer
    assert embedded_scan.scan(store._sqlite_file, store._collection.codec_options, {"list.deep": 3}, ["k"]) is None
    assert [d["k"] for d in store.query({"list.deep": 3}, properties=["k"])] == ["f"]
    # ranges and sorts on arrays, $all over nested arrays, and other operators are montydb's
    all_xy = {"tags": {"$all": ["x", "y"]}}
    assert embedded_scan.scan(store._sqlite_file, store._collection.codec_options, all_xy, ["k"]) is None
    assert [d["k"] for d in store.query(all_xy, properties=["k"])] == ["a"]
    assert embedded_scan.scan(store._sqlite_file, store._collection.codec_options, {}, ["k"], {"tags": 1}) is None
    not_one = [d["k"] for d in store.query({"n": {"$ne": 1}}, properties=["k"], sort={"k": -1})]
    assert not_one == ["g", "f", "e", "d", "c"]
    db.close()
