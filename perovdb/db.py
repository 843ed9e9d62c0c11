"""One way to open the database: ``connect(uri)`` → a ``Database`` holding one maggma Store per collection.

URIs: ``mongodb://`` / ``mongodb+srv://`` (a MongoDB server), ``monty:///path`` (embedded montydb on
disk, the default) and ``memory://`` (mongomock, for tests). Nothing outside this module knows which
backend is behind a Store; the backends' gaps (montydb has no indexes and no bulk writes, maggma's
MemoryStore forgets its data when closed) are handled here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bson import ObjectId
from maggma.core import Store
from maggma.stores import MemoryStore, MongoStore, MontyStore
from monty.json import jsanitize

from perovdb import embedded_scan
from perovdb.artifacts import ArtifactStore, DirectoryArtifactStore, GridFSArtifactStore, MemoryArtifactStore
from perovdb.config import Settings, get_settings
from perovdb.documents import COLLECTIONS
from perovdb.errors import ConfigurationError
from perovdb.locks import ThreadLocks, document_lock, file_lock

logger = logging.getLogger(__name__)

#: fields each collection is queried by (the key gets a unique index on top)
INDEXES: dict[str, tuple[str, ...]] = {
    "structures": ("reduced_formula", "elements", "nsites", "origin", "perovskite.mixing_type", "last_updated"),
    "calculations": ("structure_id", "level_of_theory", "source.dataset", "last_updated"),
    "materials": ("structure_ids", "calculation_ids", "reduced_formula", "elements", "group_key", "last_updated"),
    "models": ("name", "target_property", "active", "last_updated"),
    "predictions": ("model_id", "structure_id", "property", "stale", "last_updated"),
    "evaluations": ("model_id", "property", "last_updated"),
}


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to print or log)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


#: values ``jsanitize`` leaves as they are
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None), datetime, ObjectId, bytes})


def _plain(document: dict) -> bool:
    """Whether ``document`` holds only dicts with string keys, lists and plain scalars (exact types), so
    ``jsanitize`` would return it unchanged: the documents perovdb writes, checked several times faster."""
    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            if not all(type(key) is str for key in value):
                return False
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        elif kind not in _PLAIN_SCALARS:
            return False
    return True


def upsert(store: Store, docs: list[dict] | dict, key: list | str | None = None) -> None:
    """Upsert by key with one ``insert_many`` for new documents and ``replace_one`` only for existing ones.

    mongomock and montydb have no fast bulk upsert (maggma's ``bulk_write`` of ``ReplaceOne`` scans the
    collection once per document there), so both backends' stores write through this.
    """
    docs = [docs] if isinstance(docs, dict) else list(docs)
    if not docs:
        return
    key = key or store.key
    fields = key if isinstance(key, list) else [key]
    docs = [dict(d) if _plain(d) else jsanitize(d, allow_bson=True) for d in docs]  # dict(d): our "_id", not theirs
    if store.validator:
        for d in docs:
            if not store.validator.is_valid(d):
                raise ValueError(store.validator.validation_errors(d))
    latest: dict[tuple, dict] = {tuple(d[f] for f in fields): d for d in docs}  # last one wins, as in MongoDB
    collection = store._collection
    existing: dict[tuple, Any] = {}
    if len(fields) == 1:
        wanted = {k[0] for k in latest}
        if getattr(store, "indexed", False):  # an index answers '$in'
            found = store.query({fields[0]: {"$in": list(wanted)}}, properties=[fields[0]])
        else:  # one projected scan, matched in Python: mongomock tests '$in' against every document (O(N·K))
            found = store.query({}, properties=[fields[0]])
        for d in found:
            if d.get(fields[0]) in wanted:
                existing[(d[fields[0]],)] = d["_id"]
    else:
        for k in latest:
            found = collection.find_one(dict(zip(fields, k)), {"_id": 1})
            if found is not None:
                existing[k] = found["_id"]
    new = [d for k, d in latest.items() if k not in existing]
    if new:
        collection.insert_many(new)
    replace = getattr(store, "replace_by_id", None)
    if replace is not None and existing:
        replace([{**latest[k], "_id": _id} for k, _id in existing.items()])
    else:
        for k in existing:
            collection.replace_one(dict(zip(fields, k)), latest[k], upsert=True)


#: an ``$in`` list longer than this is matched in Python on backends without indexes. Measured on 1 219
#: structures: the backends' own ``$in`` costs about N·K comparisons, a Python-side scan costs copying
#: (mongomock) or decoding (montydb) every document, which is cheap for a few projected fields and
#: dear for whole structure documents; so whole documents are scanned only for longer lists.
SCAN_IN_THRESHOLD = {"projected": 100, "whole": 300}


def _large_in(criteria: dict | None, threshold: int) -> tuple[str, set, dict] | None:
    """(field, values, other criteria) when ``criteria`` has one top-level field with a long ``$in`` of ids."""
    if not criteria:
        return None
    for field, condition in criteria.items():
        if (
            not field.startswith("$")
            and "." not in field
            and isinstance(condition, dict)
            and list(condition) == ["$in"]
            and isinstance(condition["$in"], (list, tuple, set))
            and len(condition["$in"]) > threshold
            and all(isinstance(v, (str, int)) for v in condition["$in"])
        ):
            rest = {k: v for k, v in criteria.items() if k != field}
            return field, set(condition["$in"]), rest
    return None


def scan_query(store: Store, base_query: Any, criteria: dict | None, properties: Any, **kwargs: Any) -> Iterator[dict]:
    """``query`` with a long ``$in`` matched in Python after one scan.

    mongomock and montydb test ``$in`` by walking the list for every stored document (O(N·K)); a set
    lookup per document makes bulk lookups by id linear.
    """
    found = _large_in(criteria, SCAN_IN_THRESHOLD["projected" if properties else "whole"])
    if found is None:
        yield from base_query(criteria=criteria, properties=properties, **kwargs)
        return
    field, values, rest = found
    skip, limit = kwargs.pop("skip", 0) or 0, kwargs.pop("limit", 0) or 0
    projection = properties
    if isinstance(properties, list) and field not in properties:
        projection = [*properties, field]
    elif isinstance(properties, dict) and properties and field not in properties:
        projection = {**properties, field: 1}
    matched, wanted = 0, embedded_scan.equals_one_of(values)
    for doc in base_query(criteria=rest, properties=projection, **kwargs):
        if not wanted(doc.get(field)):
            continue
        matched += 1
        if matched <= skip:
            continue
        if projection is not properties:
            doc.pop(field, None)
        yield doc
        if limit and matched - skip >= limit:
            return


class SharedMemoryStore(MemoryStore):
    """A MemoryStore on a mongomock database shared by all collections of one ``Database``.

    Unlike maggma's MemoryStore, ``close()`` keeps the data: it lives as long as the Database, so a
    builder's ``finalize()`` does not wipe the target (maggma #830).
    """

    def __init__(self, collection_name: str, mongomock_database: Any, **kwargs: Any) -> None:
        self._mongomock_database = mongomock_database
        super().__init__(collection_name=collection_name, **kwargs)

    def connect(self, force_reset: bool = False) -> None:
        self._coll = self._mongomock_database[self.collection_name]

    def close(self) -> None:
        """Nothing to release; the data stays with the Database."""

    def query(self, criteria: dict | None = None, properties: Any = None, **kwargs: Any) -> Iterator[dict]:
        """maggma ``query``; long ``$in`` lists are matched in one scan (see ``scan_query``)."""
        return scan_query(self, super().query, criteria, properties, **kwargs)

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert by key (see ``upsert``)."""
        upsert(self, docs, key)

    @property
    def name(self) -> str:
        return f"memory://{self.collection_name}"


class EmbeddedStore(MontyStore):
    """A MontyStore that works with maggma builders: indexes are a no-op, writes are batched, and plain
    reads go straight to montydb's SQLite files (``embedded_scan``)."""

    def connect(self, force_reset: bool = False) -> None:
        """Open the montydb repository, writing its storage configuration only when it is missing.

        maggma's ``MontyStore.connect`` rewrites the configuration files on every connect (truncate,
        then write), so a second process opening the same repository at that moment reads an empty
        storage name. Here the files are written once, under a file lock, and then only read.
        """
        if self._coll is not None and not force_reset:
            return
        from montydb import MontyClient, set_storage

        repository = Path(self.database_path)

        def configured() -> bool:  # both files montydb reads: the storage name and its options
            return (repository / ".monty.storage").is_file() and (repository / "monty.storage.cfg").is_file()

        if not configured():
            with file_lock(repository, "montydb-setup", timeout=60.0):
                if not configured():
                    set_storage(self.database_path, storage=self.storage, **self.storage_kwargs)
        client = MontyClient(self.database_path, **self.client_kwargs)
        self._coll = client[self.database_name][self.collection_name]

    def ensure_index(self, key: str, unique: bool | None = False) -> bool:
        """montydb has no indexes; on its "sqlite" storage perovdb keeps an in-memory index of ``key``,
        updated after each write through this store (``update``, ``remove_docs``) and on first use after
        writes by others. Uniqueness is not enforced (``update`` upserts by key)."""
        file = self._sqlite_file
        return file is not None and file.ensure_index(key)

    @property
    def indexed(self) -> bool:
        """Whether plain filters are answered from in-memory indexes (montydb's "sqlite" storage)."""
        return self._sqlite_file is not None

    @property
    def _sqlite_file(self) -> embedded_scan.CollectionFile | None:
        """The collection's SQLite file (montydb's "sqlite" storage) as read by ``embedded_scan``, else None."""
        if self.storage != "sqlite":
            return None
        if getattr(self, "_file", None) is None:
            path = Path(self.database_path) / self.database_name / f"{self.collection_name}.collection"
            self._file = embedded_scan.CollectionFile(path, self._collection.codec_options)
        return self._file

    def close(self) -> None:
        """Close montydb and drop the documents held for fast reads."""
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None
        super().close()

    def query(
        self,
        criteria: dict | None = None,
        properties: Any = None,
        sort: dict | None = None,
        hint: dict | None = None,
        skip: int = 0,
        limit: int = 0,
        **kwargs: Any,
    ) -> Iterator[dict]:
        """maggma ``query``: plain queries read the SQLite file directly (see ``embedded_scan``), the rest
        go to montydb, with long ``$in`` lists matched in one scan (see ``scan_query``)."""
        file = self._sqlite_file
        if file is not None and not hint and not kwargs and self.default_sort is None:
            found = file.scan(criteria, properties, sort, skip, limit)
            if found is not None:
                return found
        return scan_query(
            self, super().query, criteria, properties, sort=sort, hint=hint, skip=skip, limit=limit, **kwargs
        )

    def state(self) -> str | None:
        """A token that changes with every write to the collection (see ``CollectionFile.state``)."""
        file = self._sqlite_file
        return None if file is None else file.state()

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """maggma ``distinct``, read from the SQLite file for plain filters and values."""
        file = self._sqlite_file
        if file is not None:
            found = file.distinct(field, criteria)
            if found is not None:
                return found
        return super().distinct(field, criteria, all_exist=all_exist)

    def count(self, criteria: dict | None = None, hint: dict | None = None) -> int:
        """maggma ``count``, read from the SQLite file for plain filters."""
        file = self._sqlite_file
        if file is not None and not hint:
            found = file.count(criteria)
            if found is not None:
                return found
        return super().count(criteria, hint=hint)

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert by key (see ``upsert``), then bring the indexes up to date."""
        upsert(self, docs, key)
        self._maintain()

    def remove_docs(self, criteria: dict) -> None:
        """maggma ``remove_docs``, then bring the indexes up to date."""
        super().remove_docs(criteria)
        self._maintain()

    def _maintain(self) -> None:
        file = self._sqlite_file
        if file is not None:
            file.maintain()

    def replace_by_id(self, docs: list[dict]) -> None:
        """Replace documents by ``_id`` in one storage transaction.

        montydb's ``replace_one`` scans and decodes the whole collection per call; its storage layer
        updates by ``_id`` directly, all documents in one transaction.
        """
        self._collection._storage.update_many(self._collection, docs)


class Database:
    """The perovdb collections on one backend, plus the artifact store for large binary data."""

    def __init__(self, uri: str, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.uri = uri
        self.backend = _backend_of(uri)
        self._stores: dict[str, Store] = {}
        self._mongomock_client: Any = None
        self._thread_locks = ThreadLocks()
        self.artifacts: ArtifactStore = self._make_artifacts()

    @contextmanager
    def lock(self, name: str, timeout: float = 600.0) -> Iterator[None]:
        """Hold the named writer lock (e.g. ``"ingest"``, ``"build"``) across threads, processes and hosts."""
        if self.backend == "memory":
            with self._thread_locks.hold(name, timeout):
                yield
        elif self.backend == "monty":
            assert self.embedded_path is not None
            with file_lock(self.embedded_path, name, timeout):
                yield
        else:
            with document_lock(self._pymongo_database()["locks"], name, timeout):
                yield

    # -- stores ---------------------------------------------------------------------------
    def store(self, name: str, key: str | None = None) -> Store:
        """The connected Store of collection ``name`` (any name: the domain ones and jobflow's)."""
        if name not in self._stores:
            key = key or (COLLECTIONS[name][1] if name in COLLECTIONS else "uuid")
            store = self._make_store(name, key)
            store.connect()
            self._stores[name] = store
        return self._stores[name]

    def new_store(self, name: str, key: str) -> Store:
        """A fresh, unconnected Store of collection ``name`` on this backend (for jobflow and maggma runners)."""
        return self._make_store(name, key)

    @property
    def structures(self) -> Store:
        """Crystal structures."""
        return self.store("structures")

    @property
    def calculations(self) -> Store:
        """DFT (and experimental) results."""
        return self.store("calculations")

    @property
    def materials(self) -> Store:
        """Per-structure summaries (built)."""
        return self.store("materials")

    @property
    def models(self) -> Store:
        """Registered ML models."""
        return self.store("models")

    @property
    def predictions(self) -> Store:
        """Model predictions."""
        return self.store("predictions")

    @property
    def evaluations(self) -> Store:
        """Model evaluations against reference calculations."""
        return self.store("evaluations")

    def collections(self) -> dict[str, Store]:
        """All domain collections by name."""
        return {name: self.store(name) for name in COLLECTIONS}

    # -- setup ----------------------------------------------------------------------------
    def ensure_indexes(self) -> dict[str, list[str]]:
        """Create the indexes each collection's queries need, where the backend supports indexes."""
        created: dict[str, list[str]] = {}
        for name, (_, key) in COLLECTIONS.items():
            store = self.store(name)
            made = [key] if store.ensure_index(key, unique=True) else []
            made += [field for field in INDEXES.get(name, ()) if store.ensure_index(field)]
            created[name] = made
        return created

    def install_validators(self) -> list[str]:
        """On a MongoDB server, install each document's JSON Schema as a ``$jsonSchema`` validator."""
        if self.backend != "mongodb":
            return []
        from perovdb.schemas import mongo_validator

        database = self._pymongo_database()
        existing = set(database.list_collection_names())
        for name, (document, _) in COLLECTIONS.items():
            validator = {"$jsonSchema": mongo_validator(document)}
            if name in existing:
                database.command("collMod", name, validator=validator, validationLevel="strict")
            else:
                database.create_collection(name, validator=validator, validationLevel="strict")
        return list(COLLECTIONS)

    def close(self) -> None:
        """Close every store (embedded and memory data stay)."""
        for store in self._stores.values():
            try:
                store.close()
            except Exception:  # closing must never mask the real outcome
                logger.debug("closing %s failed", store.name, exc_info=True)
        self._stores.clear()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({redact_uri(self.uri)!r})"

    # -- backends -------------------------------------------------------------------------
    @property
    def embedded_path(self) -> Path | None:
        """Directory of the embedded store (``monty://``), else None."""
        if self.backend != "monty":
            return None
        return Path(self.uri[len("monty://") :]).expanduser()

    def _make_store(self, name: str, key: str) -> Store:
        if self.backend == "memory":
            if self._mongomock_client is None:
                import mongomock_ng

                self._mongomock_client = mongomock_ng.MongoClient()
            return SharedMemoryStore(name, self._mongomock_client[self.settings.database], key=key)
        if self.backend == "monty":
            path = self.embedded_path
            assert path is not None
            path.mkdir(parents=True, exist_ok=True)
            return EmbeddedStore(
                name, database_path=str(path.resolve()), database_name=self.settings.database, key=key
            )
        return MongoStore.from_uri(self.uri, name, database=self._server_database_name(), key=key)

    def _make_artifacts(self) -> ArtifactStore:
        if self.backend == "memory":
            return MemoryArtifactStore()
        if self.backend == "monty":
            path = self.embedded_path
            assert path is not None
            return DirectoryArtifactStore(path / "artifacts")
        return GridFSArtifactStore(self.uri, self._server_database_name())

    def _server_database_name(self) -> str:
        path = urlsplit(self.uri).path.lstrip("/")
        return path or self.settings.database

    def _pymongo_database(self) -> Any:
        from pymongo import MongoClient

        client: Any = MongoClient(self.uri)
        return client[self._server_database_name()]


def store_state(store: Store) -> str | None:
    """A token that changes whenever ``store`` is written, or None when the backend cannot tell cheaply
    (MongoDB, memory, or a write too recent to tell apart from the next one)."""
    state = getattr(store, "state", None)
    return state() if callable(state) else None


def backend_errors() -> tuple[type[Exception], ...]:
    """What the backends raise when an operation or a connection fails: pymongo's errors (MongoDB and
    mongomock) and montydb's, for callers that turn them into clean messages."""
    import pymongo.errors
    from montydb.errors import MontyError

    return (pymongo.errors.PyMongoError, MontyError)


def _backend_of(uri: str) -> str:
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return "mongodb"
    if uri.startswith("monty://"):
        if not uri[len("monty://") :]:
            raise ConfigurationError("monty:// needs a directory, e.g. monty://.perovdb or monty:///data/perovdb")
        return "monty"
    if uri.rstrip("/") in {"memory:", "memory:/"} or uri.startswith("memory://"):
        return "memory"
    raise ConfigurationError(
        f"unsupported database URI {redact_uri(uri)!r}: use mongodb://…, mongodb+srv://…, monty:///path or memory://"
    )


def connect(uri: str | None = None, *, settings: Settings | None = None, ensure_indexes: bool = True) -> Database:
    """Open the perovdb collections at ``uri`` (default: ``PEROVDB_URI``, else the embedded store ``./.perovdb``)."""
    settings = settings or get_settings()
    database = Database(uri or settings.uri, settings)
    if ensure_indexes:
        database.ensure_indexes()
    return database


@contextmanager
def opened(uri: str | None = None, **kwargs: Any) -> Iterator[Database]:
    """``with opened(uri) as db:`` — connect and close."""
    database = connect(uri, **kwargs)
    try:
        yield database
    finally:
        database.close()


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Split ``items`` into lists of at most ``size``."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


