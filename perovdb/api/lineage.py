"""Lineage of a prediction for the API: ``perovdb.provenance.walk`` shaped as ``perovdb.api.schemas.Lineage``."""

from __future__ import annotations

from typing import Any

from perovdb.db import Database
from perovdb.errors import InvalidRecord
from perovdb.provenance import walk
from perovdb.query import find


def _one(db: Database, collection: str, key: str, value: str) -> dict[str, Any] | None:
    found = find(db, collection, {key: value}, limit=1)
    return found[0] if found else None


def prediction_lineage(db: Database, prediction_id: str) -> dict[str, Any]:
    """The prediction, its model, structure and sources, and the lineage graph back to the source files."""
    prediction = _one(db, "predictions", "prediction_id", prediction_id)
    if prediction is None:
        raise InvalidRecord(f"no prediction with id {prediction_id!r}", field="prediction_id")
    model = _one(db, "models", "model_id", prediction["model_id"])
    structure = _one(db, "structures", "structure_id", prediction["structure_id"])
    lineage = walk(db, prediction_id, forward=False)
    nodes = [
        {
            "id": node["id"],
            "kind": node["kind"],
            "label": node["label"],
            "data": {k: v for k, v in node.items() if k not in {"id", "kind", "label"} and v is not None},
        }
        for node in lineage.nodes.values()
    ]
    edges = [{"source": s, "target": t, "relation": r} for s, t, r in lineage.edges]
    return {
        "prediction": prediction,
        "model": model,
        "job_uuid": model.get("job_uuid") if model else None,
        "structure": structure,
        "sources": list((structure or {}).get("sources") or []),
        "nodes": nodes,
        "edges": edges,
    }
