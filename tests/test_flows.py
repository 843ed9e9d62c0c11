"""Workflows on real data: specs, local runs with provenance, resume, FireWorks submission, lineage."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import MULTIFIDELITY, REPO, make_database
from perovdb.flows import WorkflowSpec, flow_state, job_store, rerun_flow, run_flow
from perovdb.ingest import ingest
from perovdb.provenance import diff_models, to_dot, to_json, walk
from perovdb.query import find

WORKFLOWS = REPO / "workflows"
QUICK = {"epochs": 1, "batch_size": 16, "early_stopping_patience": None}


def _subset(tmp_path: Path, n_pbe: int = 31, n_hse: int = 28) -> Path:
    """The first PBE and HSE06 rows of the real multi-fidelity set (the 31st PBE row has the geometry of one
    of the first HSE06 rows: that structure has both gaps)."""
    with open(MULTIFIDELITY, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    functional = header.index("Functional")
    pbe = [r for r in body if r[functional] == "PBE"][:n_pbe]
    hse = [r for r in body if r[functional] == "HSE"][:n_hse]
    path = tmp_path / "mf_subset.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *pbe, *hse])
    return path


def _quick(spec: WorkflowSpec) -> WorkflowSpec:
    update = {"training": spec.training.model_copy(update=QUICK)}
    if spec.pretraining is not None:
        update["pretraining"] = spec.pretraining.model_copy(update=QUICK)
    return spec.model_copy(update=update)


@pytest.fixture
def mf_db(db, tmp_path):
    assert ingest(db, _subset(tmp_path)).ok
    return db


def test_shipped_specs_make_the_documented_flows():
    hse = WorkflowSpec.from_file(WORKFLOWS / "hse_gap.yaml").to_flow()
    names = [job.name for job in hse.jobs]
    assert names == ["build graphs", "split", "train", "predict", "evaluate"]
    by_name = {job.name: job.uuid for job in hse.jobs}
    edges = set(hse.graph.edges())
    assert (by_name["train"], by_name["predict"]) in edges and (by_name["split"], by_name["train"]) in edges
    mf = WorkflowSpec.from_file(WORKFLOWS / "pbe_to_hse.yaml")
    assert mf.pretrain_dataset.level_of_theory == "PBE" and mf.dataset.level_of_theory == "HSE06"
    flow = mf.to_flow()
    by_name = {job.name: job.uuid for job in flow.jobs}
    assert (by_name["pretrain"], by_name["fine-tune"]) in set(flow.graph.edges())
    assert (by_name["split"], by_name["pretrain"]) in set(flow.graph.edges())  # pretraining excludes val/test compounds


def test_bad_spec_names_file_and_field(tmp_path):
    from perovdb.errors import InvalidRecord

    bad = tmp_path / "bad.yaml"
    bad.write_text((WORKFLOWS / "hse_gap.yaml").read_text().replace("epochs: 12", "epochs: -3"))
    with pytest.raises(InvalidRecord) as error:
        WorkflowSpec.from_file(bad)
    assert error.value.field == "training.epochs" and str(bad) in str(error.value)


def test_hse_gap_flow_end_to_end_with_provenance(mf_db):
    db = mf_db
    spec = _quick(WorkflowSpec.from_file(WORKFLOWS / "hse_gap.yaml"))
    flow = spec.to_flow()
    state = run_flow(db, flow, spec=spec.model_dump(mode="json"), source="workflows/hse_gap.yaml")
    assert state.finished, state.jobs
    [model] = find(db, "models", {})
    train_uuid = next(j["uuid"] for j in state.jobs if j["name"] == "train")
    assert model["job_uuid"] == train_uuid and model["active"] and model["target_level_of_theory"] == "HSE06"
    # trained on exactly the HSE06 structures, split grouped by compound
    hse_ids = {c["structure_id"] for c in find(db, "calculations", {"level_of_theory": "HSE06"})}
    assert {i for part in model["split"].values() for i in part} == hse_ids
    # predictions: every perovskite without an HSE06 gap, made by the predict job; none for the HSE06 ones
    predict_uuid = next(j["uuid"] for j in state.jobs if j["name"] == "predict")
    predicted = {p["structure_id"] for p in find(db, "predictions", {"job_uuid": predict_uuid})}
    everything = {s["structure_id"] for s in find(db, "structures", {})}
    assert predicted == everything - hse_ids and predicted
    # evaluations against HSE06, including the held-out test compounds
    test = find(db, "evaluations", {"model_id": model["model_id"], "subset": "split=test"})
    assert test and test[0]["n"] == len(model["split"]["test"]) and test[0]["reference_level_of_theory"] == "HSE06"
    # jobflow's own store lives in the same database; the history went to the additional data store
    store = job_store(db)
    store.connect()
    assert {d["uuid"] for d in store.query({}, properties=["uuid"])} == {j.uuid for j in flow.jobs}
    assert db.store("job_data", key="blob_uuid").count() >= 1
    # provenance: inputs resolved to ids and hashes, code versions
    record = db.store("job_records", key="job_uuid").query_one({"job_uuid": train_uuid})
    assert record["inputs"]["snapshot"]["n"] == len(hse_ids) and record["versions"]["torch"]
    assert {"alignn", "pymatgen", "jobflow", "perovdb"} <= set(record["versions"])
    # lineage of one prediction reaches the model, the training job, its flow and the source file
    prediction = find(db, "predictions", {"job_uuid": predict_uuid}, limit=1)[0]
    lineage = walk(db, prediction["prediction_id"])
    kinds = {node["kind"] for node in lineage.nodes.values()}
    assert {"model", "job", "flow", "dataset", "file", "structure", "source"} <= kinds
    assert train_uuid in lineage.nodes and flow.uuid in lineage.nodes
    assert '"nodes"' in to_json(lineage) and "->" in to_dot(lineage)
    # and forward from a training structure to the model
    forward = walk(db, sorted(hse_ids)[0], backward=False)
    assert model["model_id"] in forward.nodes
    # a job: its flow, its recorded inputs and what it wrote
    job = walk(db, train_uuid)
    assert (model["model_id"], "trained") in job.outputs_of(train_uuid) and flow.uuid in job.nodes
    assert job.nodes[train_uuid]["inputs"]["snapshot"]["n"] == len(hse_ids)
    # the model's training data was read from one HSE06 record per structure (not its PBE rows too)
    files = [n["label"] for n in walk(db, model["model_id"], forward=False).nodes.values() if n["kind"] == "file"]
    assert files and all(label.endswith(f"({len(hse_ids)} records)") for label in files), files
    assert any(relation == "made" for _, relation in walk(db, predict_uuid).outputs_of(predict_uuid))

    # running the same spec again reuses the model and duplicates nothing
    n_predictions = len(find(db, "predictions", {}))
    again = run_flow(db, spec.to_flow(), spec=spec.model_dump(mode="json"))
    assert again.finished
    assert len(find(db, "models", {})) == 1 and len(find(db, "predictions", {})) == n_predictions


def test_rerun_resumes_a_failed_flow_without_recomputing(mf_db, monkeypatch):
    import perovdb.flows.jobs as jobs

    db = mf_db
    spec = _quick(WorkflowSpec.from_file(WORKFLOWS / "hse_gap.yaml"))
    flow = spec.to_flow()
    real = jobs.predict_structures
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "predict_structures", crash_once)
    state = run_flow(db, flow)
    status = {j["name"]: j["status"] for j in state.jobs}
    assert status["train"] == "completed" and status["predict"] == "failed"
    train = db.store("job_records", key="job_uuid").query_one({"name": "train"})
    resumed = rerun_flow(db, flow.uuid)
    assert resumed.finished
    after = db.store("job_records", key="job_uuid").query_one({"job_uuid": train["job_uuid"]})
    assert after["started"] == train["started"]  # the finished training job was not run again
    assert len(find(db, "models", {})) == 1
    ids = [p["prediction_id"] for p in find(db, "predictions", {})]
    assert len(ids) == len(set(ids))
    assert flow_state(db, flow.uuid).finished


@pytest.mark.slow
def test_multi_fidelity_flow_and_model_diff(tmp_path):
    db = make_database("memory", tmp_path)
    assert ingest(db, _subset(tmp_path, n_pbe=24, n_hse=20)).ok
    spec = _quick(WorkflowSpec.from_file(WORKFLOWS / "pbe_to_hse.yaml"))
    state = run_flow(db, spec.to_flow())
    assert state.finished, state.jobs
    models = {m["name"]: m for m in find(db, "models", {})}
    pretrain, finetuned, direct = (models[f"pbe-to-hse-{k}"] for k in ("pretrain", "finetuned", "direct"))
    assert finetuned["dataset"]["init_from"] == pretrain["model_id"]
    # no HSE06 validation/test structure (nor its PBE twin, the same geometry) in pretraining
    held_out = set(finetuned["split"]["val"]) | set(finetuned["split"]["test"])
    pretrained_on = {i for part in pretrain["split"].values() for i in part}
    assert held_out and not held_out & pretrained_on
    assert finetuned["split"] == direct["split"]
    changes = diff_models(db, finetuned["model_id"], direct["model_id"])
    assert any(c["field"] == "dataset.init_from" for c in changes["data"])
    assert not any(c["field"].startswith("split") for c in changes["data"])
    assert walk(db, finetuned["model_id"]).nodes[pretrain["model_id"]]["kind"] == "model"


def test_submit_to_fireworks_and_run_there(tmp_path, monkeypatch):
    """FireWorks on a mongomock LaunchPad: the flow converts, is added, and a rocket runs it on the embedded store."""
    fireworks = pytest.importorskip("fireworks")
    import mongomock_ng
    from fireworks.core import launchpad as launchpad_module
    from fireworks.core.rocket_launcher import rapidfire

    from perovdb.flows import submit_flow

    monkeypatch.setattr(launchpad_module, "MongoClient", mongomock_ng.MongoClient)
    monkeypatch.setattr(launchpad_module, "GRIDFS_FALLBACK_COLLECTION", None)  # GridFS needs a real server
    pad = fireworks.LaunchPad(host="mongodb://localhost:27017/fireworks_test", uri_mode=True, name="fireworks_test")
    pad.reset("", require_password=False)
    db = make_database("monty", tmp_path)
    assert ingest(db, _subset(tmp_path, n_pbe=20, n_hse=24)).ok
    spec = _quick(WorkflowSpec.from_file(WORKFLOWS / "hse_gap.yaml"))
    flow = spec.to_flow(uri=db.uri)
    submit_flow(db, flow, "fireworks", launchpad=pad)
    assert pad.get_fw_ids() and len(pad.get_fw_ids()) == len(flow.jobs)
    monkeypatch.chdir(tmp_path)
    rapidfire(pad, nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    assert len(pad.get_fw_ids({"state": "COMPLETED"})) == len(flow.jobs)
    assert flow_state(db, flow.uuid).finished
    assert find(db, "models", {}) and find(db, "predictions", {})


def test_a_submission_the_engine_refuses_records_nothing(tmp_path):
    """A launchpad file that is missing, or an engine that raises while queueing, is one clear error, and no
    flow is left behind 'waiting' forever in perovdb flow status."""
    pytest.importorskip("fireworks")
    from perovdb.errors import ConfigurationError
    from perovdb.flows import submit_flow
    from perovdb.provenance.record import FLOWS

    db = make_database("monty", tmp_path)
    flow = _quick(WorkflowSpec.from_file(WORKFLOWS / "hse_gap.yaml")).to_flow(uri=db.uri)
    with pytest.raises(ConfigurationError, match="no_such_launchpad.yaml"):
        submit_flow(db, flow, "fireworks", launchpad=tmp_path / "no_such_launchpad.yaml")

    class Refusing:  # a LaunchPad whose database refuses the write
        def add_wf(self, workflow: object) -> dict:
            raise ConnectionError("launchpad database unreachable")

    with pytest.raises(ConfigurationError, match="fireworks did not take the flow .*unreachable"):
        submit_flow(db, flow, "fireworks", launchpad=Refusing())
    assert db.store(FLOWS, key="flow_uuid").count() == 0
