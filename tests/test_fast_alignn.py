"""perovdb's fast forward of upstream's ALIGNNAtomWisePure computes upstream's function with upstream's parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig
from alignn.torch_graph_builder import TorchGraph
from pymatgen.core import Structure

from perovdb.graphs import GraphSettings, build_graph, collate
from perovdb.ml import ALIGNNConfig, build_model, predict
from perovdb.ml.fast_alignn import FastALIGNNAtomWisePure, fast_path_supported
from perovdb.ml.heap import retained_heap

JARVIS = Path(__file__).resolve().parent.parent / "data" / "jarvis_alignn_sample"
FILES = ["POSCAR-JVASP-10.vasp", "POSCAR-JVASP-1372.vasp", "POSCAR-JVASP-14014.vasp"]
SMALL = {"alignn_layers": 2, "gcn_layers": 2, "embedding_features": 16, "hidden_features": 32}


def pair(**overrides) -> tuple[torch.nn.Module, ALIGNNAtomWisePure]:
    """The fast model and upstream's, with the same (random) weights."""
    config = ALIGNNConfig(**{**SMALL, **overrides})
    torch.manual_seed(0)
    fast = build_model(config)
    assert type(fast) is FastALIGNNAtomWisePure
    upstream = ALIGNNAtomWisePure(ALIGNNAtomWisePureConfig(**config.upstream_model_config()))
    upstream.load_state_dict(fast.state_dict(), strict=True)
    return fast, upstream


def jarvis_batch(strategy: str = "pure-top-k"):
    settings = GraphSettings(neighbor_strategy=strategy)
    return collate([build_graph(Structure.from_file(JARVIS / name), settings) for name in FILES])


def random_batch(seed: int = 1):
    """Two small random graphs with unsorted, irregular edges and line graphs (the general gather path)."""
    gen = torch.Generator().manual_seed(seed)
    n_atoms, n_edges, n_lg = [5, 4], [17, 11], [40, 23]
    src, dst, lg_src, lg_dst = [], [], [], []
    for a, e, t, a0, e0 in zip(n_atoms, n_edges, n_lg, [0, 5], [0, 17]):
        src.append(torch.randint(0, a, (e,), generator=gen) + a0)
        dst.append(torch.randint(0, a, (e,), generator=gen) + a0)
        lg_src.append(torch.randint(0, e, (t,), generator=gen) + e0)
        lg_dst.append(torch.randint(0, e, (t,), generator=gen) + e0)
    r = torch.randn(sum(n_edges), 3, generator=gen) * 2
    g = TorchGraph(
        num_nodes=sum(n_atoms),
        src=torch.cat(src),
        dst=torch.cat(dst),
        ndata={"atom_features": torch.randn(sum(n_atoms), 92, generator=gen)},
        edata={"r": r},
        batch_num_nodes=torch.tensor(n_atoms),
        batch_num_edges=torch.tensor(n_edges),
    )
    lg = TorchGraph(
        num_nodes=sum(n_edges),
        src=torch.cat(lg_src),
        dst=torch.cat(lg_dst),
        ndata={"r": r},
        edata={},
        batch_num_nodes=torch.tensor(n_edges),
        batch_num_edges=torch.tensor(n_lg),
    )
    return g, lg, torch.eye(3).repeat(2, 1, 1)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_state_dict_keys_are_upstreams_both_ways() -> None:
    fast, upstream = pair()
    assert list(fast.state_dict()) == list(upstream.state_dict())
    assert all(fast.state_dict()[k].shape == v.shape for k, v in upstream.state_dict().items())
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in upstream.named_parameters()]
    fast.load_state_dict(upstream.state_dict(), strict=True)
    upstream.load_state_dict(fast.state_dict(), strict=True)


@pytest.mark.parametrize("inputs", ["top-k", "k-nearest", "random"])
@pytest.mark.parametrize("training", [True, False])
def test_outputs_and_gradients_equal_upstreams(inputs: str, training: bool) -> None:
    fast, upstream = pair()
    if inputs == "random":
        batch = random_batch()
    else:
        batch = jarvis_batch("pure-top-k" if inputs == "top-k" else "k-nearest").as_input()
    fast.train(training), upstream.train(training)
    ours, theirs = fast(batch)["out"], upstream(batch)["out"]
    assert ours.shape == theirs.shape and relative(ours, theirs) < 1e-5
    weights = torch.linspace(1, 2, ours.shape[0])
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), upstream.parameters()):
        assert (p.grad is None) == (q.grad is None), name  # unused by both: the dead outputs' norms
        if q.grad is not None:
            assert float((p.grad - q.grad).norm() / q.grad.norm().clamp_min(1e-30)) < 1e-4, name
            assert relative(p.grad, q.grad) < 1e-3, name
    with torch.no_grad():  # the in-place path
        assert relative(fast(batch)["out"], theirs.detach()) < 1e-5
    with torch.inference_mode():
        assert relative(fast(batch)["out"], theirs.detach()) < 1e-5


@pytest.mark.parametrize("link", ["log", "logit"])
def test_links_and_no_on_the_fly_cosines(link: str) -> None:
    fast, upstream = pair(link=link, upstream_options={"lg_on_fly": False})
    batch = jarvis_batch().as_input()
    with torch.no_grad():
        assert relative(fast(batch)["out"], upstream(batch)["out"]) < 1e-5


def test_unsupported_options_fall_back_to_upstream() -> None:
    forces = ALIGNNConfig(**SMALL, upstream_options={"calculate_gradient": True, "gradwise_weight": 1.0})
    assert type(build_model(forces)) is ALIGNNAtomWisePure
    extra = ALIGNNConfig(**SMALL, upstream_options={"additional_output_features": 3})
    assert type(build_model(extra)) is ALIGNNAtomWisePure
    assert not fast_path_supported(ALIGNNAtomWisePureConfig(name="alignn_atomwise_pure", conv_type="t_alignn"))
    with pytest.raises(ValueError):
        FastALIGNNAtomWisePure(ALIGNNAtomWisePureConfig(**forces.upstream_model_config()))


def test_retained_heap_changes_no_numbers(monkeypatch) -> None:
    fast, _ = pair()
    graphs = [build_graph(Structure.from_file(JARVIS / name), GraphSettings()) for name in FILES]
    with retained_heap(), retained_heap():  # nests
        kept = predict(fast, graphs)
    monkeypatch.setenv("PEROVDB_RETAIN_HEAP", "0")
    np.testing.assert_array_equal(predict(fast, graphs), kept)


def test_training_forward_keeps_fewer_per_edge_tensors(monkeypatch) -> None:
    """Under autograd the edge update's ``silu(layer_norm(m))`` keeps ``m`` only: the tensors autograd saves
    for backward are smaller than with the plain layer_norm + silu (the gradients are checked above)."""
    from perovdb.ml import fast_alignn

    fast, _ = pair()
    batch = jarvis_batch().as_input()

    def saved_bytes() -> int:
        seen: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            fast(batch)["out"].sum().backward()
        return sum(seen.values())

    fused = saved_bytes()
    monkeypatch.setattr(fast_alignn._LayerNormSiLU, "apply", lambda m, weight, bias, eps: torch.nn.functional.silu(
        torch.nn.functional.layer_norm(m, weight.shape, weight, bias, eps)))
    plain = saved_bytes()
    assert fused < 0.95 * plain  # 8% less here (small model, 3 structures), ~15% of the peak at full size


def test_inference_embeds_each_distinct_angle_once() -> None:
    """Without autograd the angle embedding runs on the distinct cosines only (the outputs are checked
    against upstream's above); under autograd on every angle."""
    fast, _ = pair()
    batch = jarvis_batch().as_input()
    rows: list[int] = []
    fast.angle_embedding.register_forward_hook(lambda module, args, out: rows.append(out.shape[0]))
    fast(batch)
    with torch.no_grad():
        fast(batch)
    angles = batch[1].src.shape[0]  # line-graph edges
    assert rows[0] == angles
    assert rows[1] < 0.8 * angles  # JARVIS crystals are symmetric: most cosines repeat
