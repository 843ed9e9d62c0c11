"""A fast read path for the embedded store: scan montydb's SQLite file and decode only what is asked for.

montydb answers every query by decoding every document of the collection and walking its query engine
over each, with no indexes; for structure documents (14 kB of sites each) a projected scan of a few
small fields costs about as much as reading everything. Here the BSON of each document is wrapped in a
``RawBSONDocument``: its top-level fields are read without decoding nested documents, the filter is
tested on them, and only the projected fields (or, without projection, the matching documents) are
decoded. 40-50x faster on the structures collection.

Only queries whose meaning is plain are taken here, so results equal montydb's: a filter of fields
(dotted paths through embedded documents) compared for equality or ``$in`` with strings and numbers
(MongoDB semantics: an array field matches when an element does), a projection of fields to include,
skip and limit, no sort. Anything else, including a dotted path that meets an array, returns ``None``
and the caller asks montydb.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

_SCALARS = (str, int, float)


def _plain_scalar(value: Any) -> bool:
    return isinstance(value, _SCALARS) and not isinstance(value, bool)


def _condition(value: Any) -> set | None:
    """The values a top-level field may equal, or None when the condition is not a plain one."""
    if _plain_scalar(value):
        return {value}
    if (
        isinstance(value, dict)
        and list(value) == ["$in"]
        and isinstance(value["$in"], (list, tuple, set))
    ):
        values = value["$in"]
        if all(_plain_scalar(v) for v in values):
            return set(values)
    return None


class _NotPlain(Exception):
    """A document where the plain reading would differ from MongoDB's (a dotted path through an array)."""


def _plain_path(field: Any) -> bool:
    return isinstance(field, str) and bool(field) and not field.startswith("$") and "" not in field.split(".")


def plain_filter(criteria: dict | None) -> list[tuple[list[str], set]] | None:
    """``[(path, allowed values)]`` for a filter this module can answer, else None."""
    conditions = []
    for field, value in (criteria or {}).items():
        if not _plain_path(field):
            return None
        allowed = _condition(value)
        if allowed is None:
            return None
        conditions.append((field.split("."), allowed))
    return conditions


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


def _matches(value: Any, allowed: set) -> bool:
    if isinstance(value, list):
        return any(_matches(v, allowed) for v in value if not isinstance(v, list))
    return _plain_scalar(value) and value in allowed


def _decoder(codec_options: CodecOptions) -> Callable[[Any], Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, RawBSONDocument):
            return bson.decode(value.raw, codec_options=codec_options)
        if isinstance(value, list):
            return [plain(v) for v in value]
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


def scan(
    path: Path,
    codec_options: CodecOptions,
    criteria: dict | None,
    properties: Any,
    skip: int = 0,
    limit: int = 0,
) -> Iterator[dict[str, Any]] | None:
    """Documents of the montydb SQLite collection file ``path`` matching a plain query, or None if not plain."""
    conditions = plain_filter(criteria)
    fields = plain_projection(properties)
    if conditions is None or fields is False:
        return None
    try:
        return iter(list(_scan(path, codec_options, conditions, fields, skip, limit)))
    except _NotPlain:
        return None


def _scan(
    path: Path,
    codec_options: CodecOptions,
    conditions: list[tuple[list[str], set]],
    fields: list[list[str]] | None,
    skip: int,
    limit: int,
) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    raw_options = codec_options.with_options(document_class=RawBSONDocument)
    plain = _decoder(codec_options)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT v FROM documents").fetchall()
    finally:
        connection.close()
    matched = 0
    for (data,) in rows:
        document = RawBSONDocument(data, raw_options)
        if not all(_satisfies(document, field, allowed) for field, allowed in conditions):
            continue
        matched += 1
        if matched <= skip:
            continue
        if fields is None:
            yield bson.decode(data, codec_options=codec_options)
        else:
            result: dict[str, Any] = {"_id": document["_id"]} if "_id" in document else {}
            for field in fields:
                _merge(result, _project(document, field, plain) or {})
            yield result
        if limit and matched - skip >= limit:
            return


def _satisfies(document: RawBSONDocument, path: list[str], allowed: set) -> bool:
    found, value = _value_at(document, path)
    return found and _matches(value, allowed)


def count(path: Path, codec_options: CodecOptions, criteria: dict | None) -> int | None:
    """Documents matching a plain filter, or None when the filter is not plain."""
    conditions = plain_filter(criteria)
    if conditions is None:
        return None
    try:
        return sum(1 for _ in _scan(path, codec_options, conditions, [], 0, 0))
    except _NotPlain:
        return None
