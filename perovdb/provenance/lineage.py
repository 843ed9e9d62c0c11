"""The lineage walk: from any document back to its source files and forward to everything derived from it.

Nodes are documents (structure, calculation, material, model, prediction, evaluation), jobs, flows,
data snapshots and source files; edges point from input to output ("derived from" read backwards).
Large fan-outs (a model's thousands of predictions) are summarised as one node with a count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from perovdb.db import Database
from perovdb.provenance.record import FLOWS, JOB_RECORDS

#: at most this many individual nodes per fan-out; the rest become one summary node
FAN_OUT = 8


@dataclass
class Lineage:
    """A lineage graph rooted at one id."""

    root: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (input, output, relation)

    def add(self, node_id: str, kind: str, label: str, **data: Any) -> str:
        if node_id not in self.nodes:
            self.nodes[node_id] = {"id": node_id, "kind": kind, "label": label, **data}
        return node_id

    def link(self, source: str, target: str, relation: str) -> None:
        if (source, target, relation) not in self.edges:
            self.edges.append((source, target, relation))

    def inputs_of(self, node_id: str) -> list[tuple[str, str]]:
        return [(s, r) for s, t, r in self.edges if t == node_id]

    def outputs_of(self, node_id: str) -> list[tuple[str, str]]:
        return [(t, r) for s, t, r in self.edges if s == node_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": list(self.nodes.values()),
            "edges": [{"from": s, "to": t, "relation": r} for s, t, r in self.edges],
        }


def kind_of(identifier: str) -> str:
    """Document kind from an id's prefix (jobs and flows are uuids)."""
    for prefix, kind in (
        ("st-", "structure"),
        ("calc-", "calculation"),
        ("mat-", "material"),
        ("model-", "model"),
        ("pred-", "prediction"),
        ("eval-", "evaluation"),
    ):
        if identifier.startswith(prefix):
            return kind
    return "job"


class _Walker:
    def __init__(self, db: Database, lineage: Lineage) -> None:
        self.db = db
        self.g = lineage
        self.seen: set[tuple[str, str]] = set()

    def _once(self, node_id: str, direction: str) -> bool:
        if (node_id, direction) in self.seen:
            return False
        self.seen.add((node_id, direction))
        return True

    # -- nodes --------------------------------------------------------------------------------
    def structure(self, doc: dict[str, Any]) -> str:
        label = (doc.get("perovskite") or {}).get("formula") or doc.get("reduced_formula", doc["structure_id"])
        return self.g.add(
            doc["structure_id"], "structure", f"{label} ({doc.get('origin')}, {doc.get('phase') or '-'})",
            nsites=doc.get("nsites"),
        )

    def sources(self, structure: dict[str, Any]) -> None:
        for source in structure.get("sources", []):
            sid = f"source:{source['dataset']}#{source.get('record')}"
            self.g.add(sid, "source", f"{source.get('file') or source['dataset']} record {source.get('record')}",
                       reference=source.get("reference"), label_in_source=source.get("label"))
            self.g.link(sid, structure["structure_id"], "read from")

    def job(self, job_uuid: str | None) -> str | None:
        if not job_uuid:
            return None
        record = self.db.store(JOB_RECORDS, key="job_uuid").query_one({"job_uuid": job_uuid})
        if record is None:
            return self.g.add(job_uuid, "job", f"job {job_uuid[:8]}")
        node = self.g.add(
            job_uuid, "job", f"{record['name']} job {job_uuid[:8]} ({record.get('status')})",
            host=record.get("host"), started=str(record.get("started")), finished=str(record.get("finished")),
            versions=record.get("versions", {}), inputs=record.get("inputs", {}),
        )
        if record.get("flow_uuid"):
            flow = self.db.store(FLOWS, key="flow_uuid").query_one(
                {"flow_uuid": record["flow_uuid"]}, properties=["flow_uuid", "name", "spec_source"]
            )
            if flow:
                fid = self.g.add(flow["flow_uuid"], "flow", f"flow {flow['name']} {flow['flow_uuid'][:8]}",
                                 spec=flow.get("spec_source"))
                self.g.link(fid, node, "ran")
        return node

    def describe(self, node_id: str) -> None:
        """Add a structure or model node without walking its inputs."""
        if kind_of(node_id) == "structure":
            doc = self.db.structures.query_one({"structure_id": node_id})
            if doc is not None:
                self.structure(doc)
        elif kind_of(node_id) == "model":
            m = self.db.models.query_one({"model_id": node_id}, properties=["model_id", "name", "version", "architecture"])
            if m is not None:
                self.g.add(node_id, "model", f"model {m['name']} v{m['version']} ({m['architecture']})")

    # -- backwards ----------------------------------------------------------------------------
    def back(self, node_id: str) -> None:
        if not self._once(node_id, "back"):
            return
        kind = kind_of(node_id)
        db = self.db
        if kind == "prediction":
            p = db.predictions.query_one({"prediction_id": node_id})
            if p is None:
                raise KeyError(node_id)
            self.g.add(node_id, "prediction", f"{p['property']} = {p['value']:.3f} {p['unit']}"
                       + (" (stale)" if p.get("stale") else ""))
            self.g.link(p["model_id"], node_id, "predicted")
            self.g.link(p["structure_id"], node_id, "input structure")
            job = self.job(p.get("job_uuid"))
            if job:
                self.g.link(job, node_id, "made")
            self.back(p["model_id"])
            self.back(p["structure_id"])
        elif kind == "model":
            m = db.models.query_one({"model_id": node_id})
            if m is None:
                raise KeyError(node_id)
            self.g.add(node_id, "model", f"model {m['name']} v{m['version']} ({m['architecture']}, {m['origin']})",
                       metrics=m.get("metrics", {}), graph_settings=m.get("graph_settings", {}),
                       versions=m.get("versions", {}))
            job = self.job(m.get("job_uuid"))
            if job:
                self.g.link(job, node_id, "trained")
            dataset = m.get("dataset") or {}
            if dataset.get("init_from"):
                self.g.link(dataset["init_from"], node_id, "fine-tuned from")
                self.back(dataset["init_from"])
            ids = sorted({i for part in (m.get("split") or {}).values() for i in part})
            if ids:
                query = dataset.get("query", {})
                snap = self.g.add(
                    f"data:{node_id}", "dataset",
                    f"{len(ids)} structures: {query.get('property', m['target_property'])} at "
                    f"{query.get('level_of_theory', m.get('target_level_of_theory'))}",
                    digest=dataset.get("digest"), split={k: len(v) for k, v in m["split"].items()},
                )
                self.g.link(snap, node_id, "training data")
                # the records the targets were read from: the calculations at the target's level
                files: Counter[str] = Counter()
                level = query.get("level_of_theory", m.get("target_level_of_theory"))
                for c in db.calculations.query({"structure_id": {"$in": ids}, "level_of_theory": level},
                                               properties=["source"]):  # fmt: skip
                    source = c.get("source") or {}
                    files[source.get("file") or source.get("dataset")] += 1
                for name, count in files.most_common():
                    fid = self.g.add(f"file:{name}", "file", f"{name} ({count} records)")
                    self.g.link(fid, snap, "read from")
            elif dataset.get("source"):
                fid = self.g.add(f"file:{dataset['source']}", "file", f"checkpoint {dataset['source']}")
                self.g.link(fid, node_id, "imported from")
        elif kind == "structure":
            s = db.structures.query_one({"structure_id": node_id})
            if s is None:
                raise KeyError(node_id)
            self.structure(s)
            self.sources(s)
        elif kind == "calculation":
            c = db.calculations.query_one({"calculation_id": node_id})
            if c is None:
                raise KeyError(node_id)
            self.g.add(node_id, "calculation", f"{c['level_of_theory']} calculation")
            self.g.link(c["structure_id"], node_id, "computed on")
            self.back(c["structure_id"])
            source = c.get("source") or {}
            sid = self.g.add(f"source:{source.get('dataset')}#{source.get('record')}", "source",
                             f"{source.get('file') or source.get('dataset')} record {source.get('record')}")
            self.g.link(sid, node_id, "read from")
        elif kind == "evaluation":
            e = db.evaluations.query_one({"evaluation_id": node_id})
            if e is None:
                raise KeyError(node_id)
            self.g.add(node_id, "evaluation",
                       f"{e['property']} vs {e['reference_level_of_theory']} [{e['subset']}]: n={e['n']}, "
                       f"MAE={e['mae'] if e['mae'] is None else round(e['mae'], 3)}")
            self.g.link(e["model_id"], node_id, "evaluated")
            job = self.job(e.get("job_uuid"))
            if job:
                self.g.link(job, node_id, "computed")
            self.back(e["model_id"])
        elif kind == "material":
            mat = db.materials.query_one({"material_id": node_id})
            if mat is None:
                raise KeyError(node_id)
            self.g.add(node_id, "material", f"material {mat['reduced_formula']} ({mat.get('phase')})")
            for cid in mat.get("calculation_ids", [])[:FAN_OUT]:
                self.g.link(cid, node_id, "summarised")
                self.back(cid)
        else:
            record = db.store(JOB_RECORDS, key="job_uuid").query_one({"job_uuid": node_id})
            if record is None:
                raise KeyError(node_id)
            self.job(node_id)
            for used in record.get("derived_from", []):
                self.g.link(used, node_id, "input")
                self.back(used)

    # -- forwards -----------------------------------------------------------------------------
    def forward(self, node_id: str) -> None:
        if not self._once(node_id, "forward"):
            return
        kind = kind_of(node_id)
        db = self.db
        if node_id not in self.g.nodes:
            self.describe(node_id)
        if kind == "structure":
            for c in db.calculations.query({"structure_id": node_id}, properties=["calculation_id", "level_of_theory"]):
                self.g.add(c["calculation_id"], "calculation", f"{c['level_of_theory']} calculation")
                self.g.link(node_id, c["calculation_id"], "computed on")
            for mat in db.materials.query({"structure_ids": node_id}, properties=["material_id", "reduced_formula", "phase"]):
                self.g.add(mat["material_id"], "material", f"material {mat['reduced_formula']} ({mat.get('phase')})")
                self.g.link(node_id, mat["material_id"], "summarised")
            for p in db.predictions.query({"structure_id": node_id}):
                self.g.add(p["prediction_id"], "prediction", f"{p['property']} = {p['value']:.3f} {p['unit']}"
                           + (" (stale)" if p.get("stale") else ""))
                self.g.link(node_id, p["prediction_id"], "input structure")
            for m in db.models.query({}, properties=["model_id", "name", "version", "split"]):
                if any(node_id in part for part in (m.get("split") or {}).values()):
                    self.g.add(m["model_id"], "model", f"model {m['name']} v{m['version']}")
                    self.g.link(node_id, m["model_id"], "training data")
        elif kind == "model":
            self._predictions(node_id, {"model_id": node_id}, "predicted")
            for e in db.evaluations.query({"model_id": node_id, "subset": {"$in": ["all", "split=test"]}}):
                self.g.add(e["evaluation_id"], "evaluation",
                           f"vs {e['reference_level_of_theory']} [{e['subset']}]: n={e['n']}, MAE={e['mae']:.3f}"
                           if e["mae"] is not None else f"vs {e['reference_level_of_theory']} [{e['subset']}]")
                self.g.link(node_id, e["evaluation_id"], "evaluated")
            for child in db.models.query({"dataset.init_from": node_id}, properties=["model_id", "name", "version"]):
                self.g.add(child["model_id"], "model", f"model {child['name']} v{child['version']}")
                self.g.link(node_id, child["model_id"], "fine-tuned from")
                self.forward(child["model_id"])
        elif kind == "job":  # what the job wrote: models it trained, predictions, evaluations
            for m in db.models.query({"job_uuid": node_id}, properties=["model_id", "name", "version"]):
                self.g.add(m["model_id"], "model", f"model {m['name']} v{m['version']}")
                self.g.link(node_id, m["model_id"], "trained")
            self._predictions(node_id, {"job_uuid": node_id}, "made")
            for e in db.evaluations.query({"job_uuid": node_id}, properties=["evaluation_id", "reference_level_of_theory", "subset"]):
                self.g.add(e["evaluation_id"], "evaluation", f"vs {e['reference_level_of_theory']} [{e['subset']}]")
                self.g.link(node_id, e["evaluation_id"], "computed")

    def _predictions(self, node_id: str, criteria: dict[str, Any], relation: str) -> None:
        """Link ``node_id`` to the predictions matching ``criteria``: the first ``FAN_OUT``, then a summary."""
        predictions = list(self.db.predictions.query(criteria, properties=["prediction_id", "value", "stale"]))
        for p in predictions[:FAN_OUT]:
            self.g.add(p["prediction_id"], "prediction", f"prediction {p['value']:.3f}" + (" (stale)" if p.get("stale") else ""))
            self.g.link(node_id, p["prediction_id"], relation)
        if len(predictions) > FAN_OUT:
            rest = self.g.add(f"more:{node_id}", "summary", f"… {len(predictions) - FAN_OUT} more predictions")
            self.g.link(node_id, rest, relation)


def walk(db: Database, identifier: str, *, backward: bool = True, forward: bool = True) -> Lineage:
    """The lineage of ``identifier`` (any document id, job uuid or flow-recorded job)."""
    lineage = Lineage(root=identifier)
    walker = _Walker(db, lineage)
    if backward:
        walker.back(identifier)
    if forward:
        walker.forward(identifier)
    if identifier not in lineage.nodes:
        raise KeyError(f"nothing with id {identifier!r} in the database")
    return lineage
