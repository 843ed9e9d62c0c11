"""Run flows locally (with resume), list their state, and hand them to a cluster engine."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobflow import Flow, JobStore, run_locally
from monty.json import MontyDecoder

from perovdb.db import Database
from perovdb.errors import ConfigurationError, PerovdbError
from perovdb.flows.context import using_database
from perovdb.provenance.record import FLOWS, JOB_RECORDS, record_flow

#: jobflow's collections in the perovdb database
JOBS_COLLECTION = "jobs"
JOB_DATA_COLLECTION = "job_data"


def job_store(db: Database) -> JobStore:
    """jobflow's JobStore in the same database: job documents in ``jobs``, large outputs in ``job_data``."""
    return JobStore(
        db.store(JOBS_COLLECTION, key="uuid"),
        additional_stores={"data": db.store(JOB_DATA_COLLECTION, key="blob_uuid")},
    )


@dataclass
class FlowState:
    """A flow and the state of each of its jobs."""

    flow_uuid: str
    name: str
    jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return all(job["status"] == "completed" for job in self.jobs)


def run_flow(
    db: Database,
    flow: Flow,
    *,
    spec: dict[str, Any] | None = None,
    source: str | None = None,
) -> FlowState:
    """Record the flow's graph, then run it here with the JobStore in ``db``."""
    record_flow(db, flow, spec=spec, source=source)
    _run(db, flow)
    return flow_state(db, flow.uuid)


def _run(db: Database, flow: Flow) -> None:
    store = job_store(db)
    with using_database(db), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="cd is deprecated", category=FutureWarning)  # jobflow's own
        run_locally(flow, store=store, log=False, ensure_success=False, allow_external_references=True)


def flow_state(db: Database, flow_uuid: str) -> FlowState:
    """Jobs of a recorded flow with their status (completed, failed, running or waiting)."""
    flow = db.store(FLOWS, key="flow_uuid").query_one({"flow_uuid": flow_uuid})
    if flow is None:
        raise PerovdbError(f"no flow {flow_uuid!r}")
    records = {
        r["job_uuid"]: r
        for r in db.store(JOB_RECORDS, key="job_uuid").query({"job_uuid": {"$in": [j["uuid"] for j in flow["jobs"]]}})
    }
    outputs = {
        d["uuid"] for d in db.store(JOBS_COLLECTION, key="uuid").query(
            {"uuid": {"$in": [j["uuid"] for j in flow["jobs"]]}}, properties=["uuid"]
        )
    }
    jobs = []
    for job in flow["jobs"]:
        record = records.get(job["uuid"], {})
        status = record.get("status", "waiting")
        if status == "completed" and job["uuid"] not in outputs:
            status = "failed"  # recorded but jobflow holds no output: treat as not done
        jobs.append(
            {
                "uuid": job["uuid"],
                "name": job["name"],
                "status": status,
                "started": record.get("started"),
                "finished": record.get("finished"),
                "error": record.get("error"),
            }
        )
    return FlowState(flow_uuid=flow_uuid, name=flow["name"], jobs=jobs)


def list_flows(db: Database, limit: int = 20) -> list[FlowState]:
    """The most recent flows, newest first."""
    flows = db.store(FLOWS, key="flow_uuid").query({}, properties=["flow_uuid"], sort={"created": -1}, limit=limit)
    return [flow_state(db, f["flow_uuid"]) for f in flows]


def rerun_flow(db: Database, flow_uuid: str) -> FlowState:
    """Resume a flow: run only the jobs that did not complete; finished jobs' outputs are read from the store."""
    doc = db.store(FLOWS, key="flow_uuid").query_one({"flow_uuid": flow_uuid})
    if doc is None:
        raise PerovdbError(f"no flow {flow_uuid!r}")
    state = flow_state(db, flow_uuid)
    done = {job["uuid"] for job in state.jobs if job["status"] == "completed"}
    flow = json.loads(doc["flow_json"], cls=MontyDecoder)  # the Flow, with its jobs and uuids
    remaining = [job for job in flow.jobs if job.uuid not in done]
    if remaining:
        _run(db, Flow(remaining, name=flow.name, uuid=flow.uuid))
    return flow_state(db, flow_uuid)


Engine = Literal["fireworks", "jobflow-remote"]


def submit_flow(
    db: Database,
    flow: Flow,
    engine: Engine,
    *,
    launchpad: str | Path | Any | None = None,
    worker: str | None = None,
    project: str | None = None,
    spec: dict[str, Any] | None = None,
) -> str:
    """Hand the flow to a distributed engine; jobs open ``db.uri`` (or the worker's ``PEROVDB_URI``).

    ``fireworks``: ``flow_to_workflow`` + ``LaunchPad.add_wf`` (``launchpad``: a LaunchPad, a
    my_launchpad.yaml path, or None for FireWorks' auto-load). ``jobflow-remote``: ``submit_flow`` to the
    named ``worker`` of the jobflow-remote ``project``. Returns the engine's id of the flow.
    """
    if db.backend == "memory":
        raise ConfigurationError("a memory:// database lives in this process only; submit with a mongodb:// URI")
    hand_over = _engine(engine, store=job_store(db), launchpad=launchpad, worker=worker, project=project)
    record_flow(db, flow, spec=spec, source=f"submitted to {engine}")
    try:
        return hand_over(flow)
    except Exception as error:  # whatever the engine raises: the flow is not queued, so it is not recorded either
        db.store(FLOWS, key="flow_uuid").remove_docs({"flow_uuid": flow.uuid})
        raise ConfigurationError(f"{engine} did not take the flow ({type(error).__name__}: {error})") from error


def _engine(
    engine: Engine, *, store: JobStore, launchpad: str | Path | Any | None, worker: str | None, project: str | None
) -> Callable[[Flow], str]:
    """A function handing a flow to ``engine`` and returning the engine's id of it; ``ConfigurationError``
    when the engine is not installed or not configured (checked before anything is recorded)."""
    if engine == "fireworks":
        try:
            from fireworks import LaunchPad
            from jobflow.managers.fireworks import flow_to_workflow
        except ImportError:
            raise ConfigurationError("FireWorks is not installed: pip install 'perovdb[cluster]'") from None
        try:
            if launchpad is None:
                pad = LaunchPad.auto_load()
            elif isinstance(launchpad, (str, Path)):
                pad = LaunchPad.from_file(str(launchpad))
            else:
                pad = launchpad
        except Exception as error:  # a missing file, YAML that does not parse, a key LaunchPad does not take
            raise ConfigurationError(
                f"cannot load the FireWorks launchpad {launchpad or ''} ({type(error).__name__}: {error})"
            ) from error

        def add_workflow(flow: Flow) -> str:
            mapping = pad.add_wf(flow_to_workflow(flow, store=store))
            return str(min(mapping.values())) if mapping else flow.uuid

        return add_workflow
    if engine == "jobflow-remote":
        try:
            from jobflow_remote import submit_flow as remote_submit
        except ImportError:
            raise ConfigurationError("jobflow-remote is not installed: pip install 'perovdb[cluster]'") from None
        if worker is None:
            raise ConfigurationError("jobflow-remote needs --worker (a worker name of your jobflow-remote project)")

        def submit_remote(flow: Flow) -> str:
            remote_submit(flow, worker=worker, project=project)
            return flow.uuid

        return submit_remote
    raise ConfigurationError(f"unknown engine {engine!r}: use fireworks or jobflow-remote")
