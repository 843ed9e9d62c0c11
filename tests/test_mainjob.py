"""The main job end to end on a reduced but real subset: ingest → flow → builders → evaluation → figures → provenance."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
import yaml
from rich.console import Console

from conftest import HSE_TABLE, JARVIS, MULTIFIDELITY, PBE_TABLE, REPO, make_database
from perovdb.mainjob import run_main_job
from perovdb.provenance import to_tree, walk
from perovdb.query import find


def _subset_data(tmp_path):
    data = tmp_path / "data"
    (data / "mannodi_multifidelity_structures").mkdir(parents=True)
    (data / "mannodi_halide_perovskites").mkdir()
    with open(MULTIFIDELITY, newline="") as handle:
        rows = list(csv.reader(handle))
    functional = rows[0].index("Functional")
    keep = [r for r in rows[1:] if r[functional] == "PBE"][:30] + [r for r in rows[1:] if r[functional] == "HSE"][:30]
    with open(data / "mannodi_multifidelity_structures" / MULTIFIDELITY.name, "w", newline="") as handle:
        csv.writer(handle).writerows([rows[0], *keep])
    for table in (PBE_TABLE, HSE_TABLE):
        with open(table, newline="") as handle:
            head = list(csv.reader(handle))[:25]
        with open(data / "mannodi_halide_perovskites" / table.name, "w", newline="") as handle:
            csv.writer(handle).writerows(head)
    shutil.copytree(JARVIS, data / JARVIS.name)
    spec = yaml.safe_load((REPO / "workflows" / "hse_gap.yaml").read_text())
    spec["training"].update(epochs=2, early_stopping_patience=None)
    spec_path = tmp_path / "hse_gap_quick.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    return data, spec_path


@pytest.mark.slow
def test_main_job_end_to_end_and_rerun_reuses_everything(tmp_path):
    data, spec = _subset_data(tmp_path)
    db = make_database("monty", tmp_path)
    out = tmp_path / "out"
    first = run_main_job(db, data=data, spec_path=spec, out=out)
    assert all(report.ok for report in first.ingest.values())
    assert first.flow is not None and first.flow.finished
    assert first.model_id and first.evaluations
    test = [e for e in first.evaluations if e["subset"] == "split=test" and e["reference_level_of_theory"] == "HSE06"]
    assert test and test[0]["n"] > 0 and test[0]["mae"] is not None
    assert first.parity_png.stat().st_size > 10_000 and first.learning_curve_png.stat().st_size > 10_000
    builds = {b.builder: b for b in first.builds}
    assert builds["materials"].changed > 0 and builds["evaluations"].changed > 0
    lineage = walk(db, first.prediction_id)
    assert first.model_id in lineage.nodes and any(n["kind"] == "file" for n in lineage.nodes.values())
    printed = Console(width=200, record=True, file=io.StringIO())
    printed.print(to_tree(walk(db, first.model_id)))
    text = printed.export_text()
    assert "[split=test]" in text and "[all]" in text  # the evaluations' subsets, not read as markup
    counts = {name: len(find(db, name, {})) for name in ("structures", "calculations", "models", "predictions")}

    second = run_main_job(db, data=data, spec_path=spec, out=out)
    assert second.flow.finished and second.model_id == first.model_id
    assert all(r.new == 0 and r.updated == 0 for r in second.ingest.values())
    train = db.store("job_records", key="job_uuid").query_one({"job_uuid": next(
        j["uuid"] for j in second.flow.jobs if j["name"] == "train")})
    assert train["outputs"]["reused"] is True
    assert {name: len(find(db, name, {})) for name in counts} == counts
    assert all(b.planned == 0 for b in second.builds)
