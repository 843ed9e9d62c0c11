"""What a user may name in a request: known fields of each collection and typed, operator-checked filters.

Every user filter first goes through :func:`perovdb.query.check_filter` (no server-side JavaScript,
no ``$expr``/``$lookup``…), then through :func:`check_typed_filter`, which knows each field's type from
the collection's pydantic document:

- string fields (ids, formulas, labels) accept a plain string, ``$eq``/``$ne`` with a string,
  ``$in``/``$nin`` with strings and ``$exists`` — never ``{"$gt": ""}``, ``$regex`` or other operator
  objects that turn an equality into "match anything";
- number fields accept numbers with comparison operators; booleans accept booleans;
- datetime fields accept ISO-8601 strings (converted to datetimes) with comparison operators;
- sub-documents accept ``$exists`` only; free-form dicts (e.g. ``structure``) are not filterable;
- unknown fields are refused, so a typo fails loudly instead of matching nothing.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from perovdb.documents import COLLECTIONS, naive_utc
from perovdb.errors import InvalidRecord, UnsafeQuery
from perovdb.query import check_filter, is_number

_COMPARE = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_LOGICAL = frozenset({"$and", "$or", "$nor"})


@lru_cache(maxsize=None)
def _schema(collection: str) -> dict[str, Any]:
    document = COLLECTIONS[collection][0]
    return document.model_json_schema()


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                return {"type": "mixed"}
            node = options[0]
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            return node


@lru_cache(maxsize=4096)
def field_kind(collection: str, path: str) -> str | None:
    """The kind of a dotted field path: string, number, integer, boolean, datetime, object, free,
    mixed or ``array:<kind>``; ``None`` for a field the collection does not have. Cached: the
    document schemas are fixed, and every request names fields (``fields``, ``sort``, filters)."""
    if collection not in COLLECTIONS:
        return None
    schema = _schema(collection)
    defs = schema.get("$defs", {})
    node: dict[str, Any] = schema
    for part in path.split("."):
        if not part or part.startswith("$"):
            return None
        node = _resolve(node, defs)
        if node.get("type") == "array":  # Mongo matches a path into the elements of an array
            node = _resolve(node.get("items", {}), defs)
            if part.isdigit():
                continue
        if node.get("type") != "object":
            return None
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        if part in props:
            node = props[part]
        elif isinstance(extra, dict):
            node = extra
        elif extra is True or (not props and extra is None):
            return "free"
        else:
            return None
    return _kind(_resolve(node, defs), defs)


def _kind(node: dict[str, Any], defs: dict[str, Any]) -> str:
    kind = node.get("type", "free")
    if kind == "string" and node.get("format") == "date-time":
        return "datetime"
    if kind == "object":
        return "object" if node.get("properties") else "free"
    if kind == "array":
        return "array:" + _kind(_resolve(node.get("items", {}), defs), defs)
    return kind if isinstance(kind, str) else "mixed"


def check_field(collection: str, path: str, purpose: str = "field") -> str:
    """Return ``path`` if the collection has it; raise ``InvalidRecord`` naming it otherwise."""
    if field_kind(collection, path) is None:
        raise InvalidRecord(f"{collection} has no {purpose} {path!r}", field=path)
    return path


def parse_fields(collection: str, text: str | None) -> list[str] | None:
    """``"a,b.c"`` → ``["a", "b.c"]`` after checking each field exists (None: every field)."""
    if not text:
        return None
    return [check_field(collection, f.strip()) for f in text.split(",") if f.strip()] or None


def parse_sort(collection: str, text: str | None) -> dict[str, int] | None:
    """``"nsites,-reduced_formula"`` → ``{"nsites": 1, "reduced_formula": -1}`` (fields checked)."""
    if not text:
        return None
    sort: dict[str, int] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        direction = -1 if item.startswith("-") else 1
        sort[check_field(collection, item.lstrip("+-"), "sort field")] = direction
    return sort or None


def _as_datetime(value: Any, path: str) -> datetime:
    if isinstance(value, datetime):
        return naive_utc(value)
    if not isinstance(value, str):
        raise UnsafeQuery(f"{path} holds timestamps: compare it with an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UnsafeQuery(f"{value!r} is not an ISO-8601 timestamp (field {path})") from None
    return naive_utc(parsed)


def _check_scalar(kind: str, value: Any, path: str) -> Any:
    """A literal value compared with a field of ``kind`` (converted where needed)."""
    if kind in {"free", "mixed"}:
        return value
    if kind == "string" and isinstance(value, str):
        return value
    if kind in {"number", "integer"} and is_number(value):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "datetime":
        return _as_datetime(value, path)
    if value is None:
        return None
    raise UnsafeQuery(f"{path} holds {kind} values; got {type(value).__name__} {value!r}")


def _check_condition(kind: str, condition: Any, path: str) -> Any:
    """The value of ``{path: condition}`` for a field of ``kind``."""
    element = kind[len("array:") :] if kind.startswith("array:") else None
    if not isinstance(condition, dict) or not any(str(k).startswith("$") for k in condition):
        if element is not None:  # equality with an element, or with the whole list
            if isinstance(condition, list):
                return [_check_scalar(element, v, path) for v in condition]
            return _check_scalar(element, condition, path)
        if kind == "object" and condition is not None:
            raise UnsafeQuery(f"{path} is a sub-document: filter on its fields, e.g. {path}.<name>")
        return _check_scalar(kind, condition, path)
    checked: dict[str, Any] = {}
    for op, value in condition.items():
        if op == "$exists":
            if not isinstance(value, bool):
                raise UnsafeQuery(f"$exists on {path} takes true or false")
            checked[op] = value
        elif op == "$not":
            checked[op] = _check_condition(kind, value, path)
        elif kind in {"free", "mixed"}:
            checked[op] = value
        elif kind in {"string", "object"} or (element in {"string", "object"}):
            scalar = element or kind
            if scalar == "object":
                raise UnsafeQuery(f"{path} is a sub-document: only $exists applies to it")
            if op in {"$eq", "$ne"}:
                checked[op] = _check_scalar(scalar, value, path) if element is None else _list_or_scalar(scalar, value, path)
            elif op in {"$in", "$nin"} or (element is not None and op == "$all"):
                checked[op] = _strings(value, op, path)
            elif element is not None and op == "$size" and isinstance(value, int) and not isinstance(value, bool):
                checked[op] = value
            else:
                raise UnsafeQuery(
                    f"{path} holds strings: compare it with a string, $ne, $in or $nin "
                    f"(operator {op} is not accepted on string fields)"
                )
        else:
            scalar = element or kind
            if op in _COMPARE:
                if scalar in {"boolean"} and op not in {"$eq", "$ne"}:
                    raise UnsafeQuery(f"{path} is true/false: use $eq or $ne, not {op}")
                checked[op] = _check_scalar(scalar, value, path)
            elif op in {"$in", "$nin", "$all"}:  # a list: check_filter checked each operator's argument
                checked[op] = [_check_scalar(scalar, v, path) for v in value]
            elif op == "$size" and element is not None and isinstance(value, int):
                checked[op] = value
            elif op == "$elemMatch" and element is not None and isinstance(value, dict):
                checked[op] = _check_condition(scalar, value, path)
            else:
                raise UnsafeQuery(f"operator {op} is not accepted on {path} ({kind})")
    return checked


def _strings(value: Any, op: str, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnsafeQuery(f"{op} on {path} takes a list of strings")
    return value


def _list_or_scalar(kind: str, value: Any, path: str) -> Any:
    if isinstance(value, list):
        return [_check_scalar(kind, v, path) for v in value]
    return _check_scalar(kind, value, path)


def check_typed_filter(collection: str, criteria: Any) -> dict[str, Any]:
    """``criteria`` checked by :func:`perovdb.query.check_filter` and against the field types of
    ``collection`` (rules in the module docstring); returns the filter with timestamps converted."""
    check_filter(criteria)
    return _typed(collection, criteria)


def _typed(collection: str, criteria: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in criteria.items():
        if key in _LOGICAL:  # a non-empty list of filters: check_filter checked it
            out[key] = [_typed(collection, v) for v in value]
        elif key.startswith("$"):
            raise UnsafeQuery(f"operator {key} is not allowed at the top of a filter")
        else:
            kind = field_kind(collection, key)
            if kind is None:
                raise InvalidRecord(f"{collection} has no field {key!r}", field=key)
            out[key] = _check_condition(kind, value, key)
    return out
