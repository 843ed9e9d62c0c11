"""A faster forward of upstream's ``ALIGNNAtomWisePure`` property model: same parameters, same function.

``FastALIGNNAtomWisePure`` subclasses upstream's class, so its modules, parameters and buffers (and their
state_dict keys, shapes and order) are upstream's own and checkpoints move between the two with
``strict=True``; only ``forward`` is rewritten, for the property-regression path (no forces, stress,
atomwise or additional outputs, edge-gated ``alignn`` convolutions). It computes what upstream computes,
up to float32 round-off (the order of some sums differs), doing less work:

- outputs nobody reads are not computed: the angle features updated by the last ALIGNN layer and the
  bond features updated by the last GCN layer;
- the four node-side linear maps of a convolution are one matmul (weights concatenated at call time), and
  the edge gate's bias is added on the node side, once per node instead of once per edge;
- a gather by a source index that is ``repeat_interleave(arange(n), k)`` (every bond of a top-k graph has
  k successors, every atom k bonds) is a broadcast over a ``[n, k, H]`` view, not a gather;
- the other gathers and the scatter sums to destinations are a CSR sparse matmul (sums over the rows of
  a sorted index, on all cores; ``index_add_``/``index_put_`` with accumulation are single-threaded), with
  the index structures built once per forward and shared by all layers;
- without autograd (``torch.no_grad``/``inference_mode``) the big per-edge tensors are updated in place,
  and the angle embedding and the first edge gate's product on it, functions of the bond-angle cosine
  alone, are computed once per distinct cosine (in the group's relaxed perovskites 46 % of the cosines
  are distinct, ~5 % less time at batch 1); with autograd, ``silu(layer_norm(m))`` of the edge update
  keeps only ``m`` for backward and recomputes the normalised values there (one per-edge tensor fewer per
  convolution: ~15% lower peak memory in training).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from alignn.models.alignn_atomwise_pure import (
    ALIGNNAtomWisePure,
    ALIGNNAtomWisePureConfig,
    EdgeGatedGraphConvPure,
    _as_torchgraph,
    _bond_cosines,
    scatter_mean,
)
from torch.nn import functional as F


def fast_path_supported(config: ALIGNNAtomWisePureConfig) -> bool:
    """Whether ``config`` only uses what ``FastALIGNNAtomWisePure.forward`` implements (else: upstream's class)."""
    calculate_gradient = config.calculate_gradient and config.gradwise_weight != 0
    return (
        config.conv_type == "alignn"
        and not calculate_gradient
        and not config.classification
        and not config.use_cutoff_function
        and config.additional_output_features == 0
        and (config.atomwise_output_features == 0 or config.atomwise_weight == 0)
        and config.stresswise_weight == 0
    )


def _csr_rows(index: torch.Tensor, num_rows: int, dtype: torch.dtype) -> torch.Tensor:
    """The [num_rows, len(index)] 0/1 matrix S with S[index[e], e] = 1, as CSR: ``S @ v`` sums v's rows by index."""
    order = torch.argsort(index, stable=True)
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=index.device)
    torch.cumsum(torch.bincount(index, minlength=num_rows), 0, out=crow[1:])
    values = torch.ones(index.shape[0], dtype=dtype, device=index.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": sum-by-rows matmuls are all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, order, values, size=(num_rows, index.shape[0]), check_invariants=False)


@dataclass
class _Index:
    """One edge index of a graph, with what gathers by it and scatter sums to it need."""

    index: torch.Tensor
    num_nodes: int
    #: k when ``index == repeat_interleave(arange(num_nodes), k)`` (gather = broadcast over [n, k, H])
    repeat: int | None
    _csr: torch.Tensor | None = None

    @classmethod
    def of(cls, index: torch.Tensor, num_nodes: int) -> _Index:
        n_edges = index.shape[0]
        repeat = None
        if num_nodes > 0 and n_edges > 0 and n_edges % num_nodes == 0:
            k = n_edges // num_nodes
            expected = torch.arange(num_nodes, device=index.device).unsqueeze(1)
            if bool((index.view(num_nodes, k) == expected).all()):
                repeat = k
        return cls(index, num_nodes, repeat)

    def csr(self, dtype: torch.dtype) -> torch.Tensor:
        if self._csr is None or self._csr.dtype != dtype:
            self._csr = _csr_rows(self.index, self.num_nodes, dtype)
        return self._csr

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``x[index]`` (its gradient: the scatter sum)."""
        if torch.is_grad_enabled() and x.requires_grad:
            return _Gather.apply(x, self)
        return x.index_select(0, self.index)

    def scatter_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Rows of ``values`` summed by index, [num_nodes, ...] (its gradient: the gather)."""
        if values.shape[0] == 0:
            return values.new_zeros((self.num_nodes, *values.shape[1:]))
        if torch.is_grad_enabled() and values.requires_grad:
            return _ScatterSum.apply(values, self)
        return _csr_matmul(self.csr(values.dtype), values)


def _csr_matmul(csr: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    if csr.shape[1] == 0:
        return values.new_zeros((csr.shape[0], *values.shape[1:]))
    return torch.sparse.mm(csr, values.contiguous())


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, index: _Index) -> torch.Tensor:
        ctx.index = index
        return x.index_select(0, index.index)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        index: _Index = ctx.index
        return _csr_matmul(index.csr(grad.dtype), grad), None


class _ScatterSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, index: _Index) -> torch.Tensor:
        ctx.index = index
        return _csr_matmul(index.csr(values.dtype), values)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        index: _Index = ctx.index
        return grad.index_select(0, index.index), None


class _LayerNormSiLU(torch.autograd.Function):
    """``silu(layer_norm(m))`` keeping only ``m`` and the row statistics for backward: the normalised
    values (a second per-edge tensor, which autograd would keep for silu) are recomputed there."""

    @staticmethod
    def forward(ctx: Any, m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        normalized, mean, rstd = torch.native_layer_norm(m, weight.shape, weight, bias, eps)
        ctx.save_for_backward(m, weight, bias, mean, rstd)
        return F.silu(normalized, inplace=True)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        m, weight, bias, mean, rstd = ctx.saved_tensors
        normalized = torch.addcmul(bias, torch.sub(m, mean).mul_(rstd), weight)
        gate = torch.sigmoid(normalized)
        # silu'(v) = s (1 + v (1 - s)), s = sigmoid(v)
        grad_normalized = normalized.mul_(torch.rsub(gate, 1)).add_(1).mul_(gate).mul_(grad)
        grad_m, grad_weight, grad_bias = torch.ops.aten.native_layer_norm_backward(
            grad_normalized, m, weight.shape, mean, rstd, weight, bias, list(ctx.needs_input_grad[:3])
        )
        return grad_m, grad_weight, grad_bias, None


def _layer_norm_silu(m: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """``silu(norm(m))``; under autograd through ``_LayerNormSiLU`` (one per-edge tensor kept, not two)."""
    if norm.weight is not None and torch.is_grad_enabled() and (m.requires_grad or norm.weight.requires_grad):
        return _LayerNormSiLU.apply(m, norm.weight, norm.bias, norm.eps)
    # silu in place: layer_norm's backward reads its input, not its output
    return F.silu(F.layer_norm(m, norm.normalized_shape, norm.weight, norm.bias, norm.eps), inplace=True)


@dataclass
class _Graph:
    src: _Index
    dst: _Index
    num_nodes: int


def _per_edge_from_src(node_values: torch.Tensor, graph: _Graph) -> torch.Tensor:
    """``node_values[src]`` as [E, H], or as a broadcastable [n, 1, H] view when src is a repeat."""
    if graph.src.repeat is not None:
        return node_values.unsqueeze(1)
    return graph.src.gather(node_values)


def _edge_view(edge_values: torch.Tensor, graph: _Graph) -> torch.Tensor:
    """[E, H] edge values as [n, k, H] when src is a repeat (to broadcast node values over), else unchanged."""
    if graph.src.repeat is not None:
        return edge_values.view(graph.num_nodes, graph.src.repeat, edge_values.shape[-1])
    return edge_values


def _fused_node_linear(conv: EdgeGatedGraphConvPure, x: torch.Tensor) -> torch.Tensor:
    """[src_gate(x) + edge_gate.bias, dst_gate(x), dst_update(x), src_update(x)] as one [N, 4H] matmul."""
    weight = torch.cat([conv.src_gate.weight, conv.dst_gate.weight, conv.dst_update.weight, conv.src_update.weight])
    bias = torch.cat(
        [conv.src_gate.bias + conv.edge_gate.bias, conv.dst_gate.bias, conv.dst_update.bias, conv.src_update.bias]
    )
    return F.linear(x, weight, bias)


def edge_gated_conv(
    conv: EdgeGatedGraphConvPure,
    graph: _Graph,
    x: torch.Tensor,
    y: torch.Tensor,
    edges_needed: bool = True,
    y_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``conv(g, x, y)`` of upstream's ``EdgeGatedGraphConvPure`` (residual); edge output None if not needed.

    With ``y_index``, the edge features are ``y[y_index]``: ``y`` holds each distinct row once, and the edge
    gate's product is computed on those rows only (no autograd)."""
    hidden = conv.src_gate.out_features
    node = _fused_node_linear(conv, x)
    e_src, e_dst, bh, su = node.split(hidden, dim=1)
    grad = torch.is_grad_enabled()
    # m = src_gate(x)[src] + dst_gate(x)[dst] + edge_gate(y)
    # in place where autograd allows: the gather's and silu's backward do not read their outputs, the
    # add's and addmm's backward do not read the tensor they add to (fewer fresh per-edge tensors)
    m = graph.dst.gather(e_dst)
    _edge_view(m, graph).add_(_per_edge_from_src(e_src, graph))
    if y_index is None:
        m.addmm_(y, conv.edge_gate.weight.t())
    else:
        m.add_(F.linear(y, conv.edge_gate.weight).index_select(0, y_index))
        y = y.index_select(0, y_index) if edges_needed else y
    y_new = None
    if edges_needed:
        y_new = _layer_norm_silu(m, conv.bn_edges).add_(y)
    sigma = torch.sigmoid(m) if grad else m.sigmoid_()
    if graph.src.repeat is not None:
        messages = (_edge_view(sigma, graph) * bh.unsqueeze(1)).view(sigma.shape)
    else:
        messages = graph.src.gather(bh) * sigma
    h = graph.dst.scatter_sum(messages) / (graph.dst.scatter_sum(sigma) + 1e-6)
    return x + _layer_norm_silu(su + h, conv.bn_nodes), y_new


class FastALIGNNAtomWisePure(ALIGNNAtomWisePure):
    """Upstream's ``ALIGNNAtomWisePure`` (same modules and state_dict) with a faster property-model forward."""

    def __init__(self, config: ALIGNNAtomWisePureConfig) -> None:
        if not fast_path_supported(config):
            raise ValueError("FastALIGNNAtomWisePure implements the property-regression path only")
        super().__init__(config)

    def forward(self, g: Any) -> dict[str, torch.Tensor]:
        """Upstream's outputs for ``(g, lg, lattice)``: ``out`` computed, the others empty as upstream leaves them."""
        gg, lg, _ = g
        g, lg = _as_torchgraph(gg), _as_torchgraph(lg)
        r = g.edata["r"]
        bondlength = torch.norm(r, dim=1)
        atoms = _Graph(_Index.of(g.src, g.num_nodes), _Index.of(g.dst, g.num_nodes), g.num_nodes)
        z = z_index = None
        if len(self.alignn_layers) > 0:
            bonds = _Graph(_Index.of(lg.src, lg.num_nodes), _Index.of(lg.dst, lg.num_nodes), lg.num_nodes)
            h = _bond_cosines(r[lg.src], r[lg.dst]) if self.config.lg_on_fly else lg.edata["h"]
            if not torch.is_grad_enabled() and h.dim() == 1:  # the embedding of each distinct cosine, once
                h, z_index = torch.unique(h, return_inverse=True)
            z = self.angle_embedding(h)
        x = self.atom_embedding(g.ndata["atom_features"])
        y = self.edge_embedding(bondlength)
        last = len(self.alignn_layers) - 1
        for i, layer in enumerate(self.alignn_layers):
            x, m = edge_gated_conv(layer.node_update, atoms, x, y)
            y, z = edge_gated_conv(layer.edge_update, bonds, m, z, edges_needed=i < last, y_index=z_index)
            z_index = None
        last = len(self.gcn_layers) - 1
        for i, layer in enumerate(self.gcn_layers):
            x, y = edge_gated_conv(layer, atoms, x, y, edges_needed=i < last)
        h_graph = scatter_mean(x, g.node_batch_id, g.batch_size)
        out = self.fc(h_graph)
        if self.config.output_features == 1:
            out = out.squeeze(-1)
        if self.link_name == "log":
            out = torch.exp(out)
        elif self.link_name == "logit":
            out = torch.sigmoid(out)
        empty = torch.empty(1, device=r.device)
        return {"out": out, "additional": empty, "grad": empty, "stresses": empty, "atomwise_pred": empty}

