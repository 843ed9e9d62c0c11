"""Graph-building throughput: upstream ALIGNN builders vs perovdb, cache hits, 1 vs 2 worker processes.

Run: ``.venv/bin/python benchmarks/graphs.py [--perovskites 200]``. Prints rates and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from pymatgen.core import Structure

from perovdb.artifacts import MemoryArtifactStore
from perovdb.graphs import GraphCache, GraphSettings, build_graph, build_graphs
from perovdb.perovskite import parse_printed_structure
from perovdb.switches import torch_threads

REPO = Path(__file__).resolve().parent.parent
JARVIS = REPO / "data" / "jarvis_alignn_sample"
MULTIFIDELITY = REPO / "data" / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv"


def load_structures(n_perovskites: int) -> list[tuple[str, Structure]]:
    """The 50 JARVIS structures with targets, then the first ``n_perovskites`` relaxed perovskites."""
    with open(JARVIS / "id_prop.csv") as handle:
        names = [line.split(",")[0] for line in handle if line.strip()]
    structures = [(name, Structure.from_file(JARVIS / name)) for name in names]
    csv.field_size_limit(sys.maxsize)
    with open(MULTIFIDELITY) as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            if index >= n_perovskites:
                break
            structures.append((f"mf-{index}", parse_printed_structure(row["Structure"])))
    return structures


def timed(label: str, count: int, func) -> float:
    started = time.perf_counter()
    func()
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {count / seconds:8.1f} graphs/s  ({seconds:.2f} s)")
    return seconds


def upstream_pure(structures: list[tuple[str, Structure]], settings: GraphSettings) -> None:
    from alignn.torch_graph_builder import build_pure_torch_graph
    from jarvis.core.atoms import pmg_to_atoms

    with torch_threads(1):
        for _, structure in structures:
            build_pure_torch_graph(
                pmg_to_atoms(structure),
                two_body_cutoff=settings.cutoff,
                three_body_cutoff=settings.three_body_cutoff,
                max_neighbors=settings.max_neighbors,
                atom_features=settings.atom_features,
                use_matscipy_topology=False,
            )


def upstream_k_nearest(structures: list[tuple[str, Structure]], settings: GraphSettings) -> None:
    """Classic neighbour list + edge data (the DGL graph and line graph themselves need DGL, absent here)."""
    from alignn.graphs import build_undirected_edgedata, nearest_neighbor_edges
    from jarvis.core.atoms import pmg_to_atoms

    for _, structure in structures:
        atoms = pmg_to_atoms(structure)
        edges, _ = nearest_neighbor_edges(atoms, cutoff=settings.cutoff, max_neighbors=settings.max_neighbors, use_canonize=True)
        build_undirected_edgedata(atoms, edges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--perovskites", type=int, default=200)
    args = parser.parse_args()
    structures = load_structures(args.perovskites)
    n = len(structures)
    atoms = sum(len(s) for _, s in structures)
    print(f"{n} structures ({atoms} atoms; JARVIS 50 + {n - 50} relaxed perovskites)")
    for strategy, upstream in (("pure-top-k", upstream_pure), ("k-nearest", upstream_k_nearest)):
        settings = GraphSettings(neighbor_strategy=strategy)
        print(f"\n{strategy}")
        t_up = timed("upstream builder (serial)", n, lambda: upstream(structures, settings))

        def ours() -> None:
            for _, structure in structures:
                build_graph(structure, settings)

        t_ours = timed("perovdb build_graph (serial)", n, ours)
        cache = GraphCache(MemoryArtifactStore(), settings)
        t_w1 = timed("perovdb build_graphs, 1 worker, fill cache", n, lambda: build_graphs(structures, settings, cache, workers=1, progress=False))
        t_hit = timed("perovdb build_graphs, all cache hits", n, lambda: build_graphs(structures, settings, cache, workers=1, progress=False))
        t_w2 = timed("perovdb build_graphs, 2 workers", n, lambda: build_graphs(structures, settings, None, workers=2, progress=False))
        print(f"  upstream/perovdb time ratio: {t_up / t_ours:.2f}x   cache-hit speedup: {t_w1 / t_hit:.1f}x   "
              f"1→2 workers speedup: {t_w1 / t_w2:.2f}x")


if __name__ == "__main__":
    main()
