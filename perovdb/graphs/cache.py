"""Graph cache in the artifact store, and parallel graph building that reuses it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pymatgen.core import Structure

from perovdb.artifacts import ArtifactStore
from perovdb.config import get_settings
from perovdb.graphs.graph import CrystalGraph, build_graph, graph_from_arrays, structure_arrays
from perovdb.graphs.settings import GraphSettings
from perovdb.parallel import process_pool, resolve_workers

#: below this many graphs to build, worker start-up costs more than it saves
PARALLEL_THRESHOLD = 16


class GraphCache:
    """Graphs of one ``GraphSettings`` in an artifact store, keyed ``graphs/<settings_hash>/<structure_id>``."""

    def __init__(self, artifacts: ArtifactStore, settings: GraphSettings) -> None:
        self.artifacts = artifacts
        self.settings = settings

    def key(self, structure_id: str) -> str:
        """Artifact key of a structure's graph."""
        return f"graphs/{self.settings.settings_hash}/{structure_id}"

    def get(self, structure_id: str) -> CrystalGraph | None:
        """The cached graph, or None when absent or unreadable (an old format is rebuilt, not trusted)."""
        try:
            data = self.artifacts.get(self.key(structure_id))
        except KeyError:
            return None
        try:
            graph = CrystalGraph.from_bytes(data)
        except (ValueError, KeyError, OSError):
            return None
        return graph if graph.settings_hash == self.settings.settings_hash else None

    def put(self, structure_id: str, graph: CrystalGraph) -> str:
        """Store a graph; returns its sha256."""
        if graph.settings_hash != self.settings.settings_hash:
            raise ValueError(f"graph built with settings {graph.settings_hash}, cache is {self.settings.settings_hash}")
        return self.artifacts.put(self.key(structure_id), graph.to_bytes())

    def __contains__(self, structure_id: str) -> bool:
        return self.artifacts.exists(self.key(structure_id))

    def structure_ids(self) -> list[str]:
        """Ids of all cached graphs of these settings."""
        prefix = f"graphs/{self.settings.settings_hash}/"
        return [key[len(prefix) :] for key in self.artifacts.keys(prefix)]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; no oversubscription


def _build_one(item: tuple[str, tuple, GraphSettings]) -> tuple[str, CrystalGraph]:
    """Worker: the graph from ``structure_arrays`` (pickled arrays travel faster than Structures or npz bytes)."""
    structure_id, arrays, settings = item
    return structure_id, graph_from_arrays(*arrays, settings)


def build_graphs(
    structures: Sequence[tuple[str, Structure]],
    settings: GraphSettings | None = None,
    cache: GraphCache | None = None,
    workers: int | None = None,
    progress: bool = True,
    builder: Callable[[Structure, GraphSettings], CrystalGraph] = build_graph,
) -> dict[str, CrystalGraph]:
    """Graphs of ``(structure_id, structure)`` pairs: cached ones reused, missing ones built (and cached).

    Missing graphs are built in ``workers`` processes (default ``PEROVDB_NUM_WORKERS``, 0 = all cores),
    serially when there are few of them or ``workers == 1``. ``builder`` replaces ``build_graph`` in the
    serial path (tests count builds with it).
    """
    settings = settings or (cache.settings if cache is not None else GraphSettings())
    if cache is not None and cache.settings != settings:
        raise ValueError("the cache holds graphs of other settings")
    graphs: dict[str, CrystalGraph] = {}
    missing: list[tuple[str, Structure]] = []
    order: dict[str, None] = {}  # first-seen order, duplicates dropped
    for structure_id, structure in structures:
        if structure_id in order:
            continue
        order[structure_id] = None
        cached = cache.get(structure_id) if cache is not None else None
        if cached is not None:
            graphs[structure_id] = cached
        else:
            missing.append((structure_id, structure))
    configured = get_settings().num_workers if workers is None else 0  # the environment read only when needed
    workers = min(resolve_workers(workers, configured), len(missing))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("graphs"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress or not missing, transient=True) as bar:
        task = bar.add_task("graphs", total=len(missing))

        def done(structure_id: str, graph: CrystalGraph) -> None:
            graphs[structure_id] = graph
            if cache is not None:
                cache.put(structure_id, graph)
            bar.advance(task)

        if workers <= 1 or len(missing) < PARALLEL_THRESHOLD:
            for structure_id, structure in missing:
                done(structure_id, builder(structure, settings))
        else:
            items = [(sid, structure_arrays(s), settings) for sid, s in missing]
            chunksize = max(1, len(items) // (workers * 8))
            with process_pool(workers, initializer=_init_worker) as pool:
                for structure_id, graph in pool.map(_build_one, items, chunksize=chunksize):
                    done(structure_id, graph)
    return {structure_id: graphs[structure_id] for structure_id in order}
