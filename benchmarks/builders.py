"""Builders benchmark: full build vs incremental rebuild (1 % of calculations changed) vs no-change rebuild.

One run, ratios only (no timed assertions). For the embedded monty:// store (and memory:// with ``--backends``):

1. the real data (composition tables + multi-fidelity + JARVIS sample), with the upstream
   ``alignn2_pure_tiny.zip`` checkpoint imported and activated, so all three builders have work;
   the model's ``domain`` is limited to ``--predict`` (20) structures (graph building + inference cost about
   0.3 s per structure on 2 busy cores, so predicting all ~1200 on two backends would take ~12 min;
   ``--predict 0`` predicts every structure);
2. the same data enlarged ``--factor`` times by ``enlarge()`` (default 10x): copies of every structure with
   a uniformly scaled lattice (new geometry, new id, phase label ``<phase>~s<k>`` so each copy is its own
   material) and of its calculations (values scaled slightly). Predictions of the copies of in-domain
   structures are *seeded* (copied from the parent's with the copy's id and digest), so at 10x the
   predictions builder only plans; materials and evaluations are rebuilt from scratch (``full=True``).

On memory:// (mongomock) setting up the 10x store alone took more than seven minutes here (its inserts
check unique indexes against every stored document), so the default is the embedded store only;
``--backends memory,monty --factor 1`` compares both on the real data.

The documents this script keeps in memory to set up the stores (millions of Python objects a builder
process would not hold) are frozen out of Python's garbage collector (``gc.freeze``), so its full
collections do not walk them in the middle of a measured build.

For each: full build, then a rebuild after bumping a value and ``last_updated`` of 1 % of the
calculations, then a rebuild with nothing changed. Targets: incremental <= 5 % of full, no-change <= 2 %.
All builds run in this one process on one open database, as a builder service would (the embedded
store keeps what it read between runs); a no-change run on the embedded store is answered from the
collections' state tokens recorded by the previous run (``perovdb.builders.runner``), in any process.

Run: ``.venv/bin/python benchmarks/builders.py [--factor 10] [--predict 20] [--backends monty]
[--cache /tmp/perovdb-bench-docs.pkl]`` (``--cache`` keeps the ingested documents between runs: the ingest,
~2 min, is not part of what is measured).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import pickle
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from perovdb import connect  # noqa: E402
from perovdb.builders import run_builders  # noqa: E402
from perovdb.builders.predictions import geometry_digest  # noqa: E402
from perovdb.config import Settings  # noqa: E402
from perovdb.documents import CalculationDoc, PredictionDoc, StructureDoc, content_hash, utcnow  # noqa: E402
from perovdb.ingest import ingest  # noqa: E402
from perovdb.ml.registry import activate, import_upstream  # noqa: E402

DATA = REPO / "data"
CHECKPOINT = REPO / "tests" / "fixtures" / "upstream_alignn" / "alignn2_pure_tiny.zip"
SOURCES = [
    (DATA / "mannodi_halide_perovskites" / "PBE_data.csv", {}),
    (DATA / "mannodi_halide_perovskites" / "HSE_data.csv", {}),
    (DATA / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv", {}),
    (DATA / "jarvis_alignn_sample", {"property_name": "band_gap", "level": "OptB88vdW"}),
]
SYNTHETIC_DATASET = "perovdb-benchmark/synthetic"


def _plain(docs: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "_id"} for d in docs]


def insert_new(store: Any, docs: list[dict[str, Any]]) -> None:
    """Setup only (not measured): write documents as perovdb's writers do (``Store.update``), so the
    embedded store's indexes are kept current as they would be after an ingest."""
    if docs:
        store.update([dict(d) for d in docs])


def real_documents(cache: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Structures and calculations of the real data (ingested into memory://, or read from ``cache``)."""
    if cache is not None and cache.exists():
        with open(cache, "rb") as handle:
            return pickle.load(handle)
    db = connect("memory://", settings=Settings(uri="memory://"))
    started = time.perf_counter()
    for path, options in SOURCES:
        ingest(db, path, **options)
    docs = {name: _plain(db.store(name).query({})) for name in ("structures", "calculations")}
    print(f"ingested {len(docs['structures'])} structures, {len(docs['calculations'])} calculations "
          f"in {time.perf_counter() - started:.0f} s (not measured)")  # fmt: skip
    if cache is not None:
        with open(cache, "wb") as handle:
            pickle.dump(docs, handle)
    return docs


def _scaled_structure(structure: dict[str, Any], scale: float) -> dict[str, Any]:
    """A pymatgen ``Structure.as_dict()`` with the lattice scaled uniformly (fractional coordinates kept)."""
    new = copy.deepcopy(structure)
    lattice = new["lattice"]
    lattice["matrix"] = [[x * scale for x in row] for row in lattice["matrix"]]
    for axis in ("a", "b", "c"):
        if axis in lattice:
            lattice[axis] *= scale
    if "volume" in lattice:
        lattice["volume"] *= scale**3
    for site in new["sites"]:
        site["xyz"] = [x * scale for x in site["xyz"]]
    return new


def enlarge(
    structures: list[dict[str, Any]],
    calculations: list[dict[str, Any]],
    factor: int,
    *,
    validate: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """``factor - 1`` synthetic copies of every structure and its calculations; (structures, calculations, copy→parent).

    Copy ``k`` of a structure has its lattice scaled by ``1 + 0.004 k`` (volume and density follow), a new
    id (``st-`` + hash of parent id and k), its phase label suffixed ``~s<k>`` (so it is a material of its
    own) and a synthetic source. Its calculations get ids from ``CalculationDoc.make_id`` and their values
    scaled by ``1 + 0.01 k`` (the lattice constant by the lattice scale). Every document is validated
    against its pydantic model unless ``validate=False``.
    """
    calcs_of: dict[str, list[dict[str, Any]]] = {}
    for calc in calculations:
        calcs_of.setdefault(calc["structure_id"], []).append(calc)
    now = utcnow()
    new_structures, new_calcs, parent = [], [], {}
    for doc in structures:
        for k in range(1, factor):
            scale = 1.0 + 0.004 * k
            sid = "st-" + content_hash(["synthetic", doc["structure_id"], k])
            parent[sid] = doc["structure_id"]
            source = {"dataset": SYNTHETIC_DATASET, "record": f"{doc['structure_id']}~{k}", "label": f"copy {k}"}
            copy_doc = {
                **doc,
                "structure_id": sid,
                "structure": _scaled_structure(doc["structure"], scale),
                "volume": doc["volume"] * scale**3,
                "density": doc["density"] / scale**3,
                "phase": f"{doc.get('phase') or 'unknown'}~s{k}",
                "generation": None,
                "origin": "relaxed" if doc["origin"] == "generated" else doc["origin"],
                "sources": [source],
                "created_at": now,
                "last_updated": now,
            }
            if validate:
                copy_doc = StructureDoc.model_validate(copy_doc).to_store()
            new_structures.append(copy_doc)
            for calc in calcs_of.get(doc["structure_id"], []):
                props = {
                    name: (None if v is None else v * (scale if name == "lattice_constant" else 1.0 + 0.01 * k))
                    for name, v in calc["properties"].items()
                }
                copy_calc = {
                    **calc,
                    "calculation_id": CalculationDoc.make_id(sid, calc["level_of_theory"], SYNTHETIC_DATASET),
                    "structure_id": sid,
                    "properties": props,
                    "source": source,
                    "created_at": now,
                    "last_updated": now,
                }
                if validate:
                    copy_calc = CalculationDoc.model_validate(copy_calc).to_store()
                new_calcs.append(copy_calc)
    return new_structures, new_calcs, parent


def change_calculations(db: Any, fraction: float, seed: int = 0) -> int:
    """Bump one value and ``last_updated`` of ``fraction`` of the calculations; return how many."""
    ids = sorted(d["calculation_id"] for d in db.calculations.query({}, properties=["calculation_id"]))
    chosen = random.Random(seed).sample(ids, max(1, round(fraction * len(ids))))
    docs = _plain(db.calculations.query({"calculation_id": {"$in": chosen}}))
    now = utcnow()
    for doc in docs:
        name = next(n for n, v in doc["properties"].items() if v is not None)
        doc["properties"][name] = doc["properties"][name] * 1.01 + 0.001
        doc["last_updated"] = now
    db.calculations.update(docs, key="calculation_id")
    return len(docs)


def seed_predictions(db: Any, parent: dict[str, str], structures: list[dict[str, Any]]) -> int:
    """Predictions of the copies whose parent has a current prediction: the parent's value, the copy's id."""
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for p in _plain(db.predictions.query({"stale": False})):
        by_parent.setdefault(p["structure_id"], []).append(p)
    now = utcnow()
    docs = []
    for doc in structures:
        for p in by_parent.get(parent.get(doc["structure_id"], ""), []):
            digest = geometry_digest(doc)
            docs.append(
                {
                    **p,
                    "prediction_id": PredictionDoc.make_id(p["model_id"], doc["structure_id"], digest),
                    "structure_id": doc["structure_id"],
                    "structure_digest": digest,
                    "created_at": now,
                    "last_updated": now,
                }
            )
    insert_new(db.predictions, docs)
    return len(docs)


def build(db: Any, names: list[str], full_names: tuple[str, ...] = ()) -> tuple[float, dict[str, float], dict[str, int]]:
    """Run builders in order (``full_names`` with ``full=True``); total seconds, seconds and planned items per builder."""
    seconds, planned = {}, {}
    started = time.perf_counter()
    for name in names:
        clock = time.perf_counter()
        (report,) = run_builders(db, [name], full=name in full_names)
        seconds[name] = time.perf_counter() - clock
        planned[name] = report.planned
    return time.perf_counter() - started, seconds, planned


def _line(label: str, total: float, seconds: dict[str, float], planned: dict[str, int], full: float | None) -> str:
    parts = "  ".join(f"{n[:4]} {s:6.2f}s/{planned[n]:>4}" for n, s in seconds.items())
    ratio = f"  = {total / full:6.1%} of full" if full else ""
    return f"  {label:<14} {total:7.2f} s  ({parts}){ratio}"


def run_backend(uri: str, real: dict[str, list[dict[str, Any]]], factor: int, n_predict: int) -> dict[str, float]:
    db = connect(uri, settings=Settings(uri=uri))
    clock = time.perf_counter()
    insert_new(db.structures, real["structures"])
    insert_new(db.calculations, real["calculations"])
    model = import_upstream(db, CHECKPOINT, "bench", "band_gap", "OptB88vdW")
    activate(db, model.model_id)
    domain_ids = sorted(d["structure_id"] for d in real["structures"])
    if n_predict:
        domain_ids = domain_ids[:n_predict]
        found = _plain([db.models.query_one({"model_id": model.model_id})])[0]
        db.models.update([{**found, "domain": json.dumps({"structure_id": {"$in": domain_ids}})}], key="model_id")
    print(f"  loaded {len(real['structures'])} structures + model in {time.perf_counter() - clock:.1f} s "
          f"(not measured); model predicts {len(domain_ids)} structures")  # fmt: skip

    results: dict[str, float] = {}
    names = ["materials", "predictions", "evaluations"]
    full, secs, planned = build(db, names)
    print(_line("full (1x)", full, secs, planned, None))
    changed = change_calculations(db, 0.01)
    inc, secs, planned = build(db, names)
    print(_line(f"1% ({changed} calcs)", inc, secs, planned, full))
    same, secs, planned = build(db, names)
    print(_line("no change", same, secs, planned, full))
    results.update(full1=full, inc1=inc, same1=same)

    if factor > 1:
        clock = time.perf_counter()
        structures, calcs, parent = enlarge(real["structures"], real["calculations"], factor)
        insert_new(db.structures, structures)
        insert_new(db.calculations, calcs)
        if n_predict:
            extended = domain_ids + [sid for sid, p in parent.items() if p in set(domain_ids)]
            found = _plain([db.models.query_one({"model_id": model.model_id})])[0]
            db.models.update([{**found, "domain": json.dumps({"structure_id": {"$in": extended}})}], key="model_id")
        seeded = seed_predictions(db, parent, structures)
        gc.freeze()
        print(f"  enlarged {factor}x: +{len(structures)} structures, +{len(calcs)} calculations, "
              f"{seeded} predictions seeded, in {time.perf_counter() - clock:.1f} s (not measured)")  # fmt: skip
        full, secs, planned = build(db, names, full_names=("materials", "evaluations"))
        print(_line(f"full ({factor}x)*", full, secs, planned, None))
        changed = change_calculations(db, 0.01, seed=1)
        inc, secs, planned = build(db, names)
        print(_line(f"1% ({changed} calcs)", inc, secs, planned, full))
        same, secs, planned = build(db, names)
        print(_line("no change", same, secs, planned, full))
        results.update(full10=full, inc10=inc, same10=same)
    db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=10, help="Enlargement factor (1 = real data only).")
    parser.add_argument("--predict", type=int, default=20, help="Structures the model predicts at 1x (0 = all).")
    parser.add_argument("--backends", default="monty", help="Comma-separated: memory, monty.")
    parser.add_argument("--cache", type=Path, default=None, help="Pickle of the ingested documents (reused if present).")
    args = parser.parse_args()

    real = real_documents(args.cache)
    gc.freeze()
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            uri = "memory://" if backend == "memory" else f"monty://{tmp}/store"
            print(f"\n{backend} ({uri})")
            summary[backend] = run_backend(uri, real, args.factor, args.predict)
    print("\nsummary (targets: incremental <= 5% of full, no-change <= 2% of full)")
    for backend, r in summary.items():
        for scale in ("1", "10") if "full10" in r else ("1",):
            label = "1x" if scale == "1" else f"{args.factor}x*"
            print(f"  {backend:7} {label:4} full {r['full' + scale]:7.2f} s   incremental {r['inc' + scale] / r['full' + scale]:6.1%}"
                  f"   no-change {r['same' + scale] / r['full' + scale]:6.1%}")  # fmt: skip
    if args.factor > 1:
        print(f"  * {args.factor}x full = materials + evaluations rebuilt from scratch (full=True); predictions of "
              "the copies were seeded, so the predictions builder only plans there (no graphs, no inference)")  # fmt: skip


if __name__ == "__main__":
    main()
