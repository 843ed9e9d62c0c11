"""Recording provenance: what each job saw and did, and how the jobs of a flow connect.

jobflow stores a job's outputs but not its resolved inputs (jobflow #374), nor which job's output fed
which job. perovdb writes both: one ``job_records`` document per job run (inputs with the ids and
hashes they matched, host, times, status, library versions, git commit, outputs) and one ``flows``
document per flow (job uuids and edges).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from monty.json import MontyEncoder

from perovdb.db import Database
from perovdb.documents import utcnow
from perovdb.documents.base import escape_keys

JOB_RECORDS = "job_records"
FLOWS = "flows"
#: libraries whose versions every job records
TRACKED_PACKAGES = ("perovdb", "alignn", "torch", "pymatgen", "jobflow", "maggma", "numpy", "jarvis-tools")


@cache
def code_versions() -> dict[str, str]:
    """Versions of the tracked libraries, Python, and the perovdb git commit when it runs from a checkout."""
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    commit = git_commit()
    if commit:
        versions["perovdb_git_commit"] = commit
    return versions


def git_commit() -> str | None:
    """The commit of the perovdb checkout (with '-dirty' when it has uncommitted changes), or None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


@dataclass
class JobRecorder:
    """Collects what a running job resolved and produced; written when the job ends."""

    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    derived_from: list[str] = field(default_factory=list)  # ids of documents this job read (models, structures…)


@contextmanager
def record_job(db: Database, job_uuid: str, name: str, flow_uuid: str | None = None) -> Iterator[JobRecorder]:
    """Record one job run: 'running' at start, then 'completed' or 'failed' with inputs, outputs and times."""
    store = db.store(JOB_RECORDS, key="job_uuid")
    recorder = JobRecorder()
    started = utcnow()
    base = {
        "job_uuid": job_uuid,
        "flow_uuid": flow_uuid,
        "name": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "versions": code_versions(),
    }
    store.update([{**base, "status": "running"}], key="job_uuid")
    try:
        yield recorder
    except BaseException as error:
        store.update(
            [
                {
                    **base,
                    "status": "failed",
                    "finished": utcnow(),
                    "inputs": escape_keys(recorder.inputs),
                    "error": "".join(traceback.format_exception_only(type(error), error)).strip(),
                }
            ],
            key="job_uuid",
        )
        raise
    store.update(
        [
            {
                **base,
                "status": "completed",
                "finished": utcnow(),
                "inputs": escape_keys(recorder.inputs),
                "outputs": escape_keys(recorder.outputs),
                "derived_from": recorder.derived_from,
            }
        ],
        key="job_uuid",
    )


def record_flow(db: Database, flow: Any, *, spec: dict[str, Any] | None = None, source: str | None = None) -> str:
    """Store a flow's graph (jobs and the edges of output references) and the spec it came from."""
    jobs = [{"uuid": job.uuid, "name": job.name} for job in flow.jobs]
    uuids = {job["uuid"] for job in jobs}
    edges = sorted(
        {(parent, child) for parent, child in flow.graph.edges() if parent in uuids and child in uuids}
    )
    db.store(FLOWS, key="flow_uuid").update(
        [
            {
                "flow_uuid": flow.uuid,
                "name": flow.name,
                "jobs": jobs,
                "edges": [list(edge) for edge in edges],
                "spec": escape_keys(spec or {}),
                "spec_source": source,
                "created": utcnow(),
                "flow_json": json.dumps(flow.as_dict(), cls=MontyEncoder),
                "versions": code_versions(),
            }
        ],
        key="flow_uuid",
    )
    return flow.uuid
