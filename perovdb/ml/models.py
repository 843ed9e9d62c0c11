"""Model construction: upstream's pure-PyTorch ALIGNN 2.0, and classic ALIGNN ported to pure PyTorch.

``ClassicALIGNN`` has exactly the parameter and buffer names of upstream ``alignn.models.alignn.ALIGNN``
(DGL), so upstream checkpoints load with ``strict=True``; DGL message passing is replaced by scatter sums.
"""

from __future__ import annotations

import numpy as np
import torch
from alignn.models.utils import RBFExpansion
from alignn.torch_graph_builder import TorchGraph
from torch import nn
from torch.nn import functional as F

from perovdb.graphs.batch import GraphBatch
from perovdb.ml.config import ALIGNNConfig


def _scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.zeros((size, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, index, values)


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution of classic ALIGNN (BatchNorm), on index tensors."""

    def __init__(self, input_features: int, output_features: int, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.src_gate = nn.Linear(input_features, output_features)
        self.dst_gate = nn.Linear(input_features, output_features)
        self.edge_gate = nn.Linear(input_features, output_features)
        self.bn_edges = nn.BatchNorm1d(output_features)
        self.src_update = nn.Linear(input_features, output_features)
        self.dst_update = nn.Linear(input_features, output_features)
        self.bn_nodes = nn.BatchNorm1d(output_features)

    def forward(self, g: TorchGraph, node_feats: torch.Tensor, edge_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_i = SiLU(BN(U h_i + Σ_j σ_ij ⊙ V h_j / Σ_j σ_ij)), edges updated from the gate pre-activation."""
        m = self.src_gate(node_feats)[g.src] + self.dst_gate(node_feats)[g.dst] + self.edge_gate(edge_feats)
        sigma = torch.sigmoid(m)
        bh = self.dst_update(node_feats)
        sum_sigma_h = _scatter_sum(bh[g.src] * sigma, g.dst, g.num_nodes)
        sum_sigma = _scatter_sum(sigma, g.dst, g.num_nodes)
        x = self.src_update(node_feats) + sum_sigma_h / (sum_sigma + 1e-6)
        x = F.silu(self.bn_nodes(x))
        y = F.silu(self.bn_edges(m))
        if self.residual:
            x = node_feats + x
            y = edge_feats + y
        return x, y


class ALIGNNConv(nn.Module):
    """One ALIGNN layer: a gated convolution on the atom graph, then one on the line graph."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(in_features, out_features)
        self.edge_update = EdgeGatedGraphConv(out_features, out_features)

    def forward(
        self, g: TorchGraph, lg: TorchGraph, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Update atom (x), bond (y) and angle (z) features."""
        x, m = self.node_update(g, x, y)
        y, z = self.edge_update(lg, m, z)
        return x, y, z


class MLPLayer(nn.Module):
    """Linear → BatchNorm → SiLU (classic ALIGNN)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return self.layer(x)


class ClassicALIGNN(nn.Module):
    """Classic ALIGNN (Choudhary & DeCost 2021) without DGL; bond-angle cosines come from the line graph."""

    def __init__(self, config: ALIGNNConfig) -> None:
        super().__init__()
        c = config
        self.atom_embedding = MLPLayer(c.atom_input_features, c.hidden_features)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(vmin=0, vmax=8.0, bins=c.edge_input_features),
            MLPLayer(c.edge_input_features, c.embedding_features),
            MLPLayer(c.embedding_features, c.hidden_features),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(vmin=-1, vmax=1.0, bins=c.triplet_input_features),
            MLPLayer(c.triplet_input_features, c.embedding_features),
            MLPLayer(c.embedding_features, c.hidden_features),
        )
        self.alignn_layers = nn.ModuleList([ALIGNNConv(c.hidden_features, c.hidden_features) for _ in range(c.alignn_layers)])
        self.gcn_layers = nn.ModuleList([EdgeGatedGraphConv(c.hidden_features, c.hidden_features) for _ in range(c.gcn_layers)])
        self.fc = nn.Linear(c.hidden_features, c.output_features)
        self.link_name = c.link
        if c.link == "log":
            self.fc.bias.data = torch.tensor(np.log(0.7), dtype=torch.float)

    def forward(self, inputs: tuple[TorchGraph, TorchGraph, torch.Tensor]) -> torch.Tensor:
        """Predictions [B] (or [B, output_features]) for batched ``(g, lg, lattice)``."""
        g, lg, _ = inputs
        x = self.atom_embedding(g.ndata["atom_features"])
        y = self.edge_embedding(torch.norm(g.edata["r"], dim=1))
        z = self.angle_embedding(lg.edata["h"]) if len(self.alignn_layers) else None
        for alignn_layer in self.alignn_layers:
            x, y, z = alignn_layer(g, lg, x, y, z)
        for gcn_layer in self.gcn_layers:
            x, y = gcn_layer(g, x, y)
        counts = g.batch_num_nodes if g.batch_num_nodes is not None else torch.tensor([g.num_nodes], device=x.device)
        h = _scatter_sum(x, g.node_batch_id, int(counts.shape[0])) / counts.to(x.dtype).unsqueeze(1)
        out = self.fc(h)
        if self.link_name == "log":
            out = torch.exp(out)
        elif self.link_name == "logit":
            out = torch.sigmoid(out)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def build_model(config: ALIGNNConfig) -> nn.Module:
    """A freshly initialised model of ``config.architecture``."""
    if config.architecture == "alignn":
        return ClassicALIGNN(config)
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    from perovdb.ml.fast_alignn import FastALIGNNAtomWisePure, fast_path_supported

    upstream_config = ALIGNNAtomWisePureConfig(**config.upstream_model_config())
    if fast_path_supported(upstream_config):  # same parameters and function, faster forward
        return FastALIGNNAtomWisePure(upstream_config)
    return ALIGNNAtomWisePure(upstream_config)


def model_outputs(model: nn.Module, batch: GraphBatch) -> torch.Tensor:
    """Graph-level predictions [B] of either architecture (model units, before de-standardisation)."""
    out = model(batch.as_input())
    if isinstance(out, dict):
        out = out["out"]
    return out.reshape(batch.size, -1).squeeze(-1)
