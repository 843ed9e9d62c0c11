"""What differs between two models: data, settings and code."""

from __future__ import annotations

from typing import Any

from perovdb.db import Database

#: model fields compared, by category
CATEGORIES: dict[str, tuple[str, ...]] = {
    "data": ("target_property", "target_level_of_theory", "dataset", "split"),
    "settings": ("architecture", "architecture_config", "graph_settings", "train_config", "normalizer"),
    "code": ("versions",),
}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def diff_models(db: Database, first: str, second: str) -> dict[str, list[dict[str, Any]]]:
    """Differences between two models per category; split lists are compared as sets of structure ids."""
    docs = []
    for model_id in (first, second):
        doc = db.models.query_one({"model_id": model_id})
        if doc is None:
            raise KeyError(f"no model {model_id!r}")
        docs.append(doc)
    a, b = docs
    result: dict[str, list[dict[str, Any]]] = {}
    for category, fields in CATEGORIES.items():
        changes: list[dict[str, Any]] = []
        for name in fields:
            if name == "split":
                for part in sorted(set(a.get("split") or {}) | set(b.get("split") or {})):
                    ids_a, ids_b = set((a.get("split") or {}).get(part, [])), set((b.get("split") or {}).get(part, []))
                    if ids_a != ids_b:
                        changes.append(
                            {
                                "field": f"split.{part}",
                                "first": len(ids_a),
                                "second": len(ids_b),
                                "only_first": len(ids_a - ids_b),
                                "only_second": len(ids_b - ids_a),
                            }
                        )
                continue
            flat_a, flat_b = _flatten(a.get(name), name), _flatten(b.get(name), name)
            for key in sorted(set(flat_a) | set(flat_b)):
                if flat_a.get(key) != flat_b.get(key):
                    changes.append({"field": key, "first": flat_a.get(key), "second": flat_b.get(key)})
        result[category] = changes
    return result
