"""One way to open the database, the same behaviour on every backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime
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


def test_upsert_sanitises_what_is_not_plain_and_leaves_the_callers_documents_alone(db):
    import numpy as np

    store = db.store("scratch", key="k")
    plain = {"k": "p", "sites": [{"xyz": [0.0, 0.5, 1.0], "label": "Cs"}]}
    other = {"k": "o", "pair": (1, 2), "x": np.float64(0.25), "n": np.int64(3)}
    store.update([plain, other])
    assert "_id" not in plain and "_id" not in other  # the stored copies got the ids
    found = {d["k"]: d for d in store.query({}, properties=["k", "sites", "pair", "x", "n"])}
    assert found["p"]["sites"] == plain["sites"]
    assert found["o"]["pair"] == [1, 2] and found["o"]["x"] == 0.25 and found["o"]["n"] == 3
    assert type(found["o"]["n"]) is int


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
    # every backend indexes what the builders' incremental plans ask (the embedded store in memory)
    assert {"structure_id", "last_updated"} <= set(created["structures"])
    assert {"material_id", "structure_ids", "calculation_ids"} <= set(created["materials"])
    if db.backend == "monty":
        # kept current by writes through the store: the next queries on them decode no document (what
        # the process finds on opening an existing file is derived on first use)
        from perovdb import embedded_scan

        def queried() -> tuple[list[str], list[str]]:
            since = db.structures.query({"last_updated": {"$gte": datetime(2026, 1, 2)}}, properties=["structure_id"])
            return sorted(d["structure_id"] for d in since), sorted(db.structures.distinct("structure_id"))

        for n in (0, 1, 2):  # the first write creates the collection's file
            db.structures.update([{"structure_id": f"s-{n}", "last_updated": datetime(2026, 1, 1 + n)}])
        read = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(embedded_scan, "_index_entry", lambda *args: read.append(args) or None)
            assert queried() == (["s-1", "s-2"], ["s-0", "s-1", "s-2"])
        assert read == []
        # another process opening the store: a write derives the entries of its own rows only
        reopened = connect(db.uri, settings=db.settings)
        reopened.structures.count()  # opens the file
        read = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(embedded_scan, "_index_entry", lambda *args: read.append(".".join(args[1])) or None)
            reopened.structures.update([{"structure_id": "s-3", "last_updated": datetime(2026, 1, 9)}])
        # (the key's index answers the upsert's lookup: a query, so built from every row on first use)
        assert sorted(f for f in read if f != "structure_id") == sorted(set(created["structures"]) - {"structure_id"})
        reopened.close()


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
        {"k": "b", "n": 1.0, "tags": ["y"], "flag": True, "when": datetime(2026, 3, 1)},
        {"k": "c", "n": 2, "tags": [], "sub": None},
        {"k": "d", "flag": 1, "tags": "x", "when": 7},
        {"k": "e", "n": "1", "tags": [["x"]]},
        {"k": "f", "sub": {"deep": 3, "mix": "Pure"}, "list": [{"deep": 3}]},
        {"k": "g", "sub": {"other": 1}, "n": 2, "flag": False},
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
        ({"flag": True}, ["k"]),  # the boolean, not the number 1
        ({"flag": {"$eq": False}, "n": 2}, ["k"]),
        ({"k": {"$in": ["a", "c", "zz"]}, "n": {"$in": [1, 2]}}, {"k": 1, "n": 1}),
        ({"missing": "x"}, ["k"]),
        ({}, ["k", "sub.deep", "sub.mix"]),  # dotted projections: {} for a document without the leaf
        ({"sub.mix": "Pure"}, ["sub"]),
        ({"sub.deep": {"$in": [3, 4]}}, ["k", "sub.mix"]),
        ({"n": {"$gte": 1, "$lt": 2}}, ["k"]),  # 1 and 1.0, not "1"
        ({"$or": [{"k": "a"}, {"n": {"$gt": 1.5}}], "tags": {"$all": ["y"]}}, ["k"]),
        ({"$and": [{"n": {"$eq": 2}}, {"sub.other": 1}]}, ["k"]),
        ({"sub": {"$ne": None}}, ["k"]),  # present and not null
        ({"tags": {"$ne": "x"}}, ["k"]),  # no element equal either
        ({"n": {"$ne": 1}, "k": {"$ne": "g"}}, ["k"]),
        ({"when": {"$gte": datetime(2026, 1, 2, 3, 4, 5)}}, ["k"]),  # dates only, not the number 7
        ({"when": {"$gt": datetime(2026, 1, 2, 3, 4, 5), "$lte": datetime(2026, 3, 1)}}, ["k"]),
        ({"when": {"$lt": datetime(2026, 2, 1)}, "n": {"$gte": 1}}, ["k"]),
        ({"when": {"$gt": 6}}, ["k"]),  # the number, not the dates
    ]
    for criteria, properties in queries:
        with monkeypatch.context() as patch:
            patch.setattr(perovdb.db, "scan_query", engine_used)
            fast = list(store.query(criteria, properties=properties))
        engine = list(store._collection.find(criteria, {p: 1 for p in properties} if properties else None))
        assert fast == engine, (criteria, properties)
        assert store.count(criteria) == len(engine)
    # distinct: from the file for strings and numbers (array elements one by one), else montydb's
    plain_tags = {"k": {"$in": ["a", "b", "c", "d"]}}  # not "e": an array of arrays is montydb's
    for field, criteria in (("k", None), ("tags", plain_tags), ("n", {"n": {"$gte": 1}}), ("sub.mix", {})):
        with monkeypatch.context() as patch:
            patch.setattr(type(store).__mro__[1], "distinct", engine_used)
            fast = store.distinct(field, criteria)
        assert sorted(fast, key=repr) == sorted(store._collection.distinct(field, criteria), key=repr), field
    assert store._sqlite_file.distinct("when", None) is None  # dates: montydb's to answer
    assert store._sqlite_file.distinct("tags", None) is None
    assert sorted(store.distinct("when"), key=repr) == sorted(store._collection.distinct("when"), key=repr)
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
    assert store._sqlite_file.scan({"list.deep": 3}, ["k"]) is None
    assert [d["k"] for d in store.query({"list.deep": 3}, properties=["k"])] == ["f"]
    # ranges and sorts on arrays, $all over nested arrays, and other operators are montydb's
    all_xy = {"tags": {"$all": ["x", "y"]}}
    assert store._sqlite_file.scan(all_xy, ["k"]) is None
    assert [d["k"] for d in store.query(all_xy, properties=["k"])] == ["a"]
    assert store._sqlite_file.scan({}, ["k"], {"tags": 1}) is None
    # a sort key this module does not order (an array) on one document: the others still sort here,
    # and a page that includes that document is montydb's to answer
    store.update([{"k": "arr", "n": [1, 2]}])
    some = {"k": {"$in": ["a", "c", "e", "g"]}}
    with monkeypatch.context() as patch:
        patch.setattr(perovdb.db, "scan_query", engine_used)
        fast = [d["k"] for d in store.query(some, properties=["k"], sort={"n": -1, "k": 1})]
    engine = [d["k"] for d in store._collection.find(some, {"k": 1}, sort=[("n", -1), ("k", 1)])]
    assert fast == engine == ["e", "c", "g", "a"]
    assert store._sqlite_file.scan({}, ["k"], {"n": 1}) is None
    store.remove_docs({"k": "arr"})
    # NaN sorts after null and before every number, as in MongoDB (montydb's own engine misplaces it)
    store.update([{"k": "nan", "n": float("nan")}])
    with monkeypatch.context() as patch:
        patch.setattr(perovdb.db, "scan_query", engine_used)
        by_n = [d["k"] for d in store.query({}, properties=["k"], sort={"n": 1, "k": 1})]
    assert by_n == ["d", "f", "nan", "a", "b", "c", "g", "e"]
    store.remove_docs({"k": "nan"})
    not_one = [d["k"] for d in store.query({"n": {"$ne": 1}}, properties=["k"], sort={"k": -1})]
    assert not_one == ["g", "f", "e", "d", "c"]
    db.close()


def test_embedded_indexed_reads_equal_montydb_answers_on_real_data(tmp_path, monkeypatch):
    """Repeated queries on the embedded store are answered from memory, through field indexes and sort
    ranks; on real structures and calculations they give what montydb's engine gives, and they see every
    later write, from this process or another."""
    import copy
    import random

    import perovdb.db
    from conftest import HSE_TABLE, JARVIS
    from perovdb.ingest import ingest

    uri = f"monty://{tmp_path / 'db'}"
    db = connect(uri, settings=Settings(uri=uri))
    table = tmp_path / "HSE_data.csv"
    table.write_text("".join(HSE_TABLE.read_text().splitlines(keepends=True)[:60]))
    assert ingest(db, table, dataset="mannodi_halide_perovskites/HSE_data.csv").ok
    assert ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW").ok
    structures = list(db.structures.query({}))
    rng = random.Random(7)

    def random_queries() -> list[tuple[str, dict, list[str], dict, int, int]]:
        elements = sorted({e for s in structures for e in s["elements"]})
        nsites = sorted({s["nsites"] for s in structures})
        mixing = sorted({s["perovskite"]["mixing_type"] for s in structures if s.get("perovskite")})
        formulas = [s["reduced_formula"] for s in rng.sample(structures, 5)]
        sorts = [{"structure_id": 1}, {"nsites": -1, "structure_id": 1}, {"density": 1}, {"nsites": 1, "density": -1}]
        filters = [
            {},
            {"elements": {"$all": rng.sample(elements, 2)}},
            {"elements": {"$all": ["Pb"]}, "nsites": {"$lte": rng.choice(nsites)}},
            {"elements": rng.choice(elements)},
            {"nsites": {"$gt": rng.choice(nsites), "$lte": max(nsites)}},
            {"nsites": {"$gte": rng.choice(nsites), "$lt": rng.choice(nsites)}},
            {"density": {"$gt": 3.5}, "perovskite.mixing_type": rng.choice(mixing)},
            {"perovskite": {"$ne": None}, "nsites": {"$ne": rng.choice(nsites)}},
            {"reduced_formula": {"$in": formulas}},
            {"perovskite.mixing_type": {"$in": mixing[:2]}, "nsites": 40},
            {"$or": [{"reduced_formula": formulas[0]}, {"nsites": {"$lt": 10}}]},
            {"$and": [{"elements": {"$all": ["Pb", rng.choice(elements)]}}, {"nsites": {"$lte": rng.choice(nsites)}}]},
        ]
        queries = [("structures", f, ["structure_id", "nsites", "density"], rng.choice(sorts), rng.randint(0, 3),
                    rng.choice([0, 2, 5])) for f in filters]  # fmt: skip
        queries += [
            ("calculations", {"level_of_theory": "HSE06", "properties.band_gap": {"$gte": 1.0, "$lt": 2.5}},
             ["calculation_id", "properties.band_gap"], {"properties.band_gap": -1}, 0, 4),
            ("calculations", {"structure_id": {"$in": [s["structure_id"] for s in structures[::7]]}},
             ["calculation_id", "structure_id"], {"calculation_id": 1}, 1, 0),
            ("structures", {"last_updated": {"$gte": rng.choice(structures)["last_updated"]}},
             ["structure_id", "last_updated"], {"last_updated": 1, "structure_id": 1}, 0, 0),
            ("structures", {"last_updated": {"$lt": rng.choice(structures)["last_updated"]}, "nsites": {"$gt": 5}},
             ["structure_id"], {"structure_id": -1}, 0, 0),
        ]  # fmt: skip
        return queries

    def engine_used(*args, **kwargs):
        raise AssertionError("a plain query went to montydb's engine")

    def check_all() -> None:
        for collection, criteria, fields, sort, skip, limit in random_queries():
            store = db.store(collection)
            with monkeypatch.context() as patch:
                patch.setattr(perovdb.db, "scan_query", engine_used)
                for _ in range(2):  # the second time from the indexes built by the first
                    fast = list(store.query(criteria, properties=fields, sort=sort, skip=skip, limit=limit))
                    assert store.count(criteria) == store._collection.count_documents(criteria)
            engine = list(store._collection.find(criteria, {f: 1 for f in fields}, sort=list(sort.items()),
                                                 skip=skip, limit=limit))  # fmt: skip
            assert fast == engine, (collection, criteria, sort, skip, limit)

    check_all()
    # what a query returns is the caller's: changing it changes nothing held for the next query
    [first] = db.structures.query({}, properties=["structure_id", "perovskite", "elements"], limit=1)
    kept = copy.deepcopy(first)
    first["elements"].append("Xx")
    if first.get("perovskite"):
        first["perovskite"]["a"] = {}
    assert list(db.structures.query({}, properties=["structure_id", "perovskite", "elements"], limit=1)) == [kept]
    # a write through the same Database: the held documents are read again
    changed = structures[3]["structure_id"]
    db.structures.update([{**{k: v for k, v in structures[3].items() if k != "_id"}, "nsites": 999}])
    assert [d["structure_id"] for d in db.structures.query({"nsites": 999}, ["structure_id"])] == [changed]
    check_all()
    # a write from another process
    write = textwrap.dedent(f"""
        from perovdb import connect
        from perovdb.config import Settings
        db = connect({uri!r}, settings=Settings(uri={uri!r}))
        db.structures.update([{{"structure_id": {changed!r}, "nsites": 1000}}])
        db.close()
    """)
    subprocess.run([sys.executable, "-c", write], check=True, cwd=Path(__file__).parent)
    assert [d["structure_id"] for d in db.structures.query({"nsites": 1000}, ["structure_id"])] == [changed]
    assert db.structures.count({"nsites": 999}) == 0
    check_all()
    db.close()


def test_embedded_field_reader_decodes_every_type_as_bson_does():
    """Reading one top-level field from the raw bytes (scalars straight from the bytes) gives what
    decoding the whole document gives, for every BSON type, with and without timezone-aware dates."""
    import re
    from datetime import datetime, timezone

    import bson
    from bson.codec_options import CodecOptions
    from bson.int64 import Int64
    from bson.objectid import ObjectId

    from perovdb.embedded_scan import _Rows

    document = {
        "_id": ObjectId(),
        "text": "CsPbI₃ ünïcode",
        "empty": "",
        "double": -1.25e-300,
        "int32": -7,
        "int64": Int64(2**40),
        "yes": True,
        "no": False,
        "null": None,
        "when": datetime(2026, 11, 28, 12, 30, 15, 123000),
        "early": datetime(1901, 1, 1),
        "nested": {"a": [1, {"b": "c"}]},
        "list": ["x", 2, None],
        "blob": b"\x00\x01",
        "pattern": re.compile("^Cs"),
        "last": "end",
    }
    for options in (CodecOptions(), CodecOptions(tz_aware=True, tzinfo=timezone.utc)):
        rows = _Rows([bson.encode(document)], options)
        expected = bson.decode(rows.raw[0], codec_options=options.with_options(document_class=dict))
        for name, value in expected.items():
            found, read = rows[0].field(name)
            assert found and read == value and type(read) is type(value), (name, options.tz_aware)
        assert rows[0].field("absent") == (False, None)


def test_field_index_patched_after_writes_equals_a_fresh_build():
    """An index brought up to date from the documents whose entries changed answers as one built anew."""
    import random
    from datetime import timedelta

    import bson
    from bson.codec_options import CodecOptions

    from perovdb.embedded_scan import _FieldIndex, _index_entry, _Rows

    rng = random.Random(5)
    values = [1, 2, 2.5, "x", "y", None, datetime(2026, 1, 1), ["x", "z"], ["x", 3, None], [1, [2]], {"a": 1}, True]

    def entries(docs):
        rows = _Rows([bson.encode(d) for d in docs], CodecOptions())
        return [_index_entry(rows[p], ["v"]) for p in range(len(rows))]

    def canonical(index):
        return (
            {value: sorted(listed) for value, listed in index.values.items()},
            [sorted(getattr(index, name)) for name in ("through_array", "arrays", "nested_arrays", "unindexed")],
            {kind: sorted(zip(*pair)) for kind, pair in index.ordered.items()},
        )

    docs = [{"v": rng.choice(values)} for _ in range(400)] + [{"w": 1}] * 10
    before = entries(docs)
    index = _FieldIndex(before)
    for round_ in range(30):
        for position in rng.sample(range(len(docs)), 8):  # in-place changes, new dates and numbers among them
            choice = rng.choice([*values, datetime(2026, 1, 1) + timedelta(days=round_), 1 + round_])
            docs[position] = {"v": choice} if rng.random() > 0.1 else {"w": 2}
        if round_ % 10 == 9:
            docs.append({"v": rng.choice(values)})  # an insert
        after, earlier = entries(docs), canonical(index)
        patched, fresh = index.patched(before, after), _FieldIndex(after)
        assert patched is not None and patched is not index and canonical(patched) == canonical(fresh)
        for condition in ({"$in": ["x", 2]}, {"$gte": 2}, {"$lt": datetime(2026, 1, 15)}, "y", {"$all": ["x"]}):
            assert patched.candidates(condition) == fresh.candidates(condition), condition
        assert sorted(patched.distinct(None) or [], key=repr) == sorted(fresh.distinct(None) or [], key=repr)
        assert canonical(index) == earlier  # the earlier index (another version's) is left as it was
        index, before = patched, after
    assert index.patched(before, list(before)) is index  # nothing changed
    assert index.patched(before, before[:-1]) is None  # a removal: built anew
    assert index.patched(before, entries([{"v": "new"}] * len(before))) is None  # most changed: built anew


def test_embedded_state_token_changes_with_writes_only(tmp_path):
    """The embedded store's state token changes with every write and only then; telling it (which
    checkpoints SQLite's log) does not make the next read take every document again."""
    uri = f"monty://{tmp_path / 'db'}"
    db = connect(uri, settings=Settings(uri=uri))
    store = db.store("scratch", key="k")
    store.update([{"k": str(n), "v": n} for n in range(50)])
    tokens = [store.state()]
    for n in (3, 4):  # writes that leave SQLite's write-ahead log holding them
        store.update([{"k": str(n), "v": -n}])
        read = store._sqlite_file.snapshot()
        tokens.append(store.state())
        assert store._sqlite_file.snapshot() is read  # the checkpoint is not taken for a commit
        assert store.state() == tokens[-1]
        assert [d["v"] for d in store.query({"k": str(n)})] == [-n]
    assert None not in tokens and len(set(tokens)) == 3
    db.close()


def test_embedded_store_reads_a_file_it_may_not_write(tmp_path, monkeypatch):
    """A collection file that cannot be opened for writing (a read-only copy) is still read from the file,
    through its indexes."""
    import sqlite3

    from perovdb import embedded_scan

    uri = f"monty://{tmp_path / 'db'}"
    db = connect(uri, settings=Settings(uri=uri))
    db.store("scratch", key="k").update([{"k": str(n), "n": n} for n in range(20)])
    db.close()
    connect_sqlite = sqlite3.connect

    def read_only(target, *args, **kwargs):
        if "mode=rw" in str(target):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return connect_sqlite(target, *args, **kwargs)

    monkeypatch.setattr(embedded_scan.sqlite3, "connect", read_only)
    reader = connect(uri, settings=Settings(uri=uri))
    store = reader.store("scratch", key="k")
    assert sorted(d["k"] for d in store.query({"n": {"$gte": 15}}, properties=["k"])) == ["15", "16", "17", "18", "19"]
    assert store._sqlite_file._connection is not None  # answered from the file, not by montydb
    reader.close()


def test_embedded_reads_after_writes_follow_the_change_log(tmp_path, monkeypatch):
    """After a write, by this store or another connection, only the changed rows are read (the file's
    change log names them); what is read equals what the file holds, in its order. Deleted rows, or a
    log cut past what a reader had read, make it read the whole file again."""
    import sqlite3

    import bson

    from perovdb import embedded_scan

    uri = f"monty://{tmp_path / 'db'}"
    db = connect(uri, settings=Settings(uri=uri))
    store = db.store("scratch", key="k")
    store.ensure_index("n")
    store.update([{"k": f"{i:03d}", "n": i % 7, "tags": [str(i % 3)]} for i in range(60)])
    other = connect(uri, settings=Settings(uri=uri)).store("scratch", key="k")  # another reader and writer
    whole_reads = []
    read_all = embedded_scan._rows_of
    monkeypatch.setattr(embedded_scan, "_rows_of", lambda *a: whole_reads.append(1) or read_all(*a))

    def file_rows() -> list[tuple]:  # what the file holds, in its row order, read without perovdb
        with sqlite3.connect(store._sqlite_file.path) as plain:
            rows = [bson.decode(v) for _, v in plain.execute("SELECT k, v FROM documents")]
        return [(d["k"], d.get("n"), d.get("tags")) for d in rows]

    def check(reader, whole_read: bool | None) -> None:
        """``reader`` reads what the file holds; ``whole_read``: whether it read the whole file since the
        previous check of a reader (writes included)."""
        seen = [(d["k"], d.get("n"), d.get("tags")) for d in reader.query({}, properties=["k", "n", "tags"])]
        if whole_read is not None:
            assert bool(whole_reads) == whole_read
        whole_reads.clear()
        assert seen == file_rows()
        expected = sorted(k for k, n, _ in seen if n == 3)
        assert sorted(d["k"] for d in reader.query({"n": 3}, properties=["k"])) == expected
        assert not whole_reads

    check(store, whole_read=None)  # read whole after its first write
    check(other, whole_read=True)
    store.update([{"k": "005", "n": 3, "tags": ["x"]}, {"k": "100", "n": 3}])
    store.update([{"k": "099", "n": 1}])
    check(store, whole_read=False)  # an update in place and two inserts, in insertion order (not by key)
    check(other, whole_read=False)
    other.update([{"k": "010", "n": 3}, {"k": "101", "n": 3, "tags": []}])
    check(store, whole_read=False)  # written by the other connection
    store.update([{"k": "010", "n": 3}])  # the same bytes again: logged, nothing changes
    check(store, whole_read=False)
    store.remove_docs({"k": "020"})
    check(store, whole_read=True)  # a delete: the rows move
    check(other, whole_read=True)
    check(other, whole_read=False)  # nothing written since
    other.remove_docs({"k": "021"})
    other.update([{"k": "021", "n": 3}])  # deleted and inserted again: it moves to the end
    check(store, whole_read=True)

    monkeypatch.setattr(embedded_scan, "_LOG_KEEP", 3)
    for i in range(10):  # a writer that cuts the log while ``other`` lags behind
        store.update([{"k": f"2{i:02d}", "n": 3}])
        check(store, whole_read=False)
    files = store._sqlite_file
    with files._lock:
        oldest = files._connection.execute("SELECT min(seq) FROM perovdb_changes").fetchone()[0]
    assert oldest > other._sqlite_file._seq + 1  # entries ``other`` has not read were cut
    check(other, whole_read=True)
    db.close()


def test_embedded_change_log_edge_cases_fall_back_to_reading_the_file(tmp_path, monkeypatch):
    """Writes the log cannot place (a row inserted again by INSERT OR REPLACE, moving it), a log whose
    triggers were dropped, and a log that keeps growing without declared indexes: every read still
    equals the file, and the log is cut by plain readers too."""
    import sqlite3

    import bson

    from perovdb import embedded_scan

    uri = f"monty://{tmp_path / 'db'}"
    db = connect(uri, settings=Settings(uri=uri))
    store = db.store("plain", key="k")  # no ensure_index: only reads refresh it
    store.update([{"k": str(i), "n": i} for i in range(20)])
    path = store._sqlite_file.path

    def file_keys() -> list[str]:
        with sqlite3.connect(path) as plain:
            return [bson.decode(v)["k"] for _, v in plain.execute("SELECT k, v FROM documents")]

    def seen() -> list[str]:
        return [d["k"] for d in store.query({}, properties=["k"])]

    assert seen() == file_keys()

    def raw_write(statements: list[tuple[str, tuple]]) -> None:  # another writer, outside montydb
        with sqlite3.connect(path) as plain:
            for sql, args in statements:
                plain.execute(sql, args)

    doc = {"_id": "x", "k": "x", "n": 1}
    encoded = (bson.encode({"_id": "x"})[4:-1], bson.encode(doc))
    later = (bson.encode({"_id": "y"})[4:-1], bson.encode({"_id": "y", "k": "y", "n": 2}))
    raw_write([("INSERT INTO documents(k, v) VALUES (?, ?)", encoded), ("INSERT INTO documents(k, v) VALUES (?, ?)", later),
               ("INSERT OR REPLACE INTO documents(k, v) VALUES (?, ?)", encoded)])  # x moves after y
    assert file_keys()[-2:] == ["y", "x"]
    assert seen() == file_keys()

    with sqlite3.connect(path) as plain:
        plain.execute("DROP TRIGGER perovdb_inserted")
    store.update([{"k": "z", "n": 3}])  # not logged: the reader must notice the log is gone
    assert seen() == file_keys() and "z" in seen()
    store.update([{"k": "w", "n": 4}])  # the reader put the log back
    assert seen() == file_keys() and "w" in seen()
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM sqlite_master WHERE name = 'perovdb_inserted'").fetchone()[0] == 1

    monkeypatch.setattr(embedded_scan, "_LOG_KEEP", 3)
    for i in range(12):
        store.update([{"k": f"v{i}", "n": i}])
        assert seen() == file_keys()
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM perovdb_changes").fetchone()[0] < 2 * 3 + 1
    db.close()
