"""Crystal graphs for ALIGNN: settings, building (two upstream-faithful strategies), caching, batching."""

from perovdb.graphs.batch import GraphBatch, collate
from perovdb.graphs.cache import GraphCache, build_graphs
from perovdb.graphs.graph import CrystalGraph, atom_feature_matrix, build_graph
from perovdb.graphs.settings import GraphSettings

__all__ = [
    "CrystalGraph",
    "GraphBatch",
    "GraphCache",
    "GraphSettings",
    "atom_feature_matrix",
    "build_graph",
    "build_graphs",
    "collate",
]
