"""jobflow jobs: plain functions over the database; outputs are small JSON documents, never tensors.

Weights and graphs go to the database's artifact store (GridFS on MongoDB, files beside the embedded
store); per-epoch histories go to jobflow's additional ``data`` store. Every job records its resolved
inputs, outputs, host, times and code versions in ``job_records`` (see ``perovdb.provenance``), and
writes its domain documents (models, predictions, evaluations) with its uuid on them.
"""

from __future__ import annotations

import json
from typing import Any

from jobflow import job
from pymatgen.core import Structure

from perovdb.builders.materials import compound_key
from perovdb.builders.predictions import geometry_digest, predict_documents
from perovdb.db import Database
from perovdb.documents import PredictionDoc, content_hash
from perovdb.flows.context import job_database
from perovdb.flows.inputs import DatasetQuery, StructureQuery
from perovdb.provenance.record import record_job


def _current() -> tuple[str, str | None]:
    """(job uuid, flow uuid) of the running jobflow job."""
    from jobflow import CURRENT_JOB

    running = CURRENT_JOB.job
    if running is None:
        raise RuntimeError("perovdb jobs run inside jobflow (run_locally, FireWorks or jobflow-remote)")
    return running.uuid, (running.hosts[-1] if running.hosts else None)


def _structure_docs(db: Database, structure_ids: list[str]) -> dict[str, dict[str, Any]]:
    """structure_id → document (id and pymatgen structure) of stored structures; all must exist."""
    docs = {
        d["structure_id"]: d
        for d in db.structures.query(
            {"structure_id": {"$in": structure_ids}}, properties=["structure_id", "structure", "geometry_digest"]
        )
    }
    missing = [i for i in structure_ids if i not in docs]
    if missing:
        raise KeyError(f"structures not in the database: {missing[:5]}")
    return docs


def _graphs(db: Database, structure_ids: list[str], graph_settings: dict[str, Any], workers: int | None = None):
    """Graphs of stored structures through the graph cache (built once per settings)."""
    from perovdb.graphs import GraphCache, GraphSettings, build_graphs

    settings = GraphSettings(**graph_settings)
    cache = GraphCache(db.artifacts, settings)
    docs = _structure_docs(db, structure_ids)
    pairs = [(i, Structure.from_dict(docs[i]["structure"])) for i in structure_ids]
    return build_graphs(pairs, settings, cache=cache, workers=workers, progress=False), docs


@job
def build_graphs_job(structures: dict[str, Any], graph: dict[str, Any], uri: str | None = None) -> dict[str, Any]:
    """Build (or find cached) graphs of the structures of a query."""
    from perovdb.graphs import GraphCache, GraphSettings

    job_uuid, flow_uuid = _current()
    with job_database(uri) as db, record_job(db, job_uuid, "build_graphs", flow_uuid) as record:
        ids = StructureQuery(**structures).resolve(db)
        settings = GraphSettings(**graph)
        cached_before = set(GraphCache(db.artifacts, settings).structure_ids())
        missing = [i for i in ids if i not in cached_before]
        if missing:  # cached graphs are not even read: a rerun costs one listing of the cache
            _graphs(db, missing, graph)
        output = {
            "settings_hash": settings.settings_hash,
            "n": len(ids),
            "built": len(missing),
            "structure_ids_sha256": content_hash(ids, length=64),
        }
        record.inputs = {"structures": structures, "graph": graph, "structure_ids": ids}
        record.outputs = output
        return output


@job
def split_job(dataset: dict[str, Any], fractions: list[float], seed: int = 0, uri: str | None = None) -> dict[str, Any]:
    """A train/val/test split of a dataset, grouped by compound (no compound on two sides)."""
    from perovdb.ml import split_ids

    job_uuid, flow_uuid = _current()
    with job_database(uri) as db, record_job(db, job_uuid, "split", flow_uuid) as record:
        ids, _, snapshot = DatasetQuery(**dataset).resolve(db)
        structures = {
            d["structure_id"]: d
            for d in db.structures.query(
                {"structure_id": {"$in": ids}}, properties=["structure_id", "perovskite", "reduced_formula"]
            )
        }
        split = split_ids(ids, tuple(fractions), seed, groups=[compound_key(structures[i]) for i in ids])
        record.inputs = {"dataset": dataset, "fractions": fractions, "seed": seed, "snapshot": snapshot}
        record.outputs = {part: len(v) for part, v in split.items()}
        return {"split": split, "dataset_digest": snapshot["digest"]}


@job(data="history")
def train_job(
    name: str,
    dataset: dict[str, Any],
    model: dict[str, Any],
    training: dict[str, Any],
    split: dict[str, Any] | None = None,
    init_model: dict[str, Any] | None = None,
    exclude: dict[str, Any] | None = None,
    graphs: dict[str, Any] | None = None,
    activate: bool = False,
    domain: dict[str, Any] | None = None,
    uri: str | None = None,
) -> dict[str, Any]:
    """Train ALIGNN (or fine-tune ``init_model``) on a dataset; register the model with its data snapshot.

    ``split`` is a ``split_job`` output (else a seeded split of the data); ``exclude`` removes the
    structures of some split parts from the data (e.g. the HSE06 test set from PBE pretraining). Training
    the same data with the same settings again returns the registered model instead of retraining.
    """
    from perovdb.ml import ALIGNNConfig, TrainConfig, fine_tune, split_ids, train_model
    from perovdb.ml.registry import activate as activate_model
    from perovdb.ml.registry import register_model

    job_uuid, flow_uuid = _current()
    with job_database(uri) as db, record_job(db, job_uuid, "train", flow_uuid) as record:
        query = DatasetQuery(**dataset)
        ids, targets, snapshot = query.resolve(db)
        excluded: list[str] = []
        if exclude:
            drop = {i for part in exclude.get("parts", ["val", "test"]) for i in exclude["split"]["split"][part]}
            keep = [k for k, i in enumerate(ids) if i not in drop]
            excluded = sorted(set(ids) & drop)
            ids, targets = [ids[k] for k in keep], [targets[k] for k in keep]
            snapshot["excluded_structure_ids_sha256"] = content_hash(excluded, length=64)
            snapshot["n"] = len(ids)
        model_config = ALIGNNConfig(**model)
        train_config = TrainConfig(**training)
        parts = split["split"] if split else split_ids(ids, train_config.fractions, train_config.seed)
        parts = {part: [i for i in members if i in set(ids)] for part, members in parts.items()}
        fingerprint = content_hash(
            [snapshot["digest"], excluded, model_config.model_dump(mode="json"), train_config.model_dump(mode="json"),
             parts, (init_model or {}).get("model_id")]
        )
        record.inputs = {
            "name": name,
            "dataset": dataset,
            "snapshot": snapshot,
            "model": model_config.model_dump(mode="json"),
            "training": train_config.model_dump(mode="json"),
            "split_sizes": {part: len(v) for part, v in parts.items()},
            "init_model_id": (init_model or {}).get("model_id"),
            "graphs": graphs,
            "fingerprint": fingerprint,
        }
        existing = db.models.query_one({"dataset.fingerprint": fingerprint})
        if existing is not None:
            record.outputs = {"model_id": existing["model_id"], "reused": True}
            record.derived_from = [existing["model_id"]]
            return _model_output(existing, reused=True)
        graphs, _ = _graphs(db, ids, model_config.graph.model_dump(mode="json"))
        graph_list = [graphs[i] for i in ids]
        if init_model:
            from perovdb.ml.registry import load_model

            base = load_model(db, init_model["model_id"])
            db_weights = db.artifacts.get(base.doc.weights_key)
            result = fine_tune(
                graph_list, targets, ids, db_weights, model_config, train_config, parts, init_from=base.doc.model_id
            )
            record.derived_from = [base.doc.model_id]
        else:
            result = train_model(graph_list, targets, ids, model_config, train_config, parts)
        doc = register_model(
            db,
            result,
            name,
            query.property,
            query.level_of_theory,
            dataset={**snapshot, "fingerprint": fingerprint},
            job_uuid=job_uuid,
        )
        if domain is not None:
            stored = db.models.query_one({"model_id": doc.model_id})
            stored.pop("_id", None)
            db.models.update([{**stored, "domain": json.dumps(domain)}], key="model_id")
        if activate:
            activate_model(db, doc.model_id)
        record.outputs = {"model_id": doc.model_id, "metrics": doc.metrics}
        return _model_output(doc.model_dump(mode="json"), reused=False)


def _model_output(doc: dict[str, Any], reused: bool) -> dict[str, Any]:
    return {
        "model_id": doc["model_id"],
        "name": doc["name"],
        "version": doc["version"],
        "metrics": doc.get("metrics", {}),
        "history": doc.get("history", []),
        "split": doc.get("split", {}),
        "reused": reused,
    }


def predict_structures(
    db: Database, model_id: str, structure_ids: list[str], job_uuid: str | None, batch_size: int = 64
) -> list[str]:
    """Predict and store; returns the prediction ids.

    Ids are content-derived (model, structure, geometry), so structures that already have a current
    prediction of this model are not predicted again and a rerun never duplicates or overwrites one.
    """
    from perovdb.ml.registry import load_model

    if not structure_ids:
        return []
    docs = _structure_docs(db, structure_ids)
    wanted = {sid: PredictionDoc.make_id(model_id, sid, geometry_digest(docs[sid])) for sid in structure_ids}
    existing = {
        p["prediction_id"]
        for p in db.predictions.query({"prediction_id": {"$in": list(wanted.values())}}, properties=["prediction_id"])
    }
    todo = [docs[sid] for sid in structure_ids if wanted[sid] not in existing]
    if todo:
        loaded = load_model(db, model_id)
        fresh = predict_documents(loaded, todo, db.artifacts, job_uuid=job_uuid, batch_size=batch_size)
        db.predictions.update(fresh, key="prediction_id")
    return [wanted[sid] for sid in structure_ids]


@job
def predict_job(model: dict[str, Any], structures: dict[str, Any], uri: str | None = None) -> dict[str, Any]:
    """Predict the model's property for the structures of a query; store the predictions."""
    job_uuid, flow_uuid = _current()
    with job_database(uri) as db, record_job(db, job_uuid, "predict", flow_uuid) as record:
        ids = StructureQuery(**structures).resolve(db)
        prediction_ids = predict_structures(db, model["model_id"], ids, job_uuid)
        record.inputs = {"model_id": model["model_id"], "structures": structures, "structure_ids": ids}
        record.derived_from = [model["model_id"]]
        record.outputs = {"n": len(prediction_ids)}
        return {"model_id": model["model_id"], "n": len(prediction_ids), "prediction_ids": prediction_ids}


@job
def evaluate_job(model: dict[str, Any], reference_level: str | None = None, uri: str | None = None) -> dict[str, Any]:
    """Predict the model's own train/val/test structures and compare with the reference calculations.

    The comparison is the evaluations builder's, run for this model only, so a later ``perovdb build``
    finds nothing to redo.
    """
    from perovdb.builders.evaluations import EvaluationsBuilder
    from perovdb.builders.runner import run_builder

    job_uuid, flow_uuid = _current()
    with job_database(uri) as db, record_job(db, job_uuid, "evaluate", flow_uuid) as record:
        doc = db.models.query_one({"model_id": model["model_id"]})
        ids = sorted({i for part in (doc.get("split") or {}).values() for i in part})
        predict_structures(db, doc["model_id"], ids, job_uuid)
        builder = EvaluationsBuilder(
            db.models, db.predictions, db.calculations, db.structures, db.evaluations,
            only_models=[doc["model_id"]], job_uuid=job_uuid,
        )
        report = run_builder(db, builder)
        evaluations = [
            e for e in db.evaluations.query({"model_id": doc["model_id"]})
            if not e["subset"].startswith("mixing_type=")
            and (reference_level is None or e["reference_level_of_theory"] == reference_level)
        ]
        summary = [
            {k: e[k] for k in ("evaluation_id", "reference_level_of_theory", "subset", "n", "mae", "rmse", "r2")}
            for e in sorted(evaluations, key=lambda e: (e["reference_level_of_theory"], e["subset"]))
        ]
        record.inputs = {"model_id": doc["model_id"], "reference_level": reference_level, "structure_ids": ids}
        record.derived_from = [doc["model_id"]]
        record.outputs = {"evaluations": len(summary), "changed": report.changed}
        return {"model_id": doc["model_id"], "evaluations": summary}
