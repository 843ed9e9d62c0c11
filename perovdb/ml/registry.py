"""Thin database glue: models' weights in ``db.artifacts``, their ``ModelDoc`` in ``db.models``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from maggma.core import Store

from perovdb.artifacts import ArtifactStore
from perovdb.db import Database
from perovdb.documents import ModelDoc, property_spec
from perovdb.documents.base import escape_keys
from perovdb.graphs.graph import CrystalGraph
from perovdb.graphs.settings import GraphSettings
from perovdb.ml.checkpoint import import_checkpoint, state_dict_from_bytes, state_dict_to_bytes
from perovdb.ml.config import ALIGNNConfig
from perovdb.ml.models import build_model
from perovdb.ml.train import TrainingResult, library_versions, predict


@dataclass
class LoadedModel:
    """A registered model ready to predict: network, config (with graph settings), normaliser, document."""

    model: nn.Module
    config: ALIGNNConfig
    normalizer: dict[str, float] | None
    doc: ModelDoc

    def predict(self, graphs: Sequence[CrystalGraph], batch_size: int = 64) -> np.ndarray:
        """Predictions in ``doc.unit``."""
        return predict(self.model, graphs, batch_size, self.normalizer)


def weights_key(model_id: str) -> str:
    """Artifact key of a model's weights."""
    return f"models/{model_id}/weights.pt"


def _next_version(db: Database, name: str) -> int:
    versions = [doc.get("version", 1) for doc in db.models.query({"name": name}, properties=["version"])]
    return max(versions, default=0) + 1


def _store(db: Database, weights: bytes, doc_fields: dict[str, Any]) -> ModelDoc:
    model_id = "model-" + uuid.uuid4().hex
    key = weights_key(model_id)
    digest = db.artifacts.put(key, weights, metadata={"model_id": model_id})
    doc = ModelDoc(model_id=model_id, weights_key=key, weights_sha256=digest, **doc_fields)
    db.models.update([doc.model_dump(mode="json")], key="model_id")
    return doc


def _config_fields(config: ALIGNNConfig) -> dict[str, Any]:
    return {
        "architecture": config.architecture,
        "architecture_config": config.model_dump(mode="json", exclude={"graph"}),
        "graph_settings": {**config.graph.model_dump(mode="json"), "settings_hash": config.graph.settings_hash},
    }


def register_model(
    db: Database,
    result: TrainingResult,
    name: str,
    target_property: str,
    level: str | None = None,
    *,
    active: bool = False,
    dataset: dict[str, Any] | None = None,
    job_uuid: str | None = None,
) -> ModelDoc:
    """Store a trained model: weights under ``models/<model_id>/weights.pt``, a ``ModelDoc`` in ``db.models``."""
    spec = property_spec(target_property)
    all_ids = sorted(i for part in result.split.values() for i in part)
    dataset = escape_keys(dataset or {})  # its query may hold '$' operators, which stored keys cannot
    dataset.setdefault("n", len(all_ids))
    dataset.setdefault("ids_sha256", hashlib.sha256("\n".join(all_ids).encode()).hexdigest())
    if result.init_from:
        dataset.setdefault("init_from", result.init_from)
    return _store(
        db,
        result.state_dict,
        {
            "name": name,
            "version": _next_version(db, name),
            "origin": "trained",
            "target_property": target_property,
            "target_level_of_theory": level,
            "unit": spec.unit,
            "active": active,
            "train_config": result.train_config.model_dump(mode="json"),
            "normalizer": result.normalizer,
            "dataset": dataset,
            "split": result.split,
            "metrics": result.metrics,
            "history": result.history,
            "versions": result.versions,
            "job_uuid": job_uuid,
            **_config_fields(result.model_config),
        },
    )


def import_upstream(
    db: Database,
    path: str | Path,
    name: str,
    target_property: str,
    level: str | None = None,
    *,
    active: bool = False,
) -> ModelDoc:
    """Register an upstream ALIGNN checkpoint (zip or folder) as an ``origin="imported"`` model.

    Importing the same weights and configuration again under the same name, property and level returns
    the model registered the first time (no new version)."""
    model, config = import_checkpoint(path)
    weights = state_dict_to_bytes(model.state_dict())
    config_fields = _config_fields(config)
    same = db.models.query_one(
        {
            "name": name,
            "origin": "imported",
            "target_property": target_property,
            "target_level_of_theory": level,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
        }
    )
    if same is not None and all(same.get(k) == v for k, v in config_fields.items()):
        same.pop("_id", None)
        return ModelDoc.model_validate(same)
    return _store(
        db,
        weights,
        {
            "name": name,
            "version": _next_version(db, name),
            "origin": "imported",
            "target_property": target_property,
            "target_level_of_theory": level,
            "unit": property_spec(target_property).unit,
            "active": active,
            "dataset": {"source": Path(path).name},
            "versions": library_versions(),
            **config_fields,
        },
    )


def load_model(db: Database, model_id: str) -> LoadedModel:
    """Rebuild a registered model; the weights' sha256 is checked against the document."""
    return load_model_from(db.models, db.artifacts, model_id)


def load_model_from(models: Store, artifacts: ArtifactStore, model_id: str) -> LoadedModel:
    """``load_model`` from the ``models`` store and artifact store themselves (what builders hold)."""
    found = models.query_one({"model_id": model_id})
    if found is None:
        raise KeyError(f"no model {model_id!r}")
    found.pop("_id", None)
    doc = ModelDoc.model_validate(found)
    weights = artifacts.get(doc.weights_key)
    if hashlib.sha256(weights).hexdigest() != doc.weights_sha256:
        raise ValueError(f"weights of {model_id} do not match their sha256")
    graph = {k: v for k, v in doc.graph_settings.items() if k != "settings_hash"}
    config = ALIGNNConfig.model_validate({**doc.architecture_config, "graph": GraphSettings(**graph)})
    model = build_model(config)
    model.load_state_dict(state_dict_from_bytes(weights), strict=True)
    model.eval()
    return LoadedModel(model=model, config=config, normalizer=doc.normalizer, doc=doc)


def activate(db: Database, model_id: str, *, retire_others: bool = True) -> ModelDoc:
    """Mark a model active (builders keep its predictions current); by default retire the other versions of its name."""
    found = db.models.query_one({"model_id": model_id})
    if found is None:
        raise KeyError(f"no model {model_id!r}")
    found.pop("_id", None)
    changed = [{**found, "active": True}]
    if retire_others:
        for other in db.models.query({"name": found["name"], "active": True, "model_id": {"$ne": model_id}}):
            other.pop("_id", None)
            changed.append({**other, "active": False})
    db.models.update(changed, key="model_id")
    return ModelDoc.model_validate(changed[0])
