"""``CrystalGraph``: an ALIGNN atom graph plus its line graph as numpy arrays, and ``build_graph``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.core import Structure

from perovdb.graphs.neighbors import (
    bond_cosines,
    jarvis_cart_coords,
    k_nearest_edges,
    line_graph_edges,
    pure_top_k_edges,
)
from perovdb.graphs.settings import GraphSettings

#: bumped when the arrays, their meaning or their serialisation change (part of the serialised graph)
FORMAT_VERSION = 2
_MAGIC = b"PEROVDB-GRAPH\0\0\0"


@lru_cache(maxsize=256)
def _element_features(symbol: str, atom_features: str) -> tuple[float, ...]:
    from jarvis.core.specie import get_node_attributes

    return tuple(float(x) for x in get_node_attributes(symbol, atom_features=atom_features))


@lru_cache(maxsize=1024)
def _feature_table(elements: tuple[str, ...], atom_features: str) -> np.ndarray:
    """Feature rows of ``elements`` (in that order), float32 [len(elements), F]; read-only, shared."""
    table = np.array([_element_features(s, atom_features) for s in elements], dtype=np.float32)
    table.flags.writeable = False
    return table


def atom_feature_matrix(symbols: list[str], atom_features: str = "cgcnn") -> np.ndarray:
    """Node features of ``symbols`` as ALIGNN uses them (jarvis ``get_node_attributes``), float32 [n, F]."""
    if not symbols:
        return np.array([], dtype=np.float32)
    index: dict[str, int] = {}
    rows = [index.setdefault(symbol, len(index)) for symbol in symbols]
    return _feature_table(tuple(index), atom_features)[rows]


@dataclass(frozen=True, eq=False)
class CrystalGraph:
    """Atom graph (nodes = atoms, directed edges = bonds) and line graph (nodes = bonds, edges = bond pairs).

    ``vectors[e] = cart[dst[e]] + images[e] @ lattice - cart[src[e]]`` (Å); line-graph edge ``t`` joins
    bond ``lg_src[t]`` (u→v) to bond ``lg_dst[t]`` (v→w), with the cosine of the angle at v in ``cosines``.
    """

    atom_features: np.ndarray  # (n, F) float32
    atomic_numbers: np.ndarray  # (n,) int32
    frac_coords: np.ndarray  # (n, 3) float64
    lattice: np.ndarray  # (3, 3) float64, rows are lattice vectors
    src: np.ndarray  # (E,) int64
    dst: np.ndarray  # (E,) int64
    images: np.ndarray  # (E, 3) int32
    vectors: np.ndarray  # (E, 3) float32
    lg_src: np.ndarray  # (T,) int64
    lg_dst: np.ndarray  # (T,) int64
    cosines: np.ndarray  # (T,) float32
    settings_hash: str = ""

    @property
    def num_atoms(self) -> int:
        """Atoms (graph nodes)."""
        return int(self.atomic_numbers.shape[0])

    @property
    def num_edges(self) -> int:
        """Directed bonds (graph edges = line-graph nodes)."""
        return int(self.src.shape[0])

    @property
    def num_line_graph_edges(self) -> int:
        """Bond pairs (line-graph edges)."""
        return int(self.lg_src.shape[0])

    def to_bytes(self) -> bytes:
        """Serialise: a magic word, a JSON header (format, settings hash, each array's dtype, shape and
        offset), then the arrays' bytes, each 8-byte aligned. No pickle; read without a zip archive."""
        header: dict[str, Any] = {"format_version": FORMAT_VERSION, "settings_hash": self.settings_hash, "arrays": []}
        chunks, offset = [], 0
        for name in _ARRAYS:
            array = np.ascontiguousarray(getattr(self, name))
            header["arrays"].append([name, array.dtype.str, list(array.shape), offset])
            data = array.tobytes()
            chunks.append(data + b"\0" * (-len(data) % 8))
            offset += len(chunks[-1])
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-(len(_MAGIC) + 4 + len(encoded)) % 8)
        return b"".join([_MAGIC, len(encoded).to_bytes(4, "little"), encoded, *chunks])

    @classmethod
    def from_bytes(cls, data: bytes) -> CrystalGraph:
        """Inverse of ``to_bytes``; raises ValueError for another format (an older cache entry: rebuild it)."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a perovdb graph of this format; rebuild it")
        size = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "little")
        start = len(_MAGIC) + 4 + size
        header = json.loads(data[len(_MAGIC) + 4 : start])
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"graph format {header.get('format_version')} is not {FORMAT_VERSION}; rebuild it")
        payload = bytearray(data[start:])  # one copy: the arrays are writable views into it
        arrays = {}
        for name, dtype, shape, offset in header["arrays"]:
            count = math.prod(shape)
            arrays[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
        if set(arrays) != set(_ARRAYS):
            raise ValueError(f"graph arrays {sorted(arrays)} are not {sorted(_ARRAYS)}; rebuild it")
        return cls(settings_hash=header["settings_hash"], **arrays)

    def equals(self, other: CrystalGraph) -> bool:
        """Same settings and identical arrays."""
        return self.settings_hash == other.settings_hash and all(
            np.array_equal(getattr(self, name), getattr(other, name)) for name in _ARRAYS
        )


#: the array fields of ``CrystalGraph``, in order
_ARRAYS: tuple[str, ...] = tuple(f.name for f in fields(CrystalGraph) if f.name != "settings_hash")


def _species(structure: Structure) -> tuple[list[str], np.ndarray]:
    """Element symbols and atomic numbers (int32) of the sites, in one pass; disordered sites are refused."""
    symbols, numbers = [], []
    for site in structure:
        species = site.species
        if not species.num_atoms == len(species) == 1:  # pymatgen's ``Site.is_ordered``
            raise ValueError("disordered sites cannot become a crystal graph")
        specie = next(iter(species))
        symbols.append(specie.symbol)
        numbers.append(specie.Z)
    return symbols, np.array(numbers, dtype=np.int32)


def structure_arrays(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """What a graph is built from: lattice (3, 3), fractional coordinates (n, 3), symbols, atomic numbers."""
    symbols, atomic_numbers = _species(structure)
    lattice = np.array(structure.lattice.matrix, dtype=float)
    return lattice, np.array(structure.frac_coords, dtype=float), symbols, atomic_numbers


def build_graph(structure: Structure, settings: GraphSettings | None = None) -> CrystalGraph:
    """The ALIGNN graph and line graph of ``structure`` (MA/FA molecules are plain C, N, H atoms)."""
    return graph_from_arrays(*structure_arrays(structure), settings)


def graph_from_arrays(
    lattice: np.ndarray,
    frac: np.ndarray,
    symbols: list[str],
    atomic_numbers: np.ndarray,
    settings: GraphSettings | None = None,
) -> CrystalGraph:
    """``build_graph`` on ``structure_arrays(structure)`` (worker processes get these arrays, not a Structure)."""
    settings = settings or GraphSettings()
    if settings.neighbor_strategy == "pure-top-k":
        cart = jarvis_cart_coords(frac, lattice)  # as upstream's jarvis Atoms has it, so ties match
        edges = pure_top_k_edges(cart, lattice, settings.cutoff, settings.max_neighbors)
    else:
        edges = k_nearest_edges(frac, lattice, settings.cutoff, settings.max_neighbors, settings.use_canonize)
    allowed = None
    if settings.three_body_cutoff is not None and settings.three_body_cutoff < settings.cutoff:
        allowed = np.linalg.norm(edges.vectors, axis=1) <= np.float32(settings.three_body_cutoff)
    lg_src, lg_dst = line_graph_edges(
        edges.src, edges.dst, len(symbols), allowed, exclude_self=settings.neighbor_strategy == "k-nearest"
    )
    return CrystalGraph(
        atom_features=atom_feature_matrix(symbols, settings.atom_features),
        atomic_numbers=atomic_numbers,
        frac_coords=frac,
        lattice=lattice,
        src=edges.src,
        dst=edges.dst,
        images=edges.images,
        vectors=edges.vectors,
        lg_src=lg_src,
        lg_dst=lg_dst,
        cosines=bond_cosines(edges.vectors, lg_src, lg_dst),
        settings_hash=settings.settings_hash,
    )
