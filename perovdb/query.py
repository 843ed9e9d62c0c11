"""Queries shared by the Python API, the CLI and the HTTP API: safe user filters and common lookups."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from pymatgen.core import Composition, Structure

from perovdb.db import Database
from perovdb.documents import COLLECTIONS
from perovdb.errors import InvalidRecord, UnsafeQuery

#: query operators a user filter may use; everything else (server-side JavaScript: $where,
#: $function, $accumulator; $expr, which can reach them) is refused
ALLOWED_OPERATORS = frozenset(
    {
        "$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$exists", "$all", "$elemMatch", "$size", "$regex", "$options", "$type", "$mod",
    }
)  # fmt: skip
MAX_FILTER_DEPTH = 12


def check_filter(criteria: Any, _depth: int = 0, _path: str = "") -> dict[str, Any]:
    """Return ``criteria`` if it only uses allowed operators, each with an argument of the shape MongoDB
    takes (a list for ``$in``, an operator object for ``$not``…); raise ``UnsafeQuery`` naming the first
    offender and where it is, so no backend ever sees a malformed filter."""
    if _depth == 0 and not isinstance(criteria, dict):
        raise UnsafeQuery(f"a filter must be a JSON object, not {type(criteria).__name__}")
    if _depth > MAX_FILTER_DEPTH:
        raise UnsafeQuery(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    if isinstance(criteria, dict):
        for key, value in criteria.items():
            if not isinstance(key, str):
                raise UnsafeQuery(f"filter keys must be strings, got {key!r}")
            if key.startswith("$") and key not in ALLOWED_OPERATORS:
                raise UnsafeQuery(
                    f"operator {key} is not allowed in filters (no server-side JavaScript or expressions); "
                    f"allowed: {', '.join(sorted(ALLOWED_OPERATORS))}"
                )
            path = _path if key.startswith("$") else (f"{_path}.{key}" if _path else key)
            if key.startswith("$"):
                _check_argument(key, value, path)
            check_filter(value, _depth + 1, path)
    elif isinstance(criteria, list):
        for item in criteria:
            check_filter(item, _depth + 1, _path)
    return criteria  # type: ignore[return-value]


def _check_argument(operator: str, value: Any, path: str) -> None:
    """Raise ``UnsafeQuery`` when ``value`` is not what ``operator`` takes."""
    where = f" (on {path})" if path else ""

    def refuse(takes: str) -> None:
        raise UnsafeQuery(f"{operator}{where} takes {takes}, not {json_type(value)} {value!r}")

    if operator in {"$and", "$or", "$nor"}:
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            refuse("a non-empty list of filters")
    elif operator in {"$in", "$nin", "$all"}:
        if not isinstance(value, list):
            refuse("a list")
    elif operator == "$not":
        if not isinstance(value, (dict, re.Pattern)) or (isinstance(value, dict) and not _is_operator_object(value)):
            refuse('an operator object, e.g. {"$not": {"$gt": 5}}')
    elif operator == "$elemMatch":
        if not isinstance(value, dict):
            refuse("an object")
    elif operator == "$size":
        if not (is_number(value) and value >= 0 and float(value).is_integer()):
            refuse("a non-negative whole number")
    elif operator == "$mod":
        whole = isinstance(value, list) and len(value) == 2 and all(is_number(v) and math.isfinite(v) for v in value)
        if not whole or int(value[0]) == 0:  # MongoDB truncates the divisor: 0.5 is 0
            refuse("[divisor, remainder] with a divisor of at least 1 in size")
    elif operator in {"$regex", "$options"}:
        if not isinstance(value, (str, re.Pattern)):
            refuse("a string")
    elif operator == "$exists":
        if not (value is None or isinstance(value, bool) or is_number(value)):
            refuse("true or false")
    elif operator == "$type":
        if not (isinstance(value, (str, list)) or (is_number(value) and float(value).is_integer())):
            refuse("a BSON type name or number")


def _is_operator_object(value: dict[str, Any]) -> bool:
    return bool(value) and all(isinstance(k, str) and k.startswith("$") for k in value)


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def structure_criteria(
    formula: str | None = None, elements: list[str] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A structures filter from a formula (reduced or perovskite notation, e.g. MAPbI3), elements and a user filter."""
    clauses: list[dict[str, Any]] = []
    if formula:
        options: list[dict[str, Any]] = [{"perovskite.formula": formula}, {"reduced_formula": formula}]
        try:
            options.append({"reduced_formula": Composition(formula).reduced_formula})
        except Exception:  # MA/FA notation is not a pymatgen formula
            pass
        clauses.append({"$or": options})
    if elements:
        clauses.append({"elements": {"$all": sorted(elements)}})
    if extra:
        clauses.append(check_filter(extra))
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def find(
    db: Database,
    collection: str,
    criteria: dict[str, Any] | None = None,
    fields: list[str] | None = None,
    limit: int | None = None,
    sort: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Documents of ``collection`` matching a (checked) filter, without Mongo's ``_id``; ``limit`` None or 0: all."""
    if collection not in COLLECTIONS:
        raise InvalidRecord(f"unknown collection {collection!r}; choose one of {', '.join(COLLECTIONS)}")
    if limit is not None and limit < 0:  # backends disagree on negative limits (a slice on one, a count on another)
        raise InvalidRecord(f"limit must be 0 (all) or more, not {limit}", field="limit")
    criteria = check_filter(criteria or {})
    docs = db.store(collection).query(criteria, properties=fields, sort=sort, limit=limit or 0)
    return [{k: v for k, v in doc.items() if k != "_id"} for doc in docs]


def get_structures(db: Database, criteria: dict[str, Any] | None = None, limit: int | None = None) -> list[Structure]:
    """pymatgen ``Structure``s of the matching structure documents (each carries its id in ``properties``)."""
    structures = []
    for doc in find(db, "structures", criteria, fields=["structure_id", "structure"], limit=limit):
        structure = Structure.from_dict(doc["structure"])
        structure.properties["structure_id"] = doc["structure_id"]
        structures.append(structure)
    return structures


def show(db: Database, structure_id: str) -> dict[str, Any]:
    """A structure with its calculations (and material, predictions when built)."""
    found = find(db, "structures", {"structure_id": structure_id})
    if not found:
        raise InvalidRecord(f"no structure with id {structure_id!r}", field="structure_id")
    doc = found[0]
    doc["calculations"] = find(db, "calculations", {"structure_id": structure_id}, sort={"level_of_theory": 1})
    doc["predictions"] = find(db, "predictions", {"structure_id": structure_id, "stale": False})
    return doc


def stats(db: Database) -> dict[str, Any]:
    """Counts per collection, per level of theory and per mixing type and origin."""
    levels = Counter(doc.get("level_of_theory") for doc in db.calculations.query({}, properties=["level_of_theory"]))
    structures = list(db.structures.query({}, properties=["perovskite.mixing_type", "origin"]))
    mixing = Counter((doc.get("perovskite") or {}).get("mixing_type", "not ABX3") for doc in structures)
    origins = Counter(doc.get("origin") for doc in structures)
    return {
        "collections": {name: store.count() for name, store in db.collections().items()},
        "calculations_by_level_of_theory": dict(sorted(levels.items())),
        "structures_by_mixing_type": dict(sorted(mixing.items())),
        "structures_by_origin": dict(sorted(origins.items())),
    }
