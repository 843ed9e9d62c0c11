"""PredictionsBuilder: active ``models`` × ``structures`` → ``predictions``, incrementally.

For every active model, each structure of its ``domain`` must have a current prediction: one whose id
(model, structure, geometry digest) matches. New structures and structures whose geometry changed get a
new prediction; a new model version is a new model and predicts everything; predictions that are no
longer current (changed geometry, structure left the domain, model retired) are marked ``stale``, never
deleted. Graphs come from the graph cache in the artifact store, so re-predicting never rebuilds them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from maggma.core import Store
from pymatgen.core import Structure

from perovdb.artifacts import ArtifactStore
from perovdb.builders.base import BuildPlan, IncrementalBuilder, keep_timestamps
from perovdb.db import chunks
from perovdb.documents import PredictionDoc, content_hash, utcnow

BUILDER_VERSION = "predictions-1"


def geometry_digest(structure: dict[str, Any]) -> str:
    """Digest of what a model sees of a structure document: its pymatgen structure.

    The stored ``geometry_digest`` when present (documents validated since it exists), else computed.
    """
    return structure.get("geometry_digest") or content_hash(structure["structure"])


def predict_documents(
    loaded: Any,
    structures: list[dict[str, Any]],
    artifacts: ArtifactStore,
    job_uuid: str | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Prediction documents of a loaded model for structure documents (``structure_id`` and ``structure``).

    Graphs come through the graph cache of the model's settings; ids are content-derived (model,
    structure, geometry). Shared by this builder and the flows' predict and evaluate jobs.
    """
    from perovdb.graphs import GraphCache, build_graphs

    if not structures:
        return []
    settings = loaded.config.graph
    pairs = [(s["structure_id"], Structure.from_dict(s["structure"])) for s in structures]
    graphs = build_graphs(pairs, settings, cache=GraphCache(artifacts, settings), progress=False)
    values = loaded.predict([graphs[sid] for sid, _ in pairs], batch_size=batch_size)
    model_id, now = loaded.doc.model_id, utcnow()
    docs = []
    for structure, value in zip(structures, values, strict=True):
        digest = geometry_digest(structure)
        docs.append(
            PredictionDoc(
                prediction_id=PredictionDoc.make_id(model_id, structure["structure_id"], digest),
                model_id=model_id,
                structure_id=structure["structure_id"],
                structure_digest=digest,
                property=loaded.doc.target_property,
                unit=loaded.doc.unit,
                value=float(value),
                job_uuid=job_uuid,
                created_at=now,
                last_updated=now,
            ).to_store()
        )
    return docs


class PredictionsBuilder(IncrementalBuilder):
    """Keeps ``predictions`` of the active models current (see module docstring)."""

    name = "predictions"
    version = BUILDER_VERSION

    def __init__(
        self,
        models: Store,
        structures: Store,
        predictions: Store,
        artifacts: ArtifactStore,
        full: bool = False,
        batch_size: int = 128,
        **kwargs: Any,
    ):
        self.models = models
        self.structures = structures
        self.predictions = predictions
        self.artifacts = artifacts
        self.batch_size = batch_size
        self._loaded: dict[str, Any] = {}
        super().__init__(sources=[models, structures], targets=[predictions], full=full, **kwargs)

    def plan(self) -> BuildPlan:
        """Per active model, the structures without a current prediction; stale-marking of the rest."""
        current = {
            p["prediction_id"]: p
            for p in self.predictions.query(
                {"stale": False}, properties=["prediction_id", "model_id", "structure_id"]
            )
        }
        keep: set[str] = set()
        plan = BuildPlan(total=0)
        reasons: Counter[str] = Counter()
        active = list(self.models.query({"active": True}, properties=["model_id", "domain"]))
        predicted_by: dict[str, set[str]] = defaultdict(set)
        for p in current.values():
            predicted_by[p["model_id"]].add(p["structure_id"])
        for model in active:
            todo = []
            domain = json.loads(model.get("domain") or "{}")
            for doc in self._digests(domain):
                plan.total += 1
                pid = PredictionDoc.make_id(model["model_id"], doc["structure_id"], geometry_digest(doc))
                if pid in current and not self.full:
                    keep.add(pid)
                    continue
                keep.add(pid)
                if self.full:
                    reasons["full rebuild"] += 1
                elif doc["structure_id"] in predicted_by[model["model_id"]]:
                    reasons["structure changed"] += 1
                else:
                    reasons["new"] += 1
                todo.append(doc["structure_id"])
            for batch in chunks(todo, self.batch_size):
                plan.build.append({"model_id": model["model_id"], "structure_ids": batch})
        plan.items = sum(len(batch["structure_ids"]) for batch in plan.build)
        plan.remove = sorted(set(current) - keep)
        if plan.remove:
            reasons["to mark stale"] = len(plan.remove)
        plan.reasons = dict(reasons)
        return plan

    def _digests(self, domain: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``structure_id`` and ``geometry_digest`` of the structures in ``domain``: the small fields only
        (the structure itself is read for documents stored before the digest existed)."""
        missing = []
        for doc in self.structures.query(domain, properties=["structure_id", "geometry_digest"]):
            if doc.get("geometry_digest"):
                yield doc
            else:
                missing.append(doc["structure_id"])
        for batch in chunks(missing, 500):
            query = {"structure_id": {"$in": batch}}
            for doc in self.structures.query(query, properties=["structure_id", "structure"]):
                yield {"structure_id": doc["structure_id"], "geometry_digest": geometry_digest(doc)}

    def items_for(self, keys: list[Any]) -> Iterator[dict[str, Any]]:
        """Each batch: the model id and its structures."""
        for key in keys:
            structures = list(
                self.structures.query(
                    {"structure_id": {"$in": key["structure_ids"]}},
                    properties=["structure_id", "structure", "geometry_digest"],
                )
            )
            yield {"model_id": key["model_id"], "structures": structures}

    def _model(self, model_id: str) -> Any:
        if model_id not in self._loaded:
            from perovdb.ml.registry import load_model_from

            self._loaded[model_id] = load_model_from(self.models, self.artifacts, model_id)
        return self._loaded[model_id]

    def process_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """Predict one batch (graphs from the cache; weights from the artifact store)."""
        return predict_documents(self._model(item["model_id"]), item["structures"], self.artifacts)

    def update_targets(self, items: list[list[dict[str, Any]]]) -> None:
        """Upsert the predictions whose content is new or changed (ids are content-derived: rerunning never
        duplicates); one recomputed to the same value, as under ``--full``, keeps its timestamps and job."""
        docs = [doc for batch in items for doc in batch]
        if not docs:
            return
        ids = [doc["prediction_id"] for doc in docs]
        stored = {d["prediction_id"]: d for d in self.predictions.query({"prediction_id": {"$in": ids}})}
        writes = [doc for doc in docs if keep_timestamps(doc, stored.get(doc["prediction_id"]), PredictionDoc)]
        if writes:
            self.predictions.update(writes, key="prediction_id")
            self.changed += len(writes)

    def remove_targets(self, keys: list[str]) -> int:
        """Mark superseded predictions stale (kept for provenance, never deleted)."""
        stale = list(self.predictions.query({"prediction_id": {"$in": keys}}))
        now = utcnow()
        for doc in stale:
            doc.pop("_id", None)
            doc["stale"] = True
            doc["last_updated"] = now
        if stale:
            self.predictions.update(stale, key="prediction_id")
        return len(stale)
