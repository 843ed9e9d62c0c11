"""Training and inference throughput: perovdb's loop vs upstream ALIGNN's ``train_dgl`` loop, same model.

Both sides train upstream's ``alignn_atomwise_pure`` model at the default ALIGNN size (4 ALIGNN + 4 GCN
layers, hidden 256) as a property model (no forces), with the same batch size, optimiser settings,
split and graph settings (pure top-k, cutoff 8 Å, 12 neighbours), on the first ``--structures`` relaxed
perovskites of the group's multi-fidelity set (their band gaps as the target). Each side runs in its own
process so its peak memory (max RSS) is its own:

- upstream: graphs from ``alignn.torch_graph_builder.build_pure_torch_graph``, batched by
  ``PureTorchLMDBDataset.collate_line_graph``, trained by ``alignn.train.train_dgl`` (the loop
  ``train_alignn.py`` drives; the test loader has batch size 1, as upstream's ``get_train_val_loaders``
  makes it). Its inference is its own no-grad prediction passes: the training set at the batch size,
  the test set one structure at a time;
- perovdb: graphs from ``perovdb.graphs.build_graphs`` (one process), trained by
  ``perovdb.ml.train_model``, inference by ``perovdb.ml.predict`` on the same structures and batch sizes.

Printed, all measured in this run: training structures/s per epoch (the training pass alone, graph
construction excluded; upstream's is timed at its train loader, from first to last batch), inference
structures/s, peak memory, and the end-to-end time of a first run (graph building + training + test
predictions). Targets (issue #3): training and inference >= 1.5x upstream, peak memory no higher.

The two sides run minutes apart and this machine's speed drifts by +-15 % over minutes, so the
inference rows swing from run to run. A third process therefore times the two models' forward passes
alone, interleaved structure by structure (alternating which goes first), on the same input batches,
with the same weights and the same allocator setting: the ratio of the forwards themselves, without
drift. Asserts nothing.

Run: ``.venv/bin/python benchmarks/train.py [--structures 96] [--epochs 2] [--batch-size 16]``
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MULTIFIDELITY = REPO / "data" / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv"
N_TRAIN, N_VAL = 48, 8
LEARNING_RATE = 1e-3


def load(n: int) -> tuple[list[str], list[Any], list[float]]:
    """Ids, structures and band gaps (eV) of the first ``n`` rows of the multi-fidelity set."""
    from perovdb.perovskite import parse_printed_structure

    csv.field_size_limit(sys.maxsize)
    ids, structures, gaps = [], [], []
    with open(MULTIFIDELITY, newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            if len(ids) == n:
                break
            ids.append(f"mf-{index}")
            structures.append(parse_printed_structure(row["Structure"]))
            gaps.append(float(row["Band Gap"]))
    return ids, structures, gaps


def split(ids: list[str]) -> dict[str, list[str]]:
    """The fixed split both sides use: 48 train, 8 validation, the rest test (inference)."""
    return {"train": ids[:N_TRAIN], "val": ids[N_TRAIN : N_TRAIN + N_VAL], "test": ids[N_TRAIN + N_VAL :]}


def peak_memory_mb() -> float:
    """Max resident set size of this process so far (MB; ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TimedLoader:
    """A DataLoader that records, per pass, the seconds from its first to its last batch."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.dataset, self.passes = loader, loader.dataset, []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        started = time.perf_counter()
        yield from self.loader
        self.passes.append(time.perf_counter() - started)


def run_upstream(n: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """Upstream graphs + ``train_dgl`` (timed at its loaders)."""
    import torch
    from alignn.config import TrainingConfig
    from alignn.pure_lmdb_dataset import PureTorchLMDBDataset, prepare_pure_batch
    from alignn.torch_graph_builder import build_pure_torch_graph
    from alignn.train import train_dgl
    from jarvis.core.atoms import pmg_to_atoms
    from torch.utils.data import DataLoader, Dataset

    from perovdb.ml import ALIGNNConfig

    ids, structures, gaps = load(n)
    started = time.perf_counter()
    samples = {}
    for structure_id, structure, gap in zip(ids, structures, gaps):
        g, lg = build_pure_torch_graph(
            pmg_to_atoms(structure), two_body_cutoff=8.0, max_neighbors=12, use_matscipy_topology=False
        )
        lattice = torch.tensor(structure.lattice.matrix, dtype=torch.float32)
        samples[structure_id] = (g, lg, lattice, torch.tensor(gap, dtype=torch.float32))
    graph_seconds = time.perf_counter() - started

    class Samples(Dataset):
        def __init__(self, part: list[str]) -> None:
            self.ids, self.items = part, [samples[i] for i in part]

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> Any:
            return self.items[index]

        def close(self) -> None:  # train_dgl closes its datasets (LMDB handles upstream)
            pass

    parts = split(ids)
    collate = PureTorchLMDBDataset.collate_line_graph
    train = TimedLoader(DataLoader(Samples(parts["train"]), batch_size=batch_size, shuffle=True, collate_fn=collate))
    val = TimedLoader(DataLoader(Samples(parts["val"]), batch_size=batch_size, collate_fn=collate))
    # batch 1 for the test set, as upstream's get_train_val_loaders makes it (its prediction pass needs it)
    test = TimedLoader(DataLoader(Samples(parts["test"]), batch_size=1, collate_fn=collate))
    with tempfile.TemporaryDirectory() as output_dir:
        config = TrainingConfig(
            model=ALIGNNConfig().upstream_model_config(),
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=LEARNING_RATE,
            weight_decay=1e-5,
            output_dir=output_dir,
            num_workers=0,
            cutoff=8.0,
            max_neighbors=12,
        )
        started = time.perf_counter()
        train_dgl(config, train_val_test_loaders=[train, val, test, prepare_pure_batch])
        train_total = time.perf_counter() - started
    return {
        "graph_seconds": graph_seconds,
        "train_epoch_seconds": train.passes[:epochs],
        "train_total_seconds": train_total,
        # the pass after the epochs: train_dgl's no-grad, eval-mode prediction of the training set, batched
        "inference_seconds": train.passes[epochs],
        # its last test pass: the no-grad prediction of the test set, one structure at a time
        "inference_single_seconds": test.passes[-1],
        "n_train": len(parts["train"]),
        "n_test": len(parts["test"]),
        "peak_mb": peak_memory_mb(),
    }


def run_perovdb(n: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """perovdb graphs + ``train_model`` + ``predict``."""
    from perovdb.graphs import GraphSettings, build_graphs
    from perovdb.ml import ALIGNNConfig, TrainConfig, predict, train_model

    ids, structures, gaps = load(n)
    settings = GraphSettings(cutoff=8.0, max_neighbors=12, neighbor_strategy="pure-top-k")
    started = time.perf_counter()
    graphs = build_graphs(list(zip(ids, structures)), settings, None, workers=1, progress=False)
    graph_seconds = time.perf_counter() - started
    parts = split(ids)
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=LEARNING_RATE, weight_decay=1e-5, early_stopping_patience=None
    )
    started = time.perf_counter()
    result = train_model([graphs[i] for i in ids], gaps, ids, ALIGNNConfig(graph=settings), config, parts)
    train_total = time.perf_counter() - started
    model = result.model()
    started = time.perf_counter()
    predict(model, [graphs[i] for i in parts["train"]], batch_size, result.normalizer)
    inference = time.perf_counter() - started
    started = time.perf_counter()
    predict(model, [graphs[i] for i in parts["test"]], 1, result.normalizer)
    inference_single = time.perf_counter() - started
    return {
        "graph_seconds": graph_seconds,
        "train_epoch_seconds": [h["train_seconds"] for h in result.history],
        "train_total_seconds": train_total,
        "inference_seconds": inference,
        "inference_single_seconds": inference_single,
        "n_train": len(parts["train"]),
        "n_test": len(parts["test"]),
        "peak_mb": peak_memory_mb(),
    }


def run_forwards(n: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """Seconds of upstream's and perovdb's forward on the test structures at batch 1 and the training
    structures at ``batch_size``: same weights, same batches, interleaved batch by batch, three rounds."""
    import torch
    from alignn.models.alignn_atomwise_pure import (
        ALIGNNAtomWisePure,
        ALIGNNAtomWisePureConfig,
    )

    from perovdb.graphs import GraphSettings, build_graphs, collate
    from perovdb.ml import ALIGNNConfig, build_model
    from perovdb.ml.heap import retained_heap

    ids, structures, _ = load(n)
    settings = GraphSettings(cutoff=8.0, max_neighbors=12, neighbor_strategy="pure-top-k")
    graphs = build_graphs(list(zip(ids, structures)), settings, None, workers=1, progress=False)
    config = ALIGNNConfig(graph=settings)
    torch.manual_seed(0)
    models = {"perovdb": build_model(config)}
    models["upstream"] = ALIGNNAtomWisePure(ALIGNNAtomWisePureConfig(**config.upstream_model_config()))
    models["upstream"].load_state_dict(models["perovdb"].state_dict(), strict=True)
    parts = split(ids)
    passes = {
        "single": [collate([graphs[i]]) for i in parts["test"]],
        "batched": [collate([graphs[i] for i in parts["train"][k : k + batch_size]])
                    for k in range(0, len(parts["train"]), batch_size)],
    }  # fmt: skip
    seconds = {f"{side}_{name}": 0.0 for side in models for name in passes}
    with torch.no_grad(), retained_heap():
        for model in models.values():
            model.eval()
            model(passes["single"][0].as_input())  # warm-up
        for round_ in range(3):
            for name, batches in passes.items():
                for k, batch in enumerate(batches):
                    order = ("upstream", "perovdb") if (k + round_) % 2 == 0 else ("perovdb", "upstream")
                    for side in order:
                        started = time.perf_counter()
                        models[side](batch.as_input())
                        seconds[f"{side}_{name}"] += time.perf_counter() - started
    return seconds


def measure(side: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one side in a fresh process and read its JSON line."""
    command = [sys.executable, __file__, "--side", side, "--structures", str(args.structures),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=96, help="structures (48 train, 8 val, the rest test)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--side", choices=["upstream", "perovdb", "forwards"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.structures <= N_TRAIN + N_VAL:
        parser.error(f"--structures must exceed {N_TRAIN + N_VAL}")
    if args.side:
        run = {"upstream": run_upstream, "perovdb": run_perovdb, "forwards": run_forwards}[args.side]
        print(json.dumps(run(args.structures, args.epochs, args.batch_size)))
        return
    print(f"{args.structures} relaxed perovskites, {args.epochs} epochs, batch {args.batch_size}, "
          f"ALIGNN 4+4 layers, hidden 256 (alignn_atomwise_pure, property model)")  # fmt: skip
    results = {side: measure(side, args) for side in ("upstream", "perovdb", "forwards")}
    up, ours, forwards = results["upstream"], results["perovdb"], results["forwards"]

    def rate(r: dict[str, Any]) -> float:  # training structures/s, mean over epochs
        return r["n_train"] * len(r["train_epoch_seconds"]) / sum(r["train_epoch_seconds"])

    rows = [
        ("training structures/s per epoch", rate(up), rate(ours), rate(ours) / rate(up)),
        (f"inference structures/s, batch {args.batch_size}", up["n_train"] / up["inference_seconds"],
         ours["n_train"] / ours["inference_seconds"], up["inference_seconds"] / ours["inference_seconds"]),
        ("inference structures/s, batch 1", up["n_test"] / up["inference_single_seconds"],
         ours["n_test"] / ours["inference_single_seconds"], up["inference_single_seconds"] / ours["inference_single_seconds"]),
        ("peak memory (MB)", up["peak_mb"], ours["peak_mb"], ours["peak_mb"] / up["peak_mb"]),
        ("graph building (s)", up["graph_seconds"], ours["graph_seconds"], up["graph_seconds"] / ours["graph_seconds"]),
        ("first run: graphs + training + test (s)", up["graph_seconds"] + up["train_total_seconds"],
         ours["graph_seconds"] + ours["train_total_seconds"] + ours["inference_single_seconds"],
         (up["graph_seconds"] + up["train_total_seconds"])
         / (ours["graph_seconds"] + ours["train_total_seconds"] + ours["inference_single_seconds"])),
    ]  # fmt: skip
    for name, label in (("single", "batch 1"), ("batched", f"batch {args.batch_size}")):
        a, b = forwards[f"upstream_{name}"], forwards[f"perovdb_{name}"]
        rows.append((f"forward alone, interleaved, {label} (s)", a, b, a / b))
    print(f"{'':42} {'upstream':>10} {'perovdb':>10} {'ratio':>8}")
    for label, a, b, ratio in rows:
        print(f"{label:42} {a:10.2f} {b:10.2f} {ratio:7.2f}x")
    print("ratio: perovdb over upstream for rates, upstream time over perovdb time for times, "
          "perovdb / upstream for memory")  # fmt: skip


if __name__ == "__main__":
    main()
