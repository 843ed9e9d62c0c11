"""End-to-end: the main job (``run_main_job``) into a fresh embedded store, and where its time goes.

One run, shares only (no timed assertions). Instrumentation (monkeypatched in this script only) gives
every second of the run to exactly one category, the innermost one active:

- ``database``: every call on a Store (query, query_one, update, count, distinct, remove_docs, …, of the
  domain collections and of jobflow's and the provenance collections) and on the artifact store (graph
  cache, weights); a query's documents are read inside the timer;
- ``graphs``: ``perovdb.graphs.build_graphs`` (structure → graph; cache reads/writes are ``database``);
- ``training``: ``train_model`` / ``fine_tune``; ``prediction``: ``LoadedModel.predict`` and
  ``perovdb.ml.train.predict`` (model inference, batches included);
- ``tracking``: the workflow phase's time outside every job body (jobflow's run_locally, the flow
  record, resolving references, opening the job's database), its database calls excluded;
- ``other``: the rest (ingest parsing, symmetry and validation, builders' own compute, figures).

Target: database + tracking < 10 % of the total.

Run: ``.venv/bin/python benchmarks/end_to_end.py [--epochs 3]`` (the shipped spec trains 12 epochs; the
whole main job takes ~10–15 min on 2 cores, most of it graph building; ``--epochs 0`` keeps the spec's).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import perovdb.flows.jobs  # noqa: E402
import perovdb.graphs  # noqa: E402
import perovdb.mainjob  # noqa: E402
import perovdb.ml  # noqa: E402
import perovdb.ml.train  # noqa: E402
from perovdb import connect  # noqa: E402
from perovdb.artifacts import DirectoryArtifactStore, MemoryArtifactStore  # noqa: E402
from perovdb.config import Settings  # noqa: E402
from perovdb.db import EmbeddedStore, SharedMemoryStore  # noqa: E402
from perovdb.ml.registry import LoadedModel  # noqa: E402
from perovdb.provenance.record import JOB_RECORDS  # noqa: E402

STORE_METHODS = ("query", "query_one", "update", "count", "distinct", "remove_docs", "groupby", "ensure_index",
                 "connect", "close", "replace_by_id", "last_updated", "newer_in", "state")  # fmt: skip
ARTIFACT_METHODS = ("put", "get", "exists", "delete", "keys")


class Profiler:
    """Exclusive time per category: a stack of active categories; time goes to the top one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, float] = defaultdict(float)  # database time by store and method (inclusive)
        self.stack: list[str] = []
        self.mark = time.perf_counter()

    def _switch(self) -> None:
        now = time.perf_counter()
        if self.stack:
            self.seconds[self.stack[-1]] += now - self.mark
        self.mark = now

    def enter(self, category: str) -> None:
        self._switch()
        self.stack.append(category)

    def leave(self) -> None:
        self._switch()
        self.stack.pop()

    def wrap(self, category: str, func: Callable, *, materialise: bool = False) -> Callable:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(category)
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
                if materialise and result is not None and not isinstance(result, (dict, list)):
                    result = iter(list(result))  # read the documents inside the timer
                return result
            finally:
                self.leave()
                if category == "database" and args:
                    store = getattr(args[0], "collection_name", type(args[0]).__name__)
                    self.calls[f"{store}.{func.__name__}"] += time.perf_counter() - started

        return timed


def instrument(profiler: Profiler) -> None:
    for cls in (EmbeddedStore, SharedMemoryStore):
        for name in STORE_METHODS:
            if hasattr(cls, name):
                setattr(cls, name, profiler.wrap("database", getattr(cls, name), materialise=name == "query"))
    for cls in (DirectoryArtifactStore, MemoryArtifactStore):
        for name in ARTIFACT_METHODS:
            setattr(cls, name, profiler.wrap("database", getattr(cls, name)))
    perovdb.graphs.build_graphs = profiler.wrap("graphs", perovdb.graphs.build_graphs)
    perovdb.ml.train_model = profiler.wrap("training", perovdb.ml.train_model)
    perovdb.ml.fine_tune = profiler.wrap("training", perovdb.ml.fine_tune)
    # ``train_model`` evaluates its splits with ``predict``; inside training that stays training
    inner_predict = perovdb.ml.train.predict
    perovdb.ml.train.predict = lambda *a, **k: (
        inner_predict(*a, **k) if profiler.stack and profiler.stack[-1] == "training"
        else profiler.wrap("prediction", inner_predict)(*a, **k)
    )  # fmt: skip
    LoadedModel.predict = profiler.wrap("prediction", LoadedModel.predict)
    # the workflow phase is tracking, except the jobs' bodies (inside ``record_job``), which are "other"
    perovdb.mainjob.run_flow = profiler.wrap("tracking", perovdb.mainjob.run_flow)
    inner_record = perovdb.flows.jobs.record_job

    @contextmanager
    def record_job(*args: Any, **kwargs: Any) -> Iterator[Any]:
        profiler.enter("other")
        try:
            with inner_record(*args, **kwargs) as record:
                yield record
        finally:
            profiler.leave()

    perovdb.flows.jobs.record_job = record_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="Training epochs (0 = the shipped spec's 12).")
    args = parser.parse_args()

    profiler = Profiler()
    instrument(profiler)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = perovdb.mainjob.SPEC
        if args.epochs:
            spec = yaml.safe_load(perovdb.mainjob.SPEC.read_text())
            spec["training"]["epochs"] = args.epochs
            spec_path = Path(tmp) / "hse_gap.yaml"
            spec_path.write_text(yaml.safe_dump(spec))
        uri = f"monty://{tmp}/store"
        db = connect(uri, settings=Settings(uri=uri))
        profiler.enter("other")
        clock = time.perf_counter()
        result = perovdb.mainjob.run_main_job(db, spec_path=spec_path, out=Path(tmp) / "out")
        total = time.perf_counter() - clock
        profiler.leave()
        records = list(db.store(JOB_RECORDS, key="job_uuid").query({"flow_uuid": {"$ne": None}}))
        in_jobs = sum((r["finished"] - r["started"]).total_seconds() for r in records if r.get("finished"))
        history = (db.models.query_one({"model_id": result.model_id}) or {}).get("history", []) if result.model_id else []
        db.close()

    workflow = result.seconds.get("workflow", 0.0)
    outside = max(workflow - in_jobs, 0.0)
    seconds = dict(profiler.seconds)
    tracking = seconds.get("tracking", 0.0)
    print(f"main job: {total:.1f} s in all; phases " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    print(f"  flow: {len(records)} jobs, {in_jobs:.1f} s inside jobs, {outside:.1f} s outside (jobflow + flow record)")
    if history:
        epoch_seconds = [h.get("seconds") for h in history if h.get("seconds") is not None]
        if epoch_seconds:
            print(f"  training: {len(history)} epochs, {sum(epoch_seconds):.1f} s by the model history "
                  f"({sum(epoch_seconds) / len(epoch_seconds):.1f} s/epoch)")  # fmt: skip
    print(f"\n{'category':10} {'seconds':>9} {'share':>7}")
    for name in ("database", "tracking", "graphs", "training", "prediction", "other"):
        print(f"{name:10} {seconds.get(name, 0.0):9.1f} {seconds.get(name, 0.0) / total:7.1%}")
    print(f"{'(sum)':10} {sum(seconds.values()):9.1f}")
    share = (seconds.get("database", 0.0) + tracking) / total
    print(f"\ndatabase + tracking = {share:.1%} of the total (target < 10%)")
    top = sorted(profiler.calls.items(), key=lambda item: -item[1])[:8]
    print("database time by collection and call (inclusive): " + ", ".join(f"{k} {v:.1f} s" for k, v in top))


if __name__ == "__main__":
    main()
