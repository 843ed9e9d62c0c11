"""Flow-tracking overhead: graphs → split → train → predict → evaluate as plain calls vs as a tracked flow.

One run, ratios only (no timed assertions). Two fresh embedded (monty://) stores get the same real
documents (ingested once into memory://, or read from ``--cache``); on the first the work is done by
plain function calls (the same library functions the jobs call: ``_graphs``, ``split_ids``,
``train_model``, ``register_model``, ``predict_structures``, ``evaluate``), on the second by
``run_flow`` of a ``WorkflowSpec`` (jobflow JobStore in the database, ``job_records``, flow record).
Each store has its own graph cache, so both build the same graphs.

Work (the stores hold only these structures and their calculations): ``--n`` (300) relaxed structures with an HSE06 band gap; a tiny ALIGNN (alignn_layers 1,
gcn_layers 1, hidden 32, embedding 16 — sized to fit the time, not for accuracy) trained ``--epochs``
(5) epochs; ``--predict`` (100) other relaxed structures predicted; the evaluation predicts the split.
Target: tracking overhead (flow − plain) < 10 % of plain.

Run: ``.venv/bin/python benchmarks/flow_overhead.py [--n 300] [--epochs 5] [--predict 100] [--cache PATH]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from builders import insert_new, real_documents  # noqa: E402

from perovdb import connect  # noqa: E402
from perovdb.builders.evaluations import evaluate  # noqa: E402
from perovdb.builders.materials import compound_key  # noqa: E402
from perovdb.config import Settings  # noqa: E402
from perovdb.documents import content_hash  # noqa: E402
from perovdb.flows import DatasetQuery, StructureQuery, WorkflowSpec, run_flow  # noqa: E402
from perovdb.flows.jobs import _graphs, predict_structures  # noqa: E402
from perovdb.flows.spec import SplitSpec  # noqa: E402
from perovdb.graphs import GraphSettings  # noqa: E402
from perovdb.ml import ALIGNNConfig, TrainConfig, split_ids, train_model  # noqa: E402
from perovdb.ml.registry import register_model  # noqa: E402
from perovdb.provenance.record import JOB_RECORDS  # noqa: E402

GRAPH = GraphSettings(cutoff=8.0, max_neighbors=12, neighbor_strategy="pure-top-k")
MODEL = {"architecture": "alignn_atomwise_pure", "alignn_layers": 1, "gcn_layers": 1,
         "hidden_features": 32, "embedding_features": 16}  # fmt: skip


def choose(docs: dict[str, list[dict[str, Any]]], n: int, n_predict: int) -> tuple[list[str], list[str]]:
    """``n`` relaxed structures with an HSE06 band gap and ``n_predict`` relaxed ones without (by id)."""
    relaxed = sorted(d["structure_id"] for d in docs["structures"] if d["origin"] == "relaxed" and d.get("perovskite"))
    hse = {
        c["structure_id"]
        for c in docs["calculations"]
        if c["level_of_theory"] == "HSE06" and c["properties"].get("band_gap") is not None
    }
    return [s for s in relaxed if s in hse][:n], [s for s in relaxed if s not in hse][:n_predict]


def plain(db: Any, spec: WorkflowSpec) -> dict[str, float]:
    """The flow's work as plain calls, no jobflow, no job records; seconds per step."""
    seconds: dict[str, float] = {}
    graph = spec.graph.model_dump(mode="json")

    clock = time.perf_counter()
    _graphs(db, StructureQuery(filter=spec.dataset.structures).resolve(db), graph)
    seconds["graphs"] = time.perf_counter() - clock

    clock = time.perf_counter()
    ids, _, _ = spec.dataset.resolve(db)
    structures = {d["structure_id"]: d for d in db.structures.query({"structure_id": {"$in": ids}},
                                                                      properties=["structure_id", "perovskite", "reduced_formula"])}  # fmt: skip
    split = split_ids(ids, tuple(spec.split.fractions), spec.split.seed, groups=[compound_key(structures[i]) for i in ids])
    seconds["split"] = time.perf_counter() - clock

    clock = time.perf_counter()
    ids, targets, snapshot = spec.dataset.resolve(db)
    config = ALIGNNConfig(**spec.model, graph=spec.graph)
    graphs, _ = _graphs(db, ids, graph)
    result = train_model([graphs[i] for i in ids], targets, ids, config, spec.training, split)
    doc = register_model(db, result, spec.name, spec.dataset.property, spec.dataset.level_of_theory, dataset=snapshot)
    seconds["train"] = time.perf_counter() - clock

    clock = time.perf_counter()
    predict_structures(db, doc.model_id, spec.predict.resolve(db), None)
    seconds["predict"] = time.perf_counter() - clock

    clock = time.perf_counter()
    model = db.models.query_one({"model_id": doc.model_id})
    split_members = sorted({i for part in (model.get("split") or {}).values() for i in part})
    predict_structures(db, doc.model_id, split_members, None)
    predictions = list(db.predictions.query({"model_id": doc.model_id, "structure_id": {"$in": split_members}, "stale": False},
                                            properties=["structure_id", "value"]))  # fmt: skip
    calculations = list(db.calculations.query(
        {"structure_id": {"$in": split_members}},
        properties=["calculation_id", "structure_id", "level_of_theory", "properties", "last_updated"]))  # fmt: skip
    mixing = {s["structure_id"]: s["perovskite"]["mixing_type"]
              for s in db.structures.query({"structure_id": {"$in": split_members}}, properties=["structure_id", "perovskite"])
              if s.get("perovskite")}  # fmt: skip
    digest = content_hash([sorted((p["structure_id"], p["value"]) for p in predictions), len(calculations)])
    evaluations = evaluate(model, model["target_property"], predictions, calculations, mixing, digest)
    evaluations = [e for e in evaluations if e.reference_level_of_theory == spec.reference_level]
    db.evaluations.update([e.to_store() for e in evaluations], key="evaluation_id")
    seconds["evaluate"] = time.perf_counter() - clock
    return seconds


def warm_up(docs: dict[str, list[dict[str, Any]]], spec: WorkflowSpec) -> None:
    """Import and initialise torch, the model code and the graph builder once, outside the measurements."""
    db = connect("memory://", settings=Settings(uri="memory://"))
    ids = sorted(d["structure_id"] for d in docs["structures"])[:10]
    graphs, _ = _graphs(db_with(db, docs, ids), ids, spec.graph.model_dump(mode="json"))
    config = ALIGNNConfig(**spec.model, graph=spec.graph)
    training = spec.training.model_copy(update={"epochs": 1})
    train_model([graphs[i] for i in ids], [1.0 + 0.1 * k for k in range(len(ids))], ids, config, training)


def db_with(db: Any, docs: dict[str, list[dict[str, Any]]], ids: list[str]) -> Any:
    wanted = set(ids)
    db.structures.update([d for d in docs["structures"] if d["structure_id"] in wanted], key="structure_id")
    return db


def tracked(db: Any, spec: WorkflowSpec) -> tuple[float, dict[str, float], bool]:
    """``run_flow`` of the spec; (total seconds, seconds per job from job_records, all completed)."""
    clock = time.perf_counter()
    state = run_flow(db, spec.to_flow(), spec=spec.model_dump(mode="json"), source="benchmarks/flow_overhead.py")
    total = time.perf_counter() - clock
    per_job = {}
    for record in db.store(JOB_RECORDS, key="job_uuid").query({}):
        if record.get("started") and record.get("finished"):
            per_job[record["name"]] = (record["finished"] - record["started"]).total_seconds()
    return total, per_job, state.finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="Training structures.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--predict", type=int, default=100, help="Other structures to predict.")
    parser.add_argument("--cache", type=Path, default=None, help="Pickle of the ingested documents (see builders.py).")
    args = parser.parse_args()

    everything = real_documents(args.cache)
    train_ids, predict_ids = choose(everything, args.n, args.predict)
    chosen = set(train_ids) | set(predict_ids)
    docs = {name: [d for d in everything[name] if d["structure_id"] in chosen] for name in ("structures", "calculations")}
    spec = WorkflowSpec(
        name="bench-flow",
        # the stores hold only the chosen structures, so plain filters select them (a '$' operator in the
        # dataset filter cannot be stored in the model's dataset snapshot: see the report)
        dataset=DatasetQuery(property="band_gap", level_of_theory="HSE06", structures={"origin": "relaxed"}),
        predict=StructureQuery(filter={"origin": "relaxed"}, without_property="band_gap", without_level="HSE06"),
        graph=GRAPH,
        model=MODEL,
        training=TrainConfig(epochs=args.epochs, batch_size=16, learning_rate=0.003, scheduler="onecycle",
                             early_stopping_patience=None, seed=0),  # fmt: skip
        split=SplitSpec(fractions=[0.8, 0.1, 0.1], seed=0),
        reference_level="HSE06",
        activate=False,
    )
    print(f"{len(train_ids)} training structures, {len(predict_ids)} to predict, {args.epochs} epochs, "
          f"tiny ALIGNN {MODEL}")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        stores = []
        for label in ("plain", "flow"):
            uri = f"monty://{tmp}/{label}"
            db = connect(uri, settings=Settings(uri=uri))
            insert_new(db.structures, docs["structures"])
            insert_new(db.calculations, docs["calculations"])
            stores.append(db)

        warm_up(docs, spec)
        clock = time.perf_counter()
        steps = plain(stores[0], spec)
        plain_total = time.perf_counter() - clock
        flow_total, per_job, finished = tracked(stores[1], spec)

    print(f"\n{'step':10} {'plain s':>9} {'flow job s':>11}")
    names = {"graphs": "build_graphs", "split": "split", "train": "train", "predict": "predict", "evaluate": "evaluate"}
    for step, seconds in steps.items():
        print(f"{step:10} {seconds:9.2f} {per_job.get(names[step], float('nan')):11.2f}")
    overhead = flow_total - plain_total
    print(f"\nplain calls  {plain_total:8.2f} s")
    print(f"tracked flow {flow_total:8.2f} s  (all jobs completed: {finished}); "
          f"inside jobs {sum(per_job.values()):.2f} s, outside jobs (jobflow + flow record) {flow_total - sum(per_job.values()):.2f} s")  # fmt: skip
    print(f"tracking overhead {overhead:+.2f} s = {overhead / plain_total:+.1%} of plain (target < 10%)")


if __name__ == "__main__":
    main()
