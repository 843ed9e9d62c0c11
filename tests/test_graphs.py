"""Crystal graphs: upstream edge-count parity for both strategies, serialisation, cache, molecules, settings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure

from perovdb.artifacts import MemoryArtifactStore
from perovdb.graphs import (
    CrystalGraph,
    GraphCache,
    GraphSettings,
    build_graph,
    build_graphs,
    collate,
)
from perovdb.perovskite import SiteFractions, generate_supercell

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream_alignn"
JARVIS = Path(__file__).resolve().parent.parent / "data" / "jarvis_alignn_sample"
REFERENCES = {"pure-top-k": "alignn2_pure_tiny_reference.csv", "k-nearest": "alignn_classic_tiny_reference.csv"}


def reference_rows(strategy: str) -> list[dict[str, str]]:
    with open(FIXTURES / REFERENCES[strategy]) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("strategy", ["pure-top-k", "k-nearest"])
def test_edge_counts_match_upstream(strategy: str) -> None:
    settings = GraphSettings(neighbor_strategy=strategy)
    rows = reference_rows(strategy)
    assert len(rows) == 50
    mismatches = []
    for row in rows:
        graph = build_graph(Structure.from_file(JARVIS / row["file"]), settings)
        got = (graph.num_atoms, graph.num_edges, graph.num_line_graph_edges)
        expected = (int(row["n_atoms"]), int(row["n_edges"]), int(row["n_line_graph_edges"]))
        if got != expected:
            mismatches.append((row["file"], got, expected))
    assert mismatches == []


@pytest.mark.parametrize("strategy", ["pure-top-k", "k-nearest"])
def test_graph_is_consistent(strategy: str) -> None:
    structure = Structure.from_file(JARVIS / "POSCAR-JVASP-97570.vasp")
    graph = build_graph(structure, GraphSettings(neighbor_strategy=strategy))
    cart = structure.cart_coords
    recomputed = cart[graph.dst] + graph.images @ structure.lattice.matrix - cart[graph.src]
    np.testing.assert_allclose(recomputed, graph.vectors, atol=1e-4)
    assert graph.atom_features.shape == (len(structure), 92)
    assert np.all(graph.dst[graph.lg_src] == graph.src[graph.lg_dst])  # bond pairs share the middle atom
    assert np.all(np.abs(graph.cosines) <= 1.0)
    if strategy == "k-nearest":  # symmetrised: every bond has its reverse
        forward = {(s, d, tuple(i)) for s, d, i in zip(graph.src, graph.dst, graph.images)}
        assert all((d, s, tuple(-np.array(i))) in forward for s, d, i in forward)


def test_three_body_cutoff_limits_line_graph() -> None:
    structure = Structure.from_file(JARVIS / "POSCAR-JVASP-97570.vasp")
    full = build_graph(structure, GraphSettings())
    short = build_graph(structure, GraphSettings(three_body_cutoff=3.0))
    assert short.num_edges == full.num_edges
    assert 0 < short.num_line_graph_edges < full.num_line_graph_edges
    lengths = np.linalg.norm(short.vectors, axis=1)
    assert np.all(lengths[short.lg_src] <= 3.0) and np.all(lengths[short.lg_dst] <= 3.0)


def test_bytes_round_trip() -> None:
    graph = build_graph(Structure.from_file(JARVIS / "POSCAR-JVASP-10.vasp"), GraphSettings())
    data = graph.to_bytes()
    again = CrystalGraph.from_bytes(data)
    assert again.equals(graph) and again.settings_hash == GraphSettings().settings_hash
    for name in ("atom_features", "src", "images", "vectors", "lg_src", "cosines", "lattice"):
        array = getattr(again, name)
        assert array.dtype == getattr(graph, name).dtype and array.flags.writeable
    # an entry of another format (the npz archives of format 1) is refused, so the cache rebuilds it
    buffer = io.BytesIO()
    np.savez(buffer, src=graph.src)
    with pytest.raises(ValueError, match="rebuild"):
        CrystalGraph.from_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="rebuild"):
        CrystalGraph.from_bytes(data.replace(b'"format_version":2', b'"format_version":9'))


@pytest.mark.parametrize("strategy", ["pure-top-k", "k-nearest"])
def test_methylammonium_perovskite_builds(strategy: str) -> None:
    structure = generate_supercell(SiteFractions.from_formula("MAPbI_3"), 6.3)
    assert {"C", "N", "H"} <= {el.symbol for el in structure.composition.elements}
    graph = build_graph(structure, GraphSettings(neighbor_strategy=strategy))
    assert graph.num_atoms == len(structure)
    assert np.bincount(graph.src, minlength=graph.num_atoms).min() >= 12
    assert graph.num_line_graph_edges > 0


def test_settings_hash_changes_with_every_setting() -> None:
    base = GraphSettings()
    variants = [
        GraphSettings(cutoff=6.0),
        GraphSettings(max_neighbors=16),
        GraphSettings(neighbor_strategy="k-nearest"),
        GraphSettings(use_canonize=False),
        GraphSettings(three_body_cutoff=4.0),
        GraphSettings(atom_features="basic"),
    ]
    hashes = {base.settings_hash} | {v.settings_hash for v in variants}
    assert len(hashes) == len(variants) + 1
    assert GraphSettings().settings_hash == base.settings_hash
    with pytest.raises(Exception):
        base.cutoff = 5.0  # frozen
    with pytest.raises(ValueError):
        GraphSettings(cutoff=4.0, three_body_cutoff=5.0)


def test_cache_hit_avoids_rebuilding() -> None:
    settings = GraphSettings(neighbor_strategy="k-nearest")
    cache = GraphCache(MemoryArtifactStore(), settings)
    files = sorted(JARVIS.glob("POSCAR-*.vasp"))[:5]
    structures = [(f.stem, Structure.from_file(f)) for f in files]
    builds: list[str] = []

    def counting_builder(structure: Structure, s: GraphSettings) -> CrystalGraph:
        builds.append(structure.composition.reduced_formula)
        return build_graph(structure, s)

    first = build_graphs(structures, settings, cache=cache, progress=False, builder=counting_builder)
    assert len(builds) == 5 and list(first) == [sid for sid, _ in structures]
    assert sorted(cache.structure_ids()) == sorted(first)
    assert all(key.startswith(f"graphs/{settings.settings_hash}/") for key in cache.artifacts.keys())
    second = build_graphs(structures, settings, cache=cache, progress=False, builder=counting_builder)
    assert len(builds) == 5  # nothing rebuilt
    assert all(second[sid].equals(first[sid]) for sid in first)
    other = GraphCache(cache.artifacts, GraphSettings())  # other settings: a miss
    assert other.get(structures[0][0]) is None


def test_parallel_build_equals_serial() -> None:
    settings = GraphSettings(neighbor_strategy="k-nearest")
    files = sorted(JARVIS.glob("POSCAR-*.vasp"))[:20]
    structures = [(f.stem, Structure.from_file(f)) for f in files]
    parallel = build_graphs(structures, settings, workers=2, progress=False)
    serial = build_graphs(structures, settings, workers=1, progress=False)
    assert list(parallel) == list(serial)
    assert all(parallel[k].equals(serial[k]) for k in serial)


def test_collate_offsets() -> None:
    settings = GraphSettings()
    graphs = [build_graph(Structure.from_file(JARVIS / f), settings) for f in ("POSCAR-JVASP-10.vasp", "POSCAR-JVASP-97570.vasp")]
    batch = collate(graphs)
    assert batch.size == 2
    assert batch.g.num_nodes == sum(g.num_atoms for g in graphs)
    assert batch.lg.num_nodes == batch.g.num_edges == sum(g.num_edges for g in graphs)
    n0, e0 = graphs[0].num_atoms, graphs[0].num_edges
    assert int(batch.g.src[e0:].min()) >= n0
    assert int(batch.lg.src[graphs[0].num_line_graph_edges :].min()) >= e0


def parity_structures() -> list[Structure]:
    """The 50 JARVIS structures plus symmetric perovskite supercells (many tied neighbour distances)."""
    structures = [Structure.from_file(f) for f in sorted(JARVIS.glob("POSCAR-*.vasp"))]
    for formula, size in (("CsPbI_3", 1), ("CsPbI_3", 2), ("MAPbI_3", 2), ("FASnBr_3", 1)):
        structures.append(generate_supercell(SiteFractions.from_formula(formula), 6.3, supercell=size))
    return structures


@pytest.mark.parametrize("chunk_size", [512, 5])
@pytest.mark.parametrize(("cutoff", "max_neighbors"), [(8.0, 12), (5.0, 16), (3.0, 12)])
def test_pure_top_k_edges_identical_to_upstream(monkeypatch, chunk_size: int, cutoff: float, max_neighbors: int) -> None:
    """Bit for bit, in order, against upstream's ``torch_neighbor_list`` (its dense search and tie-breaking).

    ``chunk_size=5`` (both sides) and tiny search blocks exercise the chunked candidate order.
    """
    import torch
    from alignn.torch_graph_builder import torch_neighbor_list

    from perovdb.graphs import neighbors
    from perovdb.graphs.neighbors import jarvis_cart_coords, pure_top_k_edges
    from perovdb.switches import torch_threads

    if chunk_size != 512:
        monkeypatch.setattr(neighbors, "SEARCH_BLOCK", 64)
    for structure in parity_structures():
        lattice = np.array(structure.lattice.matrix)
        cart = jarvis_cart_coords(structure.frac_coords, lattice)
        ours = pure_top_k_edges(cart, lattice, cutoff, max_neighbors, chunk_size=chunk_size)
        with torch.no_grad(), torch_threads(1):
            src, dst, shift, r = torch_neighbor_list(
                torch.as_tensor(cart, dtype=torch.float32),
                torch.as_tensor(lattice, dtype=torch.float32),
                cutoff,
                max_neighbors,
                use_matscipy_topology=False,
                chunk_size=chunk_size,
            )
        assert ours.src.tobytes() == src.numpy().astype(np.int64).tobytes()
        assert ours.dst.tobytes() == dst.numpy().astype(np.int64).tobytes()
        assert ours.images.tobytes() == shift.numpy().astype(np.int32).tobytes()
        assert ours.vectors.tobytes() == r.numpy().tobytes()


@pytest.mark.parametrize(("cutoff", "max_neighbors", "canonize"), [(8.0, 12, True), (8.0, 12, False), (5.0, 16, True)])
def test_k_nearest_tree_search_equals_dense_loop(monkeypatch, cutoff: float, max_neighbors: int, canonize: bool) -> None:
    """The k-d tree neighbour search gives the edges of jarvis's dense image loop, bit for bit."""
    from perovdb.graphs import neighbors

    structures = parity_structures()
    fast = [neighbors.k_nearest_edges(s.frac_coords, s.lattice.matrix, cutoff, max_neighbors, canonize) for s in structures]
    monkeypatch.setattr(neighbors, "_nearest_neighbors", lambda *args: None)
    dense = [neighbors.k_nearest_edges(s.frac_coords, s.lattice.matrix, cutoff, max_neighbors, canonize) for s in structures]
    for a, b in zip(fast, dense):
        for name in ("src", "dst", "images", "vectors"):
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes()


def test_bond_cosines_match_row_formula() -> None:
    """Per-bond lengths and column sums give the row-wise cosines exactly, signed zeros included."""
    from perovdb.graphs.neighbors import bond_cosines

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 3)).astype(np.float32)
    vectors[rng.random(vectors.shape) < 0.3] = 0.0
    vectors[:4] = [[1, 0, 0], [0, 1, 0], [-0.0, 0, 2], [0, 0, 0]]
    lg_src, lg_dst = rng.integers(0, 200, 5000), rng.integers(0, 200, 5000)
    lg_src[:4], lg_dst[:4] = [0, 1, 2, 3], [1, 2, 0, 3]
    r1, r2 = -vectors[lg_src], vectors[lg_dst]
    denom = np.linalg.norm(r1, axis=1) * np.linalg.norm(r2, axis=1)
    expected = np.clip(np.sum(r1 * r2, axis=1) / np.maximum(denom, np.float32(1e-12)), -1.0, 1.0).astype(np.float32)
    assert bond_cosines(vectors, lg_src, lg_dst).tobytes() == expected.tobytes()
