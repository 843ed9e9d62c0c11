"""A fast read path for the embedded store: scan montydb's SQLite file and decode only what is asked for.

montydb answers every query by decoding every document of the collection and walking its query engine
over each, with no indexes; for structure documents (14 kB of sites each) a projected scan of a few
small fields costs about as much as reading everything. Here the BSON of each document is wrapped in a
``RawBSONDocument``: its top-level fields are read without decoding nested documents, the filter is
tested on them, and only the projected fields (or, without projection, the matching documents) are
decoded. 40-50x faster on the structures collection.

Only queries whose meaning is plain are taken here, so results equal montydb's (a test compares them):

- filters: fields (dotted paths through embedded documents) with a string or number, ``$eq``, ``$in``
  (an array field matches when an element does), ``$all``, and ``$gt``/``$gte``/``$lt``/``$lte`` with
  numbers; ``$and`` and ``$or`` of such filters;
- projections of fields to include; sorting by fields holding null, numbers, strings, booleans or
  dates; skip and limit.

Anything else, or a document where the plain reading could differ from MongoDB's (a dotted path
through an array, a range or sort on an array), returns ``None`` and the caller asks montydb.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

Matcher = Callable[[Any], bool]
_RANGES = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


class _NotPlain(Exception):
    """A document where the plain reading could differ from MongoDB's."""


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain_path(field: Any) -> bool:
    return isinstance(field, str) and bool(field) and not field.startswith("$") and "" not in field.split(".")


def _value_at(document: Any, path: list[str]) -> tuple[bool, Any]:
    """(found, value) of a dotted path; intermediate values must be embedded documents."""
    value = document
    for part in path:
        if isinstance(value, list):
            raise _NotPlain
        if not isinstance(value, (RawBSONDocument, dict)) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _equals_one_of(allowed: set) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if isinstance(value, list):
            return any(_scalar(v) and v in allowed for v in value)
        return _scalar(value) and value in allowed

    return test


def _in_range(bounds: list[tuple[Callable[[Any, Any], bool], float]]) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if isinstance(value, list):
            raise _NotPlain  # each bound may be met by a different element
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


def _field_test(condition: Any) -> Callable[[Any], bool] | None:
    """The test a field's value must pass, or None when the condition is not plain."""
    if _scalar(condition):
        return _equals_one_of({condition})
    if not isinstance(condition, dict) or not condition:
        return None
    tests, bounds = [], []
    for op, argument in condition.items():
        if op == "$eq" and _scalar(argument):
            tests.append(_equals_one_of({argument}))
        elif op == "$in" and isinstance(argument, (list, tuple, set)) and all(_scalar(v) for v in argument):
            tests.append(_equals_one_of(set(argument)))
        elif op == "$all" and isinstance(argument, (list, tuple)) and argument and all(_scalar(v) for v in argument):
            tests.append(_contains_all(set(argument)))
        elif op in _RANGES and _number(argument):
            bounds.append((_RANGES[op], argument))
        else:
            return None
    if bounds:
        tests.append(_in_range(bounds))
    return lambda value: all(test(value) for test in tests)


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
        return (2, value)
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
    if not isinstance(value, (RawBSONDocument, dict)):
        return None
    head, rest = path[0], path[1:]
    if head not in value:
        return {}
    if not rest:
        return {head: plain(value[head])}
    inner = _project(value[head], rest, plain)
    return {} if inner is None else {head: inner}


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _documents(path: Path, codec_options: CodecOptions) -> Iterator[RawBSONDocument]:
    """Every document of the collection file, undecoded, read one row at a time."""
    if not path.is_file():
        return
    raw_options = codec_options.with_options(document_class=RawBSONDocument)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for (data,) in connection.execute("SELECT v FROM documents"):
            yield RawBSONDocument(data, raw_options)
    finally:
        connection.close()


def scan(
    path: Path,
    codec_options: CodecOptions,
    criteria: dict | None,
    properties: Any,
    sort: Any = None,
    skip: int = 0,
    limit: int = 0,
) -> Iterator[dict[str, Any]] | None:
    """Documents of the montydb SQLite collection file ``path`` for a plain query, or None if not plain."""
    matcher, fields, order = plain_filter(criteria), plain_projection(properties), plain_sort(sort)
    if matcher is None or fields is False or order is False:
        return None
    try:
        matched = [document for document in _documents(path, codec_options) if matcher(document)]
        for field, descending in reversed(order or []):  # stable sorts, last key first
            matched.sort(key=lambda document: _sort_key(document, field), reverse=descending)
        matched = matched[skip : skip + limit if limit else None]
        if fields is None:
            return iter([bson.decode(document.raw, codec_options=codec_options) for document in matched])
        plain = _decoder(codec_options)
        results = []
        for document in matched:
            result: dict[str, Any] = {"_id": document["_id"]} if "_id" in document else {}
            for field in fields:
                _merge(result, _project(document, field, plain) or {})
            results.append(result)
        return iter(results)
    except _NotPlain:
        return None


def count(path: Path, codec_options: CodecOptions, criteria: dict | None) -> int | None:
    """Documents matching a plain filter, or None when the filter is not plain."""
    matcher = plain_filter(criteria)
    if matcher is None:
        return None
    try:
        return sum(1 for document in _documents(path, codec_options) if matcher(document))
    except _NotPlain:
        return None
