"""Collating crystal graphs into one batched (graph, line graph, lattice) input for the models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from alignn.torch_graph_builder import TorchGraph

from perovdb.graphs.graph import CrystalGraph


@dataclass
class GraphBatch:
    """Graphs of a batch concatenated: ``g`` (atoms, bonds), ``lg`` (bonds, bond pairs), lattices [B, 3, 3]."""

    g: TorchGraph
    lg: TorchGraph
    lattice: torch.Tensor

    @property
    def size(self) -> int:
        """Graphs in the batch."""
        return self.g.batch_size

    def to(self, device: torch.device | str) -> GraphBatch:
        """The batch on ``device``."""
        return GraphBatch(self.g.to(device), self.lg.to(device), self.lattice.to(device))

    def as_input(self) -> tuple[TorchGraph, TorchGraph, torch.Tensor]:
        """``(g, lg, lattice)``, the input both ALIGNN models take."""
        return self.g, self.lg, self.lattice


def collate(graphs: Sequence[CrystalGraph], dtype: torch.dtype = torch.float32) -> GraphBatch:
    """Concatenate graphs: atom ids offset by atoms before, bond ids (line-graph nodes) by bonds before."""
    if not graphs:
        raise ValueError("collate needs at least one graph")
    n_atoms = np.array([g.num_atoms for g in graphs])
    n_edges = np.array([g.num_edges for g in graphs])
    n_lg = np.array([g.num_line_graph_edges for g in graphs])
    atom_offsets = np.repeat(np.cumsum(n_atoms) - n_atoms, n_edges)
    edge_offsets = np.repeat(np.cumsum(n_edges) - n_edges, n_lg)
    src = torch.from_numpy(np.concatenate([g.src for g in graphs]).astype(np.int64) + atom_offsets)
    dst = torch.from_numpy(np.concatenate([g.dst for g in graphs]).astype(np.int64) + atom_offsets)
    lg_src = torch.from_numpy(np.concatenate([g.lg_src for g in graphs]).astype(np.int64) + edge_offsets)
    lg_dst = torch.from_numpy(np.concatenate([g.lg_dst for g in graphs]).astype(np.int64) + edge_offsets)
    r = torch.from_numpy(np.concatenate([g.vectors for g in graphs])).to(dtype)
    images = torch.from_numpy(np.concatenate([g.images for g in graphs])).to(dtype)
    lattices = torch.from_numpy(np.stack([g.lattice for g in graphs])).to(dtype)
    volumes = torch.from_numpy(np.repeat([abs(np.linalg.det(g.lattice)) for g in graphs], n_atoms)).to(dtype)
    g = TorchGraph(
        num_nodes=int(n_atoms.sum()),
        src=src,
        dst=dst,
        ndata={
            "atom_features": torch.from_numpy(np.concatenate([g.atom_features for g in graphs])).to(dtype),
            "frac_coords": torch.from_numpy(np.concatenate([g.frac_coords for g in graphs])).to(dtype),
            "Z": torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs]).astype(np.int64)),
            "V": volumes,
        },
        edata={"r": r, "images": images},
        batch_num_nodes=torch.from_numpy(n_atoms.astype(np.int64)),
        batch_num_edges=torch.from_numpy(n_edges.astype(np.int64)),
    )
    lg = TorchGraph(
        num_nodes=int(n_edges.sum()),
        src=lg_src,
        dst=lg_dst,
        ndata={"r": r, "images": images},
        edata={"h": torch.from_numpy(np.concatenate([g.cosines for g in graphs])).to(dtype)},
        batch_num_nodes=torch.from_numpy(n_edges.astype(np.int64)),
        batch_num_edges=torch.from_numpy(n_lg.astype(np.int64)),
    )
    return GraphBatch(g=g, lg=lg, lattice=lattices)
