"""EvaluationsBuilder: ``predictions`` × reference ``calculations`` → ``evaluations``, incrementally.

One item per (model, property). Its predictions (not stale) are paired with the calculations of the
same structure at every level of theory that has the property (the newest calculation per level);
each level gives evaluations on the subsets ``all``, ``split=<train|val|test>`` (the model's own split)
and ``mixing_type=<…>``. An item is recomputed only when the hash of what it compares changes, and an
evaluation whose numbers did not change keeps its ``last_updated``. A retired model (no current
predictions) keeps its last evaluations; they are deleted only with the model.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
from maggma.core import Store

from perovdb.builders.base import BuildPlan, IncrementalBuilder, keep_timestamps
from perovdb.documents import PROPERTIES, EvaluationDoc, content_hash

BUILDER_VERSION = "evaluations-1"


def error_metrics(predicted: list[float], reference: list[float]) -> dict[str, float | None]:
    """n, MAE, RMSE, R² (None below two pairs or without variance) and max error."""
    n = len(predicted)
    if n == 0:
        return {"n": 0, "mae": None, "rmse": None, "r2": None, "max_error": None}
    p, r = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    errors = p - r
    variance = float(np.sum((r - r.mean()) ** 2))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(math.sqrt(np.mean(errors**2))),
        "r2": 1.0 - float(np.sum(errors**2)) / variance if n >= 2 and variance > 0 else None,
        "max_error": float(np.max(np.abs(errors))),
    }


def evaluate(
    model: dict[str, Any],
    prop: str,
    predictions: list[dict[str, Any]],
    calculations: list[dict[str, Any]],
    mixing_types: dict[str, str],
    inputs_digest: str,
) -> list[EvaluationDoc]:
    """Every evaluation of one model and property (pure: no database access)."""
    predicted = {p["structure_id"]: p["value"] for p in predictions}
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for calc in calculations:
        value = calc["properties"].get(prop)
        if value is None or calc["structure_id"] not in predicted:
            continue
        slot = (calc["level_of_theory"], calc["structure_id"])
        if slot not in newest or (calc["last_updated"], calc["calculation_id"]) > (
            newest[slot]["last_updated"],
            newest[slot]["calculation_id"],
        ):
            newest[slot] = calc
    split_of = {sid: name for name, ids in (model.get("split") or {}).items() for sid in ids}
    unit = PROPERTIES[prop].unit
    docs = []
    for level in sorted({level for level, _ in newest}):
        pairs = [
            {"structure_id": sid, "predicted": predicted[sid], "reference": calc["properties"][prop]}
            for (lvl, sid), calc in sorted(newest.items())
            if lvl == level
        ]
        subsets: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for pair in pairs:
            sid = pair["structure_id"]
            subsets["all"].append(pair)
            if sid in split_of:
                subsets[f"split={split_of[sid]}"].append(pair)
            if sid in mixing_types:
                subsets[f"mixing_type={mixing_types[sid]}"].append(pair)
        for subset, members in sorted(subsets.items()):
            metrics = error_metrics([m["predicted"] for m in members], [m["reference"] for m in members])
            docs.append(
                EvaluationDoc(
                    evaluation_id=EvaluationDoc.make_id(model["model_id"], prop, level, subset),
                    model_id=model["model_id"],
                    property=prop,
                    reference_level_of_theory=level,
                    subset=subset,
                    unit=unit,
                    pairs=members,
                    inputs_digest=inputs_digest,
                    **metrics,
                )
            )
    return docs


class EvaluationsBuilder(IncrementalBuilder):
    """Keeps ``evaluations`` in sync with ``predictions`` and reference ``calculations``."""

    name = "evaluations"
    version = BUILDER_VERSION

    def __init__(
        self,
        models: Store,
        predictions: Store,
        calculations: Store,
        structures: Store,
        evaluations: Store,
        full: bool = False,
        only_models: list[str] | None = None,
        job_uuid: str | None = None,
        **kwargs: Any,
    ):
        self.only_models = only_models
        self.job_uuid = job_uuid
        self.models = models
        self.predictions = predictions
        self.calculations = calculations
        self.structures = structures
        self.evaluations = evaluations
        self._planned_digests: dict[tuple[str, str], str] | None = None  # what plan() found, for items_for()
        super().__init__(
            sources=[models, predictions, calculations, structures], targets=[evaluations], full=full, **kwargs
        )

    def _digests(self) -> dict[tuple[str, str], str]:
        """Hash of what each (model, property) compares: its predictions and their reference calculations."""
        preds: dict[tuple[str, str], list[tuple]] = defaultdict(list)
        structures_of: dict[tuple[str, str], set[str]] = defaultdict(set)
        criteria: dict[str, Any] = {"stale": False}
        if self.only_models is not None:
            criteria["model_id"] = {"$in": self.only_models}
        for p in self.predictions.query(
            criteria, properties=["model_id", "property", "structure_id", "prediction_id", "value"]
        ):
            item = (p["model_id"], p["property"])
            preds[item].append((p["prediction_id"], p["value"]))
            structures_of[item].add(p["structure_id"])
        calcs_of: dict[str, list[tuple]] = defaultdict(list)
        predicted = sorted(set().union(*structures_of.values()))
        for c in self.calculations.query(
            {"structure_id": {"$in": predicted}}, properties=["calculation_id", "structure_id", "last_updated"]
        ):
            calcs_of[c["structure_id"]].append((c["calculation_id"], str(c["last_updated"])))
        models = {
            m["model_id"]: content_hash(m.get("split") or {})
            for m in self.models.query({}, properties=["model_id", "split"])
        }
        digests = {}
        for item, rows in preds.items():
            if item[0] not in models:
                continue
            refs = sorted(c for sid in structures_of[item] for c in calcs_of.get(sid, []))
            digests[item] = content_hash([BUILDER_VERSION, models[item[0]], sorted(rows), refs])
        return digests

    def plan(self) -> BuildPlan:
        """(model, property) pairs whose inputs hash differs from the stored evaluations'."""
        digests = self._planned_digests = self._digests()
        stored: dict[tuple[str, str], set[str | None]] = defaultdict(set)
        stored_ids: dict[tuple[str, str], list[str]] = defaultdict(list)
        scope = {"model_id": {"$in": self.only_models}} if self.only_models is not None else {}
        for e in self.evaluations.query(scope, properties=["evaluation_id", "model_id", "property", "inputs_digest"]):
            stored[(e["model_id"], e["property"])].add(e.get("inputs_digest"))
            stored_ids[(e["model_id"], e["property"])].append(e["evaluation_id"])
        plan = BuildPlan(total=len(digests))
        reasons: Counter[str] = Counter()
        for item, digest in sorted(digests.items()):
            if self.full:
                reasons["full rebuild"] += 1
            elif item not in stored:
                reasons["new"] += 1
            elif stored[item] != {digest}:
                reasons["inputs changed"] += 1
            else:
                continue
            plan.build.append(list(item))
        # a retired model (its predictions all stale) keeps its last evaluations, to compare versions by; they
        # go only with the model itself
        models = {m["model_id"] for m in self.models.query({}, properties=["model_id"])}
        plan.remove = sorted(eid for (model_id, _), ids in stored_ids.items() if model_id not in models for eid in ids)
        plan.reasons = dict(reasons)
        return plan

    def items_for(self, keys: list[Any]) -> Iterator[dict[str, Any]]:
        """Model, predictions, reference calculations and mixing types of each planned (model, property)."""
        digests = (self._planned_digests if self._planned_digests is not None else self._digests()) if keys else {}
        for model_id, prop in keys:
            predictions = list(
                self.predictions.query(
                    {"model_id": model_id, "property": prop, "stale": False},
                    properties=["structure_id", "value"],
                )
            )
            ids = sorted({p["structure_id"] for p in predictions})
            structures = self.structures.query(
                {"structure_id": {"$in": ids}}, properties=["structure_id", "perovskite.mixing_type"]
            )
            yield {
                "model": self.models.query_one({"model_id": model_id}, properties=["model_id", "split"]),
                "property": prop,
                "predictions": predictions,
                "calculations": list(
                    self.calculations.query(
                        {"structure_id": {"$in": ids}},
                        properties=["calculation_id", "structure_id", "level_of_theory", "properties", "last_updated"],
                    )
                ),
                "mixing_types": {
                    s["structure_id"]: s["perovskite"]["mixing_type"] for s in structures if s.get("perovskite")
                },
                "inputs_digest": digests.get((model_id, prop), ""),
            }

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """The evaluations of one (model, property) (no database access)."""
        docs = evaluate(
            item["model"],
            item["property"],
            item["predictions"],
            item["calculations"],
            item["mixing_types"],
            item["inputs_digest"],
        )
        for doc in docs:
            doc.job_uuid = self.job_uuid
        return {"key": [item["model"]["model_id"], item["property"]], "docs": [d.to_store() for d in docs]}

    def update_targets(self, items: list[dict[str, Any]]) -> None:
        """Upsert each item's evaluations (unchanged ones keep ``last_updated``); drop subsets that vanished."""
        for item in items:
            model_id, prop = item["key"]
            stored = {
                d["evaluation_id"]: d for d in self.evaluations.query({"model_id": model_id, "property": prop})
            }
            writes = []
            for doc in item["docs"]:
                self.changed += keep_timestamps(doc, stored.pop(doc["evaluation_id"], None), EvaluationDoc)
                writes.append(doc)
            if writes:
                self.evaluations.update(writes, key="evaluation_id")
            if stored:
                self.evaluations.remove_docs({"evaluation_id": {"$in": list(stored)}})
                self.changed += len(stored)

    def remove_targets(self, keys: list[str]) -> int:
        """Delete the evaluations of models that no longer exist."""
        self.evaluations.remove_docs({"evaluation_id": {"$in": keys}})
        return len(keys)
