"""Run perovdb's builders in dependency order, under the database's build lock, and record each run."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from monty.json import MontyEncoder

from perovdb.builders.base import BuildPlan, IncrementalBuilder
from perovdb.db import Database, chunks, store_state
from perovdb.documents import naive_utc, utcnow
from perovdb.gc_passes import fewer_gc_passes

#: builder names in dependency order
BUILD_ORDER: tuple[str, ...] = ("materials", "predictions", "evaluations")
#: collection recording every (non-dry) run, for provenance
RUNS_COLLECTION = "builder_runs"


@dataclass
class BuildReport:
    """What one builder did (or, in a dry run, would do)."""

    builder: str
    version: str
    dry_run: bool
    total: int
    planned: int
    changed: int = 0
    removed: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    #: the earlier run whose sources and targets are unchanged (nothing was planned), if any
    unchanged_since: str | None = None


def make_builder(db: Database, name: str, *, full: bool = False) -> IncrementalBuilder:
    """The builder ``name`` wired to ``db``'s stores."""
    if name == "materials":
        from perovdb.builders.materials import MaterialsBuilder

        return MaterialsBuilder(db.structures, db.calculations, db.materials, full=full)
    if name == "predictions":
        from perovdb.builders.predictions import PredictionsBuilder

        return PredictionsBuilder(db.models, db.structures, db.predictions, artifacts=db.artifacts, full=full)
    if name == "evaluations":
        from perovdb.builders.evaluations import EvaluationsBuilder

        return EvaluationsBuilder(
            db.models, db.predictions, db.calculations, db.structures, db.evaluations, full=full
        )
    raise ValueError(f"unknown builder {name!r}; choose from {', '.join(BUILD_ORDER)} or 'all'")


def resolve(names: Iterable[str]) -> list[str]:
    """Builder names in dependency order ('all' = every builder)."""
    wanted = set(names)
    if "all" in wanted:
        return list(BUILD_ORDER)
    unknown = wanted - set(BUILD_ORDER)
    if unknown:
        raise ValueError(f"unknown builder(s) {sorted(unknown)}; choose from {', '.join(BUILD_ORDER)} or 'all'")
    return [name for name in BUILD_ORDER if name in wanted]


def _states(stores: Iterable[Any]) -> dict[str, str] | None:
    """Each store's state token (see ``store_state``), or None when one cannot be told."""
    states: dict[str, str] = {}
    for store in stores:
        token = store_state(store)
        if token is None:
            return None
        states[store.collection_name] = token
    return states


def _last_run(db: Database, builder: IncrementalBuilder) -> dict | None:
    """This builder's (this version's) most recent completed run, if any."""
    runs = db.store(RUNS_COLLECTION, key="run_id").query(
        {"builder": builder.name, "version": builder.version, "dry_run": False}, sort={"started": -1}, limit=1
    )
    return next(iter(runs), None)


def _unchanged(builder: IncrementalBuilder, last: dict | None, sources: dict[str, str] | None) -> bool:
    """Whether the sources and targets are exactly as the ``last`` run left them."""
    return (
        sources is not None
        and last is not None
        and last.get("sources") == sources
        and last.get("targets") == _states(builder.targets)
    )


def run_builder(
    db: Database,
    builder: IncrementalBuilder,
    *,
    dry_run: bool = False,
    chunk_size: int = 500,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Plan and run one builder; in a dry run only plan (nothing is written).

    When the backend can tell (the embedded store: see ``store_state``) that no source or target was
    written since this builder's last run, nothing is planned: the run is recorded as unchanged.
    Otherwise the builder learns when that run started (less ``build_lookback_seconds``), so it can
    look only at what was written since.
    """
    started, clock = utcnow(), time.perf_counter()
    builder.connect()
    sources = None if builder.full else _states(builder.sources)  # before planning: later writes are seen next time
    last = _last_run(db, builder)
    unchanged = last if _unchanged(builder, last, sources) else None
    if last is not None:
        builder.since = naive_utc(last["started"]) - timedelta(seconds=db.settings.build_lookback_seconds)
    plan = builder.plan() if unchanged is None else BuildPlan(total=unchanged["total"])
    report = BuildReport(
        builder=builder.name,
        version=builder.version,
        dry_run=dry_run,
        total=plan.total,
        planned=plan.planned,
        removed=len(plan.remove),
        reasons=plan.reasons,
        unchanged_since=unchanged["run_id"] if unchanged else None,
    )
    if dry_run:
        report.seconds = time.perf_counter() - clock
        return report
    done = 0
    builder.total = len(plan.build)
    # few, large writes: each one looks up its keys and makes the embedded store re-read the target;
    # at most ~20 for a large plan
    chunk_size = max(chunk_size, -(-len(plan.build) // 20))
    for chunk in chunks(builder.items_for(plan.build), chunk_size):
        builder.update_targets([builder.process_item(item) for item in chunk])
        done += len(chunk)
        if on_progress:
            on_progress(done, len(plan.build))
    report.removed = builder.remove_targets(plan.remove) if plan.remove else 0
    report.changed = builder.changed
    report.seconds = time.perf_counter() - clock
    report.run_id = f"run-{uuid.uuid4().hex[:12]}"
    record = {**asdict(report), "started": started, "finished": utcnow(), "host": socket.gethostname()}
    record.update(sources=sources, targets=_states(builder.targets) if sources else None)
    db.store(RUNS_COLLECTION, key="run_id").update([record], key="run_id")
    return report


def run_builders(
    db: Database,
    names: Iterable[str] = ("all",),
    *,
    dry_run: bool = False,
    full: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
    lock_timeout: float = 600.0,
) -> list[BuildReport]:
    """Run the named builders in dependency order under the ``build`` lock (two runs never interleave)."""
    reports = []
    with db.lock("build", timeout=lock_timeout), fewer_gc_passes(db.settings.bulk_gc_threshold):
        for name in resolve(names):
            builder = make_builder(db, name, full=full)
            progress = (lambda done, total, n=name: on_progress(n, done, total)) if on_progress else None
            reports.append(run_builder(db, builder, dry_run=dry_run, on_progress=progress))
    return reports


def export_builders(db: Database, folder: str | Path, names: Iterable[str] = ("all",), *, full: bool = False) -> list[Path]:
    """Write each builder as maggma JSON (``<name>.json``) for ``mrun``; needs a shareable backend (monty, mongodb)."""
    if db.backend == "memory":
        raise ValueError("memory:// lives in one process; export builders of a monty:// or mongodb:// database")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in resolve(names):
        path = folder / f"{name}.json"
        path.write_text(json.dumps(make_builder(db, name, full=full).as_dict(), cls=MontyEncoder, indent=1))
        paths.append(path)
    return paths


def last_runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent recorded builder runs, newest first."""
    runs = list(db.store(RUNS_COLLECTION, key="run_id").query({}, sort={"started": -1}, limit=limit))
    for run in runs:
        run.pop("_id", None)
    return runs
