"""JSON Schemas of the collections, generated from ``perovdb.documents``.

``schemas/*.json`` in the repository are these, written by ``perovdb schemas --write`` (a test fails
when they drift). ``mongo_validator`` turns a schema into MongoDB's ``$jsonSchema`` dialect, which has
no ``$ref``, no ``integer`` type and stores datetimes as BSON dates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perovdb.documents import COLLECTIONS, PerovdbDocument

#: keywords MongoDB's $jsonSchema does not accept
_UNSUPPORTED = {"default", "format", "examples", "$schema", "$id", "const", "discriminator", "$defs", "title"}


def json_schema(document: type[PerovdbDocument]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a document, as stored (by alias, serialisation mode)."""
    schema = document.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def all_schemas() -> dict[str, dict[str, Any]]:
    """collection name → JSON Schema."""
    return {name: json_schema(document) for name, (document, _) in COLLECTIONS.items()}


def write_schemas(directory: str | Path) -> list[Path]:
    """Write ``<collection>.json`` for every collection; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in all_schemas().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def mongo_validator(document: type[PerovdbDocument]) -> dict[str, Any]:
    """The document's schema in MongoDB's ``$jsonSchema`` dialect (refs inlined, BSON types)."""
    schema = document.model_json_schema(mode="serialization")
    definitions = schema.get("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = definitions[node["$ref"].split("/")[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _UNSUPPORTED:
                continue
            if key in {"properties", "patternProperties"}:
                out[key] = {name: convert(sub) for name, sub in value.items()}
            else:
                out[key] = convert(value)
        if node.get("format") == "date-time":
            out.pop("type", None)
            out["bsonType"] = "date"
        elif node.get("type") == "integer":
            out.pop("type")
            out["bsonType"] = ["int", "long"]
        elif node.get("type") == "number":
            out.pop("type")
            out["bsonType"] = ["double", "int", "long", "decimal"]
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
                out[plain], out[bound] = node[bound], True  # draft-4 form, which MongoDB speaks
        if "const" in node:
            out["enum"] = [node["const"]]
        return out

    validator = convert(schema)
    validator["bsonType"] = "object"
    validator.pop("type", None)
    validator.setdefault("properties", {})["_id"] = {}  # MongoDB adds _id; allow it
    return validator
