"""A fast read path for the embedded store: montydb's SQLite file, held in memory, with indexes.

montydb answers every query by decoding every document of the collection and walking its query engine
over each, with no indexes. Here (``CollectionFile``):

- the raw BSON of a collection is read once per committed version of its file (SQLite's
  ``data_version`` tells when another connection, in this process or another, committed; rows whose
  bytes did not change keep what was derived from them); after the first read, only the rows named by
  the file's change log are read again (SQLite triggers perovdb installs on montydb's table log every
  insert, update and delete, whoever writes; after a delete, the whole file is read);
- a document is wrapped in a ``RawBSONDocument`` when it is read, so its top-level fields are tested
  without decoding nested documents, and only what is returned is decoded;
- equality, ``$in``, ``$all`` and ranges of numbers or dates are narrowed through field indexes, and sorts through
  orders, both built on first use; an index is patched, not rebuilt, when few documents changed, and
  the fields given ``ensure_index`` are kept current by writes through the store (``maintain``); the
  last few selections are kept (the count of the page just read is free), and projections are kept as
  BSON per document until it changes;
- ``state()`` gives a token that changes with every write, so a builder can tell in milliseconds that
  nothing changed since its last run.

Only queries whose meaning is plain are taken here, so results equal montydb's (a test compares them):

- filters: fields (dotted paths through embedded documents) with a string, number or boolean, ``$eq``, ``$in``
  (an array field matches when an element does), ``$all``, ``$gt``/``$gte``/``$lt``/``$lte`` with
  numbers or dates, ``$ne`` with a string, number or null; ``$and`` and ``$or`` of such filters;
- projections of fields to include; sorting by fields holding null, numbers, strings, booleans or
  dates; skip and limit; ``distinct`` of a field holding strings or numbers (or arrays of them).

Anything else, or a document where the plain reading could differ from MongoDB's (a dotted path
through an array, a range or sort on an array), returns ``None`` and the caller asks montydb.
"""

from __future__ import annotations

import math
import operator
import os
import sqlite3
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import compress, count, islice
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion, TypeRegistry
from bson.raw_bson import RawBSONDocument

from perovdb.documents.base import naive_utc

Matcher = Callable[[Any], bool]
_RANGES = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


class _NotPlain(Exception):
    """A document where the plain reading could differ from MongoDB's."""


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain_path(field: Any) -> bool:
    return isinstance(field, str) and bool(field) and not field.startswith("$") and "" not in field.split(".")


def _fields_of(value: Any) -> Mapping[str, Any] | None:
    """The top-level fields of an embedded document (a RawBSONDocument's decoded top level, read without
    its per-access Python overhead), None for anything else."""
    if isinstance(value, RawBSONDocument):
        return value.items().mapping
    return value if isinstance(value, dict) else None


def _value_at(document: Any, path: list[str]) -> tuple[bool, Any]:
    """(found, value) of a dotted path; intermediate values must be embedded documents."""
    value = document
    for part in path:
        if isinstance(value, list):
            raise _NotPlain
        if isinstance(value, _Row):
            found, value = value.field(part)
            if not found:
                return False, None
            continue
        fields = _fields_of(value)
        if fields is None or part not in fields:
            return False, None
        value = fields[part]
    return True, value


def equals_one_of(allowed: set) -> Callable[[Any], bool]:
    """MongoDB's ``{field: {"$in": allowed}}`` on a field's value, for strings and numbers: the value, or an
    element of an array value, is one of ``allowed`` (numbers by value, never booleans)."""

    def test(value: Any) -> bool:
        if isinstance(value, list):
            return any(_scalar(v) and v in allowed for v in value)
        return _scalar(value) and value in allowed

    return test


def _bound(argument: Any) -> tuple[str, Any] | None:
    """(kind, comparable value) of a range bound: a number, or a date as BSON stores it (UTC, whole
    milliseconds); None for anything else."""
    if _number(argument):
        return ("number", argument)
    if isinstance(argument, datetime):
        argument = naive_utc(argument)
        return ("date", argument.replace(microsecond=argument.microsecond // 1000 * 1000))
    return None


def _in_range(kind: str, bounds: list[tuple[Callable[[Any, Any], bool], Any]]) -> Callable[[Any], bool]:
    """Values of ``kind`` (numbers or dates: MongoDB compares within a type) within every bound."""

    def test(value: Any) -> bool:
        if isinstance(value, list):
            raise _NotPlain  # each bound may be met by a different element
        if kind == "date":
            return isinstance(value, datetime) and all(compare(naive_utc(value), bound) for compare, bound in bounds)
        return _number(value) and all(compare(value, bound) for compare, bound in bounds)

    return test


def _contains_all(required: set) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if isinstance(value, list):
            if any(isinstance(v, (list, RawBSONDocument, dict)) for v in value):
                raise _NotPlain
            return required <= {v for v in value if _scalar(v)}
        return _scalar(value) and required == {value}

    return test


def _is(flag: bool) -> Callable[[Any], bool]:
    """MongoDB's ``{field: flag}`` for a boolean: the value, or an element of an array value, is that boolean
    (never the number 1 or 0)."""

    def test(value: Any) -> bool:
        return value is flag or (isinstance(value, list) and any(v is flag for v in value))

    return test


def _field_test(condition: Any) -> Callable[[Any], bool] | None:
    """The test a field's value must pass, or None when the condition is not plain."""
    if _scalar(condition):
        return equals_one_of({condition})
    if isinstance(condition, bool):
        return _is(condition)
    if not isinstance(condition, dict) or not condition:
        return None
    tests, bounds, kinds = [], [], set()
    for op, argument in condition.items():
        if op == "$eq" and _scalar(argument):
            tests.append(equals_one_of({argument}))
        elif op == "$eq" and isinstance(argument, bool):
            tests.append(_is(argument))
        elif op == "$in" and isinstance(argument, (list, tuple, set)) and all(_scalar(v) for v in argument):
            tests.append(equals_one_of(set(argument)))
        elif op == "$all" and isinstance(argument, (list, tuple)) and argument and all(_scalar(v) for v in argument):
            tests.append(_contains_all(set(argument)))
        elif op in _RANGES and (bound := _bound(argument)) is not None:
            kinds.add(bound[0])
            bounds.append((_RANGES[op], bound[1]))
        else:
            return None
    if len(kinds) > 1:
        return None  # a number and a date bound on one field: left to montydb
    if bounds:
        tests.append(_in_range(kinds.pop(), bounds))
    return lambda value: all(test(value) for test in tests)


def _not_equal(path: list[str], unwanted: Any) -> Matcher:
    """``{path: {"$ne": unwanted}}`` as MongoDB reads it: the negation of ``{path: unwanted}``, where
    ``{path: None}`` matches a missing field, a null and an array holding a null."""

    def test(document: Any) -> bool:
        found, value = _value_at(document, path)
        if unwanted is None:
            return found and value is not None and not (isinstance(value, list) and None in value)
        return not (found and equals_one_of({unwanted})(value))

    return test


def plain_filter(criteria: dict | None) -> Matcher | None:
    """A document → bool matcher for a filter this module can answer, else None."""
    if criteria is None:
        return lambda document: True
    if not isinstance(criteria, dict):
        return None
    parts: list[Matcher] = []
    for field, condition in criteria.items():
        if field in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                return None
            clauses = [plain_filter(clause) if isinstance(clause, dict) else None for clause in condition]
            if any(clause is None for clause in clauses):
                return None
            combine = all if field == "$and" else any
            parts.append(lambda document, clauses=clauses, combine=combine: combine(c(document) for c in clauses))
            continue
        if _plain_path(field) and isinstance(condition, dict) and list(condition) == ["$ne"]:
            unwanted = condition["$ne"]
            if unwanted is None or _scalar(unwanted):
                parts.append(_not_equal(field.split("."), unwanted))
                continue
        test = _field_test(condition) if _plain_path(field) else None
        if test is None:
            return None
        path = field.split(".")

        def field_matches(document: Any, path: list[str] = path, test: Callable[[Any], bool] = test) -> bool:
            found, value = _value_at(document, path)
            return found and test(value)

        parts.append(field_matches)
    return lambda document: all(part(document) for part in parts)


def plain_projection(properties: Any) -> list[list[str]] | None | bool:
    """Paths to return; None for whole documents; False when the projection is not plain."""
    if not properties:
        return None
    if isinstance(properties, dict):
        if not all(v in (1, True) for v in properties.values()):
            return False
        properties = list(properties)
    if not isinstance(properties, (list, tuple)) or not all(_plain_path(p) for p in properties):
        return False
    paths = sorted({p for p in properties if p != "_id"})
    if any(q.startswith(p + ".") for p in paths for q in paths):
        return False  # a path and its sub-path: MongoDB refuses the projection
    return [p.split(".") for p in paths]


def plain_sort(sort: Any) -> list[tuple[list[str], bool]] | None | bool:
    """``[(path, descending)]``; None for no sort; False when not plain."""
    if not sort:
        return None
    items = list(sort.items()) if isinstance(sort, dict) else list(sort)
    result = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and _plain_path(item[0])):
            return False
        direction = getattr(item[1], "value", item[1])
        if direction not in (1, -1):
            return False
        result.append((item[0].split("."), direction == -1))
    return result


def _sort_key(document: Any, path: list[str]) -> tuple[int, Any]:
    """MongoDB's order across types (null < numbers < strings < booleans < dates) for plain values."""
    found, value = _value_at(document, path)
    if not found or value is None:
        return (1, 0)
    if isinstance(value, bool):
        return (8, value)
    if _number(value):
        return (2, (0, 0)) if _nan(value) else (2, (1, value))  # NaN before every number, as in MongoDB
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, datetime):
        return (9, value)
    raise _NotPlain  # arrays, documents, ids…: MongoDB's rules are richer than this module's


def _decoder(codec_options: CodecOptions) -> Callable[[Any], Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, RawBSONDocument):
            return bson.decode(value.raw, codec_options=codec_options)
        if isinstance(value, list):
            return [plain(v) if isinstance(v, (RawBSONDocument, list)) else v for v in value]
        return value

    return plain


def _project(value: Any, path: list[str], plain: Callable[[Any], Any]) -> dict[str, Any] | None:
    """What projecting ``path`` keeps of ``value`` (an embedded document), as MongoDB does: ``{}`` when the
    document lacks the path's next field, None when ``value`` is not a document."""
    if isinstance(value, list):
        raise _NotPlain
    fields = _fields_of(value)
    if fields is None:
        return None
    head, rest = path[0], path[1:]
    if head not in fields:
        return {}
    if not rest:
        return {head: plain(fields[head])}
    inner = _project(fields[head], rest, plain)
    return {} if inner is None else {head: inner}


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


#: sizes of BSON values of fixed length, by type byte (double, ObjectId, bool, date, null, int32,
#: timestamp, int64, decimal128, undefined, min and max key)
_FIXED_SIZE = {1: 8, 7: 12, 8: 1, 9: 8, 10: 0, 16: 4, 17: 8, 18: 8, 19: 16, 6: 0, 127: 0, 255: 0}
#: types whose value starts with its length: string, JavaScript, symbol (+4), document, array, code
#: with scope (the length includes itself), binary (+4 for the length, +1 for the subtype)
_SIZED = {2: 4, 13: 4, 14: 4, 3: 0, 4: 0, 15: 0, 5: 5}
_INT32 = struct.Struct("<i").unpack_from
_INT64 = struct.Struct("<q").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from
_INT32_PACK = struct.Struct("<i").pack
_EPOCH = datetime(1970, 1, 1)


@lru_cache(maxsize=4096)  # documents written together share their stamps
def _naive_date(milliseconds: int) -> datetime:
    """A BSON date (milliseconds since the epoch) as naive UTC."""
    return _EPOCH + timedelta(0, 0, 0, milliseconds)


def _native(options: CodecOptions) -> bool:
    """Whether ``options`` decode strings, numbers and dates as Python's own types, dates as naive UTC."""
    return (
        options.type_registry == TypeRegistry()
        and not options.tz_aware
        and options.datetime_conversion == DatetimeConversion.DATETIME
    )


def _scalar_of(kind: int, raw: bytes, start: int, size: int, options: CodecOptions) -> tuple[bool, Any]:
    """(decoded, value) of a string, date, double, int32, boolean or null value read straight from the
    bytes, as ``bson.decode`` with ``options`` (``_native``) gives it; (False, None) for other types."""
    if kind == 2:
        return True, raw[start + 4 : start + size - 1].decode("utf-8", options.unicode_decode_error_handler)
    if kind == 9:
        try:
            return True, _naive_date(_INT64(raw, start)[0])
        except OverflowError:
            return False, None
    if kind == 1:
        return True, _DOUBLE(raw, start)[0]
    if kind == 16:
        return True, _INT32(raw, start)[0]
    if kind == 10:
        return True, None
    if kind == 8 and raw[start] in (0, 1):
        return True, raw[start] == 1
    return False, None


class _Row(RawBSONDocument):
    """A stored document as raw BSON, whose top-level fields can be read one at a time."""

    __slots__ = ("_plain_options", "_scalars")

    def __init__(
        self, bson_bytes: bytes, codec_options: CodecOptions, plain_options: CodecOptions, scalars: bool = False
    ) -> None:
        """``scalars``: read strings, numbers and dates straight from the bytes (``plain_options`` decode
        them as Python's own types: no type registry, naive dates)."""
        super().__init__(bson_bytes, codec_options)
        self._plain_options = plain_options
        self._scalars = scalars

    def field(self, name: str) -> tuple[bool, Any]:
        """(found, value) of the top-level field ``name``, embedded documents as dicts.

        Walks the top-level elements of the BSON, skipping each value by its length, and decodes only
        the element asked for: several times faster than decoding the top level (which wraps every
        embedded document), and what most filters, indexes and sorts need.
        """
        raw, key = self.raw, name.encode()
        position, end = 4, len(raw) - 1
        while position < end:
            kind = raw[position]
            start = raw.index(0, position + 1) + 1  # the value, after the field name's NUL
            size = _FIXED_SIZE.get(kind)
            if size is None:
                extra = _SIZED.get(kind)
                if extra is None:  # a regular expression or DBPointer: let the full decoder read it
                    fields = self.items().mapping
                    return (name in fields), fields.get(name)
                size = _INT32(raw, start)[0] + extra
            if raw[position + 1 : start - 1] == key:
                if self._scalars:
                    decoded, value = _scalar_of(kind, raw, start, size, self._plain_options)
                    if decoded:
                        return True, value
                element = raw[position : start + size]
                single = _INT32_PACK(len(element) + 5) + element + b"\x00"
                return True, bson.decode(single, codec_options=self._plain_options)[name]
            position = start + size
        return False, None


class _Rows(Sequence):
    """The documents of a collection file as raw BSON, each wrapped in a ``RawBSONDocument`` when read.

    Only ``bytes`` are held: they are invisible to Python's cyclic garbage collector, whereas decoded
    documents held by the hundred thousand made every full collection of the process walk them.
    """

    def __init__(self, raw: list[bytes], codec_options: CodecOptions) -> None:
        self.raw = raw
        self._options = codec_options.with_options(document_class=RawBSONDocument)
        self._plain_options = codec_options.with_options(document_class=dict)
        self._scalars = _native(self._plain_options)

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, position: int) -> _Row:  # type: ignore[override]
        return _Row(self.raw[position], self._options, self._plain_options, self._scalars)


def _rows_of(
    connection: sqlite3.Connection, codec_options: CodecOptions, previous: _Snapshot
) -> tuple[list[str], _Rows, set[str]]:
    """(keys, documents, keys of the rows added, changed or removed since ``previous``) of the collection
    file; a row whose bytes equal those of ``previous`` keeps the same ``bytes`` object, so what was
    cached of it stays valid."""
    before = dict(zip(previous.keys, previous.documents.raw))
    keys, raw, changed = [], [], set()
    for key, data in connection.execute("SELECT k, v FROM documents"):
        old = before.pop(key, None)
        keys.append(key)
        if old is not None and old == data:
            raw.append(old)
        else:
            raw.append(data)
            changed.add(key)
    changed.update(before)
    return keys, _Rows(raw, codec_options), changed


#: perovdb's change log in a collection file: SQLite triggers on montydb's table append (sequence number,
#: row key, operation) for every insert, update and delete, by any connection in any process, so a
#: reader that has read the file up to a sequence number reads only the rows changed since
_LOG_TABLE = "perovdb_changes"
_LOG_SCHEMA = (
    (
        f"CREATE TABLE IF NOT EXISTS {_LOG_TABLE}"
        "(seq INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL, op TEXT NOT NULL)"
    ),
    (
        f"CREATE TRIGGER IF NOT EXISTS perovdb_inserted AFTER INSERT ON documents "
        f"BEGIN INSERT INTO {_LOG_TABLE}(k, op) VALUES (new.k, 'i'); END"
    ),
    (  # montydb never changes a row's key; if anything did, readers see a delete (and read the file whole)
        f"CREATE TRIGGER IF NOT EXISTS perovdb_updated AFTER UPDATE ON documents "
        f"BEGIN INSERT INTO {_LOG_TABLE}(k, op) VALUES (old.k, CASE WHEN old.k = new.k THEN 'u' ELSE 'd' END); "
        f"INSERT INTO {_LOG_TABLE}(k, op) SELECT new.k, 'i' WHERE old.k <> new.k; END"
    ),
    (
        f"CREATE TRIGGER IF NOT EXISTS perovdb_deleted AFTER DELETE ON documents "
        f"BEGIN INSERT INTO {_LOG_TABLE}(k, op) VALUES (old.k, 'd'); END"
    ),
)
_LOG_TRIGGERS = ("perovdb_inserted", "perovdb_updated", "perovdb_deleted")
#: a read-write reader that finds twice this many entries cuts the log to this many; a reader further
#: behind reads the whole file
_LOG_KEEP = 100_000
#: how long a read waits for a writer holding the file (SQLite's busy timeout)
_BUSY_TIMEOUT_MS = 1000


def _has_change_log(connection: sqlite3.Connection) -> bool:
    found = {name for (name,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE name IN (?, ?, ?, ?)", (_LOG_TABLE, *_LOG_TRIGGERS))}
    return len(found) == 1 + len(_LOG_TRIGGERS)


def _ensure_change_log(connection: sqlite3.Connection) -> bool:
    """Install the change log in the file (once; needs write access); whether the file has one."""
    try:
        if _has_change_log(connection):
            return True
        if not connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'documents'").fetchone():
            return False  # montydb has not created its table yet
        with _no_waiting(connection):
            connection.execute("BEGIN IMMEDIATE")
            with _transaction(connection):
                for statement in _LOG_SCHEMA:
                    connection.execute(statement)
        return True
    except sqlite3.OperationalError:  # read-only, or a writer holds the file: read it whole meanwhile
        return False


@contextmanager
def _no_waiting(connection: sqlite3.Connection) -> Iterator[None]:
    """Within the block, a statement that finds the file locked by a writer fails at once (instead of
    waiting up to the connection's timeout)."""
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """The transaction begun just before the block: committed when the block ends, rolled back when it raises."""
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _logged_since(
    connection: sqlite3.Connection, since: int | None
) -> tuple[int, int | None, dict[str, list[str]] | None]:
    """(newest sequence number, oldest one still logged, {row key: its operations in order} logged after
    ``since``); the changes are None when the log cannot tell (no ``since``, or entries after it were cut)."""
    found = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (_LOG_TABLE,)).fetchone()
    newest = found[0] if found else 0
    oldest = connection.execute(f"SELECT min(seq) FROM {_LOG_TABLE}").fetchone()[0]
    if since is None or newest < since:
        return newest, oldest, None
    if newest == since:
        return newest, oldest, {}
    if oldest is None or oldest > since + 1:
        return newest, oldest, None
    changes: dict[str, list[str]] = {}
    for key, op in connection.execute(f"SELECT k, op FROM {_LOG_TABLE} WHERE seq > ? ORDER BY seq", (since,)):
        changes.setdefault(key, []).append(op)
    return newest, oldest, changes


def _rows_changed(
    connection: sqlite3.Connection, codec_options: CodecOptions, previous: _Snapshot, changes: dict[str, list[str]]
) -> tuple[list[str], _Rows, set[str]] | None:
    """What ``_rows_of`` would read, made from ``previous`` and the logged ``changes`` by reading only the
    changed rows: updated rows stay in place, inserted ones follow in the order they were inserted (the
    table's row order); None when rows were deleted, or when most rows changed (then the file is read
    whole, which is also cheaper than looking up most rows by key)."""
    if len(changes) > len(previous.keys) // 2:
        return None
    position = previous.positions()
    updated, added = [], []
    for key, ops in changes.items():
        # a row of the snapshot updated in place, or a new row inserted once (and maybe updated since);
        # anything else (a delete, a row inserted again, e.g. by INSERT OR REPLACE) may have moved rows
        if key in position and "i" not in ops and "d" not in ops:
            updated.append(key)
        elif key not in position and ops[0] == "i" and "i" not in ops[1:] and "d" not in ops:
            added.append(key)
        else:
            return None
    fetched: dict[str, bytes] = {}
    wanted = updated + added
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        query = f"SELECT k, v FROM documents WHERE k IN ({','.join('?' * len(part))})"
        fetched.update(connection.execute(query, part))
    if len(fetched) != len(wanted):
        return None
    raw = list(previous.documents.raw)
    changed = set(added)
    for key in updated:
        place = position[key]
        if fetched[key] != raw[place]:
            raw[place] = fetched[key]
            changed.add(key)
    raw.extend(fetched[key] for key in added)
    return [*previous.keys, *added], _Rows(raw, codec_options), changed


def _cut_change_log(connection: sqlite3.Connection, newest: int, oldest: int | None) -> None:
    """Drop the log entries older than the last ``_LOG_KEEP`` once twice as many are kept (never waiting
    for a writer)."""
    if oldest is None or newest - oldest < 2 * _LOG_KEEP:
        return
    try:
        with _no_waiting(connection):
            connection.execute(f"DELETE FROM {_LOG_TABLE} WHERE seq <= ?", (newest - _LOG_KEEP,))
    except sqlite3.OperationalError:
        pass  # a writer holds the file: cut next time


def _replaced(before: Sequence[Any], after: Sequence[Any]) -> list[int]:
    """Positions (in the common length) where ``after`` holds another object than ``before``; the loop
    runs in C (tens of thousands of rows are compared per index on every write)."""
    return list(compress(count(), map(operator.is_not, before, after)))


class _FieldIndex:
    """Positions of the documents by the value at one path, for narrowing plain filters.

    ``values`` maps each string or number at the path (or inside an array there) to positions;
    ``ordered`` holds, per kind (numbers, dates), the non-array values sorted with their positions, for
    ranges. Documents where the plain reading may differ from MongoDB's are always candidates:
    ``through_array`` (the path crosses an array) for every operator, ``arrays`` (an array at the path)
    for ranges, and ``nested_arrays`` (an array holding arrays or documents) for ``$all``.
    """

    _LISTS = ("through_array", "arrays", "nested_arrays", "unindexed")

    def __init__(self, entries: list[tuple | None]) -> None:
        """From each document's ``_index_entry``."""
        #: positions as tuples, which the cyclic garbage collector stops tracking (an index holds thousands)
        self.values: dict[Any, tuple[int, ...]] = {}
        listed: dict[Any, list[int]] = {}
        self.through_array: list[int] = []
        self.arrays: list[int] = []
        self.nested_arrays: list[int] = []
        self.unindexed: list[int] = []  # a value at the path that is neither string nor number (null, date…)
        pairs: dict[str, list[tuple[Any, int]]] = {"number": [], "date": []}
        for position, entry in enumerate(entries):
            if entry is not None:
                for target, value in _index_parts(entry):
                    if target == "values":
                        listed.setdefault(value, []).append(position)
                    elif target in pairs:
                        pairs[target].append((value, position))
                    else:
                        getattr(self, target).append(position)
        self.values = {value: tuple(positions) for value, positions in listed.items()}
        self.ordered: dict[str, tuple[list[Any], list[int]]] = {}
        for kind, found in pairs.items():
            found.sort()
            self.ordered[kind] = ([value for value, _ in found], [position for _, position in found])
        self._caches()

    def _caches(self) -> None:
        self._sets: dict[Any, frozenset[int]] = {}
        self.range_positions = lru_cache(maxsize=16)(self._range_positions)  # the last few ranges asked for

    def patched(self, before: list[tuple | None], entries: list[tuple | None]) -> _FieldIndex | None:
        """The index of ``entries``, made from this one (of ``before``) by changing only the documents whose
        entries differ (positions of ``before`` kept, documents added at the end); None when documents were
        removed or more than half of them changed: then building anew is as cheap."""
        if len(entries) < len(before):
            return None
        changed = [p for p in _replaced(before, entries) if before[p] != entries[p]]
        changed += range(len(before), len(entries))
        if not changed:
            return self
        if len(changed) > max(64, len(entries) // 2):
            return None
        drop: dict[tuple[str, Any], set[int]] = defaultdict(set)
        add: dict[tuple[str, Any], list[int]] = defaultdict(list)
        for position in changed:
            if position < len(before) and before[position] is not None:
                for part in _index_parts(before[position]):
                    drop[part].add(position)
            if entries[position] is not None:
                for part in _index_parts(entries[position]):
                    add[part].append(position)
        index = object.__new__(_FieldIndex)
        index.values = dict(self.values)
        for name in self._LISTS:
            setattr(index, name, getattr(self, name))
        index.ordered = dict(self.ordered)
        for kind in {part[0] for part in (*drop, *add)}:
            if kind == "values":
                for value in {value for target, value in (*drop, *add) if target == "values"}:
                    dropped, added = drop.get(("values", value), ()), add.get(("values", value), ())
                    kept = (*(p for p in index.values.get(value, ()) if p not in dropped), *added)
                    if kept:
                        index.values[value] = kept
                    else:
                        index.values.pop(value, None)
                continue
            gone = set().union(*(p for (target, _), p in drop.items() if target == kind))
            new = [(p, value) for (target, value), ps in add.items() if target == kind for p in ps]
            if kind in index.ordered:
                values, positions = index.ordered[kind]
                kept = [i for i, p in enumerate(positions) if p not in gone] if gone else range(len(positions))
                values, positions = [values[i] for i in kept], [positions[i] for i in kept]
                if len(new) <= 64:
                    for position, value in sorted(new, key=lambda pair: pair[1]):
                        place = bisect_right(values, value)
                        values.insert(place, value)
                        positions.insert(place, position)
                else:  # many: one sort of the two runs
                    pairs = sorted([*zip(values, positions), *((value, p) for p, value in new)])
                    values, positions = [value for value, _ in pairs], [p for _, p in pairs]
                index.ordered[kind] = (values, positions)
            else:
                listed = [p for p in getattr(index, kind) if p not in gone] + [p for p, _ in new]
                setattr(index, kind, listed)
        index._caches()
        return index

    def candidates(self, condition: Any) -> tuple[frozenset[int], bool] | None:
        """(positions that may match ``condition``, whether exactly those match), or None if it cannot say."""
        if _scalar(condition):
            condition = {"$eq": condition}
        if not isinstance(condition, dict) or not condition:
            return None
        found: frozenset[int] | None = None
        exact = True
        ranges: list[tuple[str, tuple[str, Any]]] = []
        for op, argument in condition.items():
            if op in ("$eq", "$in"):
                wanted = [argument] if op == "$eq" else list(argument)
                if not all(_indexable(v) for v in wanted):
                    return None
                part = _with(self.positions(wanted[0]) if len(wanted) == 1 else self._union(wanted), self.through_array)
                exact = exact and not self.through_array
            elif op == "$all":
                if not all(_indexable(v) for v in argument):
                    return None
                part = frozenset.intersection(*map(self.positions, argument))
                part = _with(part, self.through_array, self.nested_arrays)
                exact = exact and not self.through_array and not self.nested_arrays
            elif op in _RANGES and not _nan(argument) and (bound := _bound(argument)) is not None:
                ranges.append((op, bound))
                continue
            else:
                return None
            found = part if found is None else found & part
        if ranges:
            kinds = {kind for _, (kind, _) in ranges}
            if len(kinds) > 1:
                return None
            kind = kinds.pop()
            values = self.ordered[kind][0]
            start, stop = 0, len(values)  # the slice of ``values`` the range operators leave
            for op, (_, bound) in ranges:
                side = bisect_left if op in ("$gte", "$lt") else bisect_right
                if op in ("$gt", "$gte"):
                    start = max(start, side(values, bound))
                else:
                    stop = min(stop, side(values, bound))
            part = _with(self.range_positions(kind, start, stop), self.through_array, self.arrays)
            exact = exact and not self.through_array and not self.arrays
            found = part if found is None else found & part
        return (found if found is not None else frozenset()), exact

    def distinct(self, selected: AbstractSet[int] | None) -> list[Any] | None:
        """The distinct values among ``selected`` (None: all), or None when a document there holds a value
        the index does not (null, date, document…) or the path crosses an array."""
        unread = (*self.through_array, *self.nested_arrays, *self.unindexed)
        if selected is None:
            return None if unread else list(self.values)
        if any(p in selected for p in unread):
            return None
        return [value for value, positions in self.values.items() if any(p in selected for p in positions)]

    def _range_positions(self, kind: str, start: int, stop: int) -> frozenset[int]:
        """The documents of the sorted values of ``kind`` from ``start`` to ``stop``."""
        return frozenset(self.ordered[kind][1][start:stop])

    def _union(self, values: list[Any]) -> frozenset[int]:
        """The documents holding any of ``values`` (not kept: long lists of ids are rarely asked twice)."""
        found: set[int] = set()
        for value in values:
            found.update(self.values.get(value, ()))
        return frozenset(found)

    def positions(self, value: Any) -> frozenset[int]:
        """The documents holding ``value`` at the path (or in an array there)."""
        found = self._sets.get(value)
        if found is None:
            found = self._sets[value] = frozenset(self.values.get(value, ()))
        return found


def _index_parts(entry: tuple) -> list[tuple[str, Any]]:
    """Where an ``_index_entry`` puts its document in a ``_FieldIndex``: ("values", a value), ("number" or
    "date", a value in that sorted order), or (the name of a list of positions, None)."""
    kind, value = entry
    if kind == "scalar":
        return [("values", value), ("number", value)] if _number(value) else [("values", value)]
    if kind == "date":
        return [("unindexed", None), ("date", value)]
    if kind == "through array":
        return [("through_array", None)]
    if kind == "other":
        return [("unindexed", None)]
    parts = [("arrays", None)]
    if kind == "nested array":
        parts.append(("nested_arrays", None))
    elif kind == "array with others":
        parts.append(("unindexed", None))
    return parts + [("values", element) for element in value]


def _index_entry(document: RawBSONDocument, path: list[str]) -> tuple | None:
    """What a document gives an index of ``path``: ("scalar", value), ("date", naive UTC date), ("array",
    "array with others" or "nested array", its indexable elements), ("through array", None), ("other",
    None) for any other value, or None when the path is missing."""
    try:
        found, value = _value_at(document, path)
    except _NotPlain:
        return ("through array", None)
    if not found:
        return None
    if isinstance(value, list):
        if all(type(v) is str for v in value):  # ids, elements…: the common case
            return ("array", tuple(set(value)))
        indexable = tuple({v for v in value if _indexable(v)})
        if any(isinstance(v, (list, RawBSONDocument, dict)) for v in value):
            return ("nested array", indexable)
        return ("array" if all(_indexable(v) for v in value) else "array with others", indexable)
    if isinstance(value, datetime):
        return ("date", naive_utc(value))
    return ("scalar", value) if _indexable(value) else ("other", None)


def _sort_entry(document: RawBSONDocument, path: list[str]) -> tuple[int, Any] | None:
    """The sort key of ``path``, or None when this module does not sort the value."""
    try:
        return _sort_key(document, path)
    except _NotPlain:
        return None


def _with(found: frozenset[int], *always: list[int]) -> frozenset[int]:
    """``found`` plus the positions in ``always`` (no copy when there are none)."""
    return found.union(*always) if any(always) else found


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _indexable(value: Any) -> bool:
    """A value a plain filter can name: a string or a number other than NaN."""
    return isinstance(value, str) or (_number(value) and not _nan(value))


class _Snapshot:
    """The documents of one committed version of a collection file, with indexes and sort orders built
    on first use."""

    def __init__(
        self, keys: list[str], documents: _Rows, derived: dict, built: dict | None = None, columns: dict | None = None
    ) -> None:
        self.keys = keys  # montydb's row keys
        self.documents = documents
        #: per (kind, path): (keys, rows, what was derived from each) of the latest version derived, so a
        #: version with the same keys re-derives only the rows whose bytes changed, by position
        self._columns: dict[tuple[str, str], tuple[list[str], list[bytes], list[Any]]] = (
            {} if columns is None else columns
        )
        #: per (kind, path): per row key, (the row's bytes, what was derived from it), shared with the
        #: versions before and after this one, so an unchanged row is never decoded again
        self._derived: dict[tuple[str, str], dict[str, tuple[bytes, Any]]] = derived
        #: per path, the latest index built (by any version) and the entries it was built from: reused
        #: when a new version's entries are the same (writes that left the path alone)
        self._built: dict[str, tuple[list[tuple | None], _FieldIndex]] = {} if built is None else built
        self._indexes: dict[str, _FieldIndex] = {}
        self._orders: dict[tuple[tuple[str, bool], ...], tuple[list[int], list[int]] | None] = {}
        self._selections: dict[str, AbstractSet[int] | None] = {}
        self._positions: dict[str, int] | None = None
        self._replaced_cache: tuple[list[bytes], list[int]] | None = None
        self._lock = threading.Lock()

    def _replaced_rows(self, before: list[bytes]) -> list[int]:
        """Positions whose row is another object than in ``before`` (an earlier version's rows); the fields
        derived at the same earlier version share one comparison."""
        cached = self._replaced_cache
        if cached is None or cached[0] is not before:
            cached = self._replaced_cache = (before, _replaced(before, self.documents.raw))
        return cached[1]

    def positions(self) -> dict[str, int]:
        """Each row key's position."""
        if self._positions is None:
            self._positions = {key: position for position, key in enumerate(self.keys)}
        return self._positions

    def _each(self, kind: str, field: str, derive: Callable[[RawBSONDocument, list[str]], Any]) -> list[Any]:
        """``derive(document, path)`` of every document, reusing what was derived from unchanged rows."""
        path, rows, documents = field.split("."), self.documents.raw, self.documents
        column = self._columns.get((kind, field))
        if column is not None and self.keys[: len(column[0])] == column[0]:
            # the same rows in the same places, maybe more at the end: derive the changed and the added
            derived = self._derived.setdefault((kind, field), {})
            values = [*column[2], *([None] * (len(rows) - len(column[2])))]
            changed = self._replaced_rows(column[1])
            for position in [*changed, *range(len(column[1]), len(rows))]:
                key = self.keys[position]
                entry = derived.get(key)
                if entry is None or entry[0] is not rows[position]:
                    entry = derived[key] = (rows[position], derive(documents[position], path))
                values[position] = entry[1]
        else:
            before = self._derived.get((kind, field), {})
            after: dict[str, tuple[bytes, Any]] = {}
            values = []
            for position, key in enumerate(self.keys):
                entry = before.get(key)
                if entry is None or entry[0] is not rows[position]:
                    entry = (rows[position], derive(documents[position], path))
                after[key] = entry
                values.append(entry[1])
            self._derived[(kind, field)] = after
        self._columns[(kind, field)] = (self.keys, rows, values)
        return values

    def derive_rows(self, fields: Iterable[str], keys: AbstractSet[str]) -> None:
        """Derive the index entries of ``fields`` from the rows of ``keys`` now, so building or patching those
        indexes later reads no document."""
        where = self.positions()
        positions = sorted(where[key] for key in keys if key in where)
        for field in fields:
            path, derived = field.split("."), self._derived.setdefault(("index", field), {})
            for position in positions:
                derived[self.keys[position]] = (self.documents.raw[position], _index_entry(self.documents[position], path))

    def index(self, field: str) -> _FieldIndex:
        """The index of ``field`` (patched from the latest one built when at most half the documents changed)."""
        with self._lock:
            if field not in self._indexes:
                entries = self._each("index", field, _index_entry)
                previous = self._built.get(field)
                if previous is None or previous[0] is not entries:
                    index = previous[1].patched(previous[0], entries) if previous is not None else None
                    previous = self._built[field] = (entries, index or _FieldIndex(entries))
                self._indexes[field] = previous[1]
            return self._indexes[field]

    def keep_index(self, field: str) -> None:
        """Bring the index of ``field`` up to this version when one was built before or every document's
        entry is derived already (no document is read); else leave it to be built on first use."""
        if field in self._built or len(self._derived.get(("index", field), ())) == len(self.keys):
            self.index(field)

    def _sort_columns(self, order: list[tuple[list[str], bool]]) -> list[list[tuple[int, Any] | None]]:
        """Per sort path, every document's sort key (None where this module does not sort the value)."""
        return [self._each("sort", ".".join(path), _sort_entry) for path, _ in order]

    def order(self, order: list[tuple[list[str], bool]]) -> tuple[list[int], list[int]] | None:
        """(all positions sorted by ``order``, stable; each position's place in that list), or None when
        a document holds a value this module does not sort."""
        spec = tuple((".".join(path), descending) for path, descending in order)
        with self._lock:
            if spec not in self._orders:
                columns = self._sort_columns(order)
                if any(key is None for column in columns for key in column):
                    self._orders[spec] = None
                else:
                    ordered = _stably_sorted(range(len(self.documents)), columns, order)
                    place = [0] * len(ordered)
                    for n, position in enumerate(ordered):
                        place[position] = n
                    self._orders[spec] = (ordered, place)
            return self._orders[spec]

    def narrowed(self, criteria: dict) -> tuple[AbstractSet[int] | None, bool]:
        """(positions that may match ``criteria``, or None for all; whether exactly those match)."""
        found: AbstractSet[int] | None = None
        exact = True
        for field, condition in criteria.items():
            if field in ("$and", "$or"):
                parts = [self.narrowed(clause) for clause in condition]
                exact = exact and all(part_exact for _, part_exact in parts)
                if field == "$or":
                    if any(part is None for part, _ in parts):
                        continue
                    part = frozenset().union(*(part for part, _ in parts))  # type: ignore[misc]
                else:
                    known = [part for part, _ in parts if part is not None]
                    if not known:
                        continue
                    part = frozenset.intersection(*map(frozenset, known))
            else:
                candidates = self.index(field).candidates(condition)
                if candidates is None:
                    exact = False
                    continue
                part, part_exact = candidates
                exact = exact and part_exact
            found = part if found is None else found & part
        return found, exact

    def select(self, criteria: dict | None, matcher: Matcher) -> AbstractSet[int] | None:
        """Positions of the documents matching ``criteria`` (None: all of them); raises ``_NotPlain``.

        The last few answers are kept, so counting the matches of the page just read costs nothing.
        """
        if not criteria:
            return None
        key = repr(criteria)
        with self._lock:
            if key in self._selections:
                return self._selections[key]
        found, exact = self.narrowed(criteria)
        if not exact:
            documents = self.documents
            found = frozenset(p for p in (range(len(documents)) if found is None else found) if matcher(documents[p]))
        with self._lock:
            if len(self._selections) >= 8:
                self._selections.pop(next(iter(self._selections)))
            self._selections[key] = found
        return found

    def page(
        self,
        selected: AbstractSet[int] | None,
        order: list[tuple[list[str], bool]] | None,
        skip: int,
        limit: int,
    ) -> list[int]:
        """Positions of one page of the selected documents, in ``order`` (else storage order)."""
        stop = skip + limit if limit else None
        if not order:
            return (list(range(len(self.documents))) if selected is None else sorted(selected))[skip:stop]
        known = self.order(order)
        if known is None:  # sort only the selected documents: montydb answers if one of them is not plain
            with self._lock:
                columns = self._sort_columns(order)
            positions = range(len(self.documents)) if selected is None else selected
            if any(column[p] is None for column in columns for p in positions):
                raise _NotPlain
            return _stably_sorted(positions, columns, order)[skip:stop]
        ordered, place = known
        if selected is None:
            return ordered[skip:stop]
        if stop is not None and len(selected) * len(selected) > stop * len(ordered):
            # many selected, a short page: walk the order until the page is full
            return list(islice((p for p in ordered if p in selected), skip, stop))
        return sorted(selected, key=place.__getitem__)[skip:stop]


def _stably_sorted(
    positions: Iterable[int], columns: list[list[Any]], order: list[tuple[list[str], bool]]
) -> list[int]:
    """``positions`` sorted by the keys in ``columns`` (one per sort path of ``order``); stable."""
    result = list(positions)
    for column, (_, descending) in reversed(list(zip(columns, order))):  # stable sorts, last key first
        result.sort(key=column.__getitem__, reverse=descending)
    return result


def _empty() -> _Snapshot:
    return _Snapshot([], _Rows([], CodecOptions()), {})


#: documents up to this size (bytes) have their projections kept; larger ones only when every projected
#: field is small (a structure's sites are decoded each time: encoding them again would cost as much)
_SMALL = 4096


def _small(value: Any) -> bool:
    if isinstance(value, RawBSONDocument):
        return len(value.raw) <= 512
    return not isinstance(value, list) or len(value) <= 64


class CollectionFile:
    """A montydb SQLite collection file, answering plain queries from memory.

    The documents are read (undecoded) once per committed version of the file: SQLite's
    ``data_version`` tells when another connection, in this process or another, has committed since, the
    change log which rows changed, and the file's identity when it was replaced. Indexes of the filtered
    and sorted fields are built on first use (patched from the previous version's when few documents changed),
    so repeated queries cost a set lookup instead of a scan; declared fields (``ensure_index``) are kept current
    on write.
    """

    def __init__(self, path: Path, codec_options: CodecOptions) -> None:
        self.path = path
        self.codec_options = codec_options
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._version: int | None = None
        self._snapshot = _empty()
        #: per projection, per row key: (the document's BSON, its projection's BSON)
        self._projections: dict[tuple[str, ...], dict[str, tuple[bytes, bytes]]] = {}
        #: per (index or sort, path): per row key, (the row's bytes, what was derived from it)
        self._derived: dict[tuple[str, str], dict[str, tuple[bytes, Any]]] = {}
        self._built: dict[str, tuple[list[tuple | None], _FieldIndex]] = {}  # see ``_Snapshot``
        self._columns: dict[tuple[str, str], tuple[list[str], list[bytes], list[Any]]] = {}  # see ``_Snapshot``
        self._declared: set[str] = set()  # fields given ``ensure_index``
        self._pending: set[str] = set()  # keys of the rows read since whose entries were not derived
        self._absent = False  # the file did not exist when last looked at
        self._read_only = False  # the connection could only be opened read-only
        self._logged = False  # the file has perovdb's change log
        self._seq: int | None = None  # the change log's sequence number the snapshot was read at
        self._schema: int | None = None  # the file's schema version when last read

    def ensure_index(self, field: str) -> bool:
        """Keep an index of ``field`` current from now on (see ``maintain``); False for a path this module
        does not index."""
        if not _plain_path(field):
            return False
        self._declared.add(field)
        return True

    def maintain(self) -> None:
        """After a write: read the new version and bring the declared indexes up to date with the rows
        changed since the file was first read, as MongoDB updates its indexes on write, so the next query
        on them decodes no document (an index already built is patched when few rows changed; the others
        are built from the derived entries on first use)."""
        if not self._declared:
            return
        snapshot = self.snapshot()
        with self._lock:
            pending, self._pending = self._pending, set()
        if pending:
            fields = sorted(self._declared)
            snapshot.derive_rows(fields, pending)
            for field in fields:
                snapshot.keep_index(field)

    def close(self) -> None:
        """Release the connection and the documents held."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._identity, self._version, self._snapshot = None, None, None, _empty()
        self._logged, self._seq, self._schema = False, None, None
        self._projections, self._derived, self._built, self._columns, self._pending = {}, {}, {}, {}, set()

    def _open(self, status: os.stat_result) -> sqlite3.Connection:
        """The connection reading the file (``status``: its current stat), opened again when it was replaced.

        It never writes a document; it is read-write only to checkpoint the write-ahead log (``state``): a
        checkpoint through another connection would change ``data_version`` here, as a commit does, and
        the next read would take every row again. A file this process may not write is opened read-only
        (then ``state`` cannot checkpoint and says None).
        """
        identity = (status.st_dev, status.st_ino)
        if self._connection is None or identity != self._identity:
            self._release()
            try:
                self._connection, self._read_only = self._connect("rw"), False
            except sqlite3.OperationalError:
                self._connection, self._read_only = self._connect("ro"), True
            self._identity = identity
        return self._connection

    def _connect(self, mode: str) -> sqlite3.Connection:
        """A connection in autocommit mode (reads take explicit transactions)."""
        return sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, check_same_thread=False,
                               timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)

    def snapshot(self) -> _Snapshot:
        """The documents as last committed."""
        with self._lock:
            try:
                status = os.stat(self.path)
            except FileNotFoundError:
                self._release()
                self._absent = True
                return _empty()
            connection = self._open(status)
            version = connection.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:  # read after taking the version: a commit in between reads again
                # the rows found on opening an existing file are derived on use; a file created since it was
                # found absent holds new rows only
                opening = self._version is None and not self._absent
                self._absent = False
                if not self._logged:  # montydb may have created its table since the file was opened
                    self._logged = (_has_change_log if self._read_only else _ensure_change_log)(connection)
                seq, oldest, read = self._read(connection)
                self._version, self._seq = version, seq
                if seq is not None and not self._read_only:
                    _cut_change_log(connection, seq, oldest)
                if read is None:  # the log says nothing changed (a checkpoint, or the log cut by a reader)
                    return self._snapshot
                keys, documents, changed = read
                self._snapshot = _Snapshot(keys, documents, self._derived, self._built, self._columns)
                for held in (self._projections, self._derived):  # drop what came from changed rows
                    for cache in list(held.values()):
                        for key in changed:
                            cache.pop(key, None)
                if self._declared and not opening:
                    self._pending |= changed
            return self._snapshot

    def _read(
        self, connection: sqlite3.Connection
    ) -> tuple[int | None, int | None, tuple[list[str], _Rows, set[str]] | None]:
        """(the log's newest and oldest sequence numbers, (keys, rows, keys changed) or None when nothing
        changed): only the rows the change log names since the snapshot was read, or every row when there
        is no usable log; the log and the rows are read in one transaction, so they agree. A changed
        schema (triggers dropped, the file restored) makes the log be looked for again."""
        connection.execute("BEGIN")
        with _transaction(connection):
            schema = connection.execute("PRAGMA schema_version").fetchone()[0]
            if schema != self._schema:
                self._schema = schema
                if self._logged and not _has_change_log(connection):
                    self._logged, self._seq = False, None
            if not self._logged:
                return None, None, _rows_of(connection, self.codec_options, self._snapshot)
            seq, oldest, changes = _logged_since(connection, self._seq)
            if changes == {}:
                return seq, oldest, None
            read = None if changes is None else _rows_changed(connection, self.codec_options, self._snapshot, changes)
            return seq, oldest, read or _rows_of(connection, self.codec_options, self._snapshot)

    def state(self, settle: float = 0.05) -> str | None:
        """A token that differs after any later write to the collection, or None when it cannot tell.

        The write-ahead log is first checkpointed into the database file and emptied (SQLite would do it
        at some later close, changing the file without a write); the token is then the identity, size
        and modification time of the database file, and any later write changes it at the next
        checkpoint. A write in the same tick of the filesystem clock as the last one could leave them
        unchanged, so (as git does for its index) the token is only given when the file is older than a
        clock stamp written just before reading it: any later write then gets a newer modification time.
        Writes just made are given up to ``settle`` seconds to age past the tick.
        """
        deadline = time.monotonic() + settle
        while True:
            token = self._state()
            if token is not None or time.monotonic() > deadline:
                return token
            time.sleep(0.005)

    def _state(self) -> str | None:
        if not self.path.exists():
            return "-"
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            if wal.exists() and wal.stat().st_size:
                with self._lock:
                    connection = self._open(os.stat(self.path))
                    busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    return None
        except (FileNotFoundError, sqlite3.OperationalError):  # the log went away, or a writer holds it
            return None
        stamp_file = self.path.parent / ".perovdb-clock"
        stamp_file.touch()
        stamp = stamp_file.stat().st_mtime_ns
        status = os.stat(self.path)
        if status.st_mtime_ns >= stamp:
            return None
        return f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}"

    def scan(
        self,
        criteria: dict | None,
        properties: Any,
        sort: Any = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[dict[str, Any]] | None:
        """Documents for a plain query, or None if it is not plain."""
        matcher, fields, order = (
            plain_filter(criteria),
            plain_projection(properties),
            plain_sort(sort),
        )
        if matcher is None or fields is False or order is False:
            return None
        snapshot = self.snapshot()
        try:
            positions = snapshot.page(snapshot.select(criteria, matcher), order, skip, limit)
            return iter(self._decoded(snapshot, positions, fields))
        except _NotPlain:
            return None

    def _decoded(self, snapshot: _Snapshot, positions: list[int], fields: list[list[str]] | None) -> list[dict]:
        """The documents at ``positions``, whole or projected on ``fields``, as new plain dicts.

        Projections are kept as BSON per document until the document changes, so reading the same few
        fields of a large collection again is one C decode per document.
        """
        codec_options = self.codec_options
        if fields is None:
            return [bson.decode(snapshot.documents.raw[p], codec_options=codec_options) for p in positions]
        name = tuple(".".join(field) for field in fields)
        cache = self._projections.get(name)
        if cache is None:
            if len(self._projections) >= 16:  # user-chosen projections: keep the latest few
                self._projections.pop(next(iter(self._projections)), None)
            cache = self._projections[name] = {}
        plain = _decoder(codec_options)
        results = []
        for position in positions:
            raw, key = snapshot.documents.raw[position], snapshot.keys[position]
            entry = cache.get(key)
            if entry is not None and entry[0] is raw:
                results.append(bson.decode(entry[1], codec_options=codec_options))
                continue
            document = snapshot.documents[position]
            top = document.items().mapping
            result: dict[str, Any] = {"_id": top["_id"]} if "_id" in top else {}
            for field in fields:
                _merge(result, _project(document, field, plain) or {})
            if len(raw) <= _SMALL or all(_small(top.get(field[0])) for field in fields):
                cache[key] = (raw, bson.encode(result, codec_options=codec_options))
            results.append(result)
        return results

    def distinct(self, field: str, criteria: dict | None) -> list[Any] | None:
        """Distinct values of ``field`` (array elements one by one) among the documents matching a plain
        filter, or None when the filter or a value is not plain."""
        matcher = plain_filter(criteria)
        if matcher is None or not _plain_path(field):
            return None
        snapshot = self.snapshot()
        try:
            return snapshot.index(field).distinct(snapshot.select(criteria, matcher))
        except _NotPlain:
            return None

    def count(self, criteria: dict | None) -> int | None:
        """Documents matching a plain filter, or None when the filter is not plain."""
        matcher = plain_filter(criteria)
        if matcher is None:
            return None
        snapshot = self.snapshot()
        try:
            selected = snapshot.select(criteria, matcher)
        except _NotPlain:
            return None
        return len(snapshot.documents) if selected is None else len(selected)
