"""The main job: the group's CSVs → ingest → HSE06-gap workflow → builders → evaluation, figures, provenance.

``run_main_job`` is what ``perovdb demo`` (and ``make demo``) runs. Everything is reused on a second run:
unchanged records are skipped, graphs come from the cache, the trained model is found by its data and
settings fingerprint, and existing predictions are not recomputed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perovdb.builders import BuildReport, run_builders
from perovdb.config import OUTPUT_DIR
from perovdb.db import Database
from perovdb.flows import FlowState, WorkflowSpec, run_flow
from perovdb.ingest import IngestReport, ingest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SPEC = REPO / "workflows" / "hse_gap.yaml"


def shipped_sources(data: Path = DATA) -> list[tuple[Path, dict[str, Any]]]:
    """The real data sets shipped in ``data/`` and how to read each."""
    return [
        (data / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv", {}),
        (data / "mannodi_halide_perovskites" / "PBE_data.csv", {}),
        (data / "mannodi_halide_perovskites" / "HSE_data.csv", {}),
        (data / "jarvis_alignn_sample", {"property_name": "band_gap", "level": "OptB88vdW"}),
    ]


@dataclass
class MainJobResult:
    """What the main job did and where its outputs are."""

    ingest: dict[str, IngestReport] = field(default_factory=dict)
    flow: FlowState | None = None
    builds: list[BuildReport] = field(default_factory=list)
    model_id: str | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    parity_png: Path | None = None
    learning_curve_png: Path | None = None
    prediction_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run_main_job(
    db: Database,
    *,
    data: Path = DATA,
    spec_path: Path = SPEC,
    out: Path = OUTPUT_DIR,
    on_ingest: Any = None,
) -> MainJobResult:
    """Ingest the shipped data, run the HSE06-gap workflow and the builders, write the figures."""
    result = MainJobResult()
    clock = time.perf_counter()
    for path, options in shipped_sources(data):
        progress = on_ingest(path) if on_ingest else None
        result.ingest[path.name] = ingest(db, path, on_progress=progress, **options)
    result.seconds["ingest"] = time.perf_counter() - clock

    clock = time.perf_counter()
    spec = WorkflowSpec.from_file(spec_path)
    result.flow = run_flow(db, spec.to_flow(), spec=spec.model_dump(mode="json"), source=str(spec_path))
    result.seconds["workflow"] = time.perf_counter() - clock

    clock = time.perf_counter()
    result.builds = run_builders(db, ["all"])
    result.seconds["builders"] = time.perf_counter() - clock

    train = next((j for j in result.flow.jobs if j["name"] == "train"), None)
    model = db.models.query_one({"name": spec.name}, sort={"version": -1}) if train else None
    if model is None:
        return result
    result.model_id = model["model_id"]
    result.evaluations = sorted(
        (
            e
            for e in db.evaluations.query({"model_id": model["model_id"]})
            if e["subset"] in {"split=train", "split=val", "split=test", "all"}
        ),
        key=lambda e: (e["reference_level_of_theory"], e["subset"]),
    )
    result.parity_png, result.learning_curve_png = write_figures(db, model, out)
    predict = next((j for j in result.flow.jobs if j["name"] == "predict"), None)
    if predict is not None:
        first = db.predictions.query_one({"job_uuid": predict["uuid"]}, properties=["prediction_id"])
        if first is None:  # a rerun: the predictions were made by the first run's job
            first = db.predictions.query_one({"model_id": model["model_id"], "stale": False}, properties=["prediction_id"])
        result.prediction_id = first["prediction_id"] if first else None
    return result


def write_figures(db: Database, model: dict[str, Any], out: Path) -> tuple[Path | None, Path | None]:
    """Parity plot of the held-out (val + test) structures coloured by mixing type, and the learning curve."""
    from perovdb.plots import learning_curves, parity_plot

    level = model.get("target_level_of_theory")
    held_out = set(model.get("split", {}).get("val", [])) | set(model.get("split", {}).get("test", []))
    evaluation = db.evaluations.query_one(
        {"model_id": model["model_id"], "subset": "all", "reference_level_of_theory": level}
    )
    parity = None
    if evaluation is not None:
        pairs = [p for p in evaluation["pairs"] if p["structure_id"] in held_out]
        mixing = {
            s["structure_id"]: (s.get("perovskite") or {}).get("mixing_type", "not ABX3")
            for s in db.structures.query(
                {"structure_id": {"$in": [p["structure_id"] for p in pairs]}}, properties=["structure_id", "perovskite"]
            )
        }
        test = db.evaluations.query_one(
            {"model_id": model["model_id"], "subset": "split=test", "reference_level_of_theory": level}
        )
        title = f"{model['name']} v{model['version']}: held-out compounds"
        if test and test.get("mae") is not None:
            title += f" (test MAE {test['mae']:.3f} {model['unit']}, n={test['n']})"
        parity = parity_plot(
            [p["predicted"] for p in pairs],
            [p["reference"] for p in pairs],
            out / "parity_hse06_gap.png",
            groups=[mixing.get(p["structure_id"], "not ABX3") for p in pairs],
            xlabel=f"{level} {model['target_property']} ({model['unit']})",
            ylabel=f"ALIGNN prediction ({model['unit']})",
            title=title,
        )
    curve = None
    if model.get("history"):
        curve = learning_curves({f"{model['name']} v{model['version']}": model["history"]}, out / "learning_curve.png")
    return parity, curve
