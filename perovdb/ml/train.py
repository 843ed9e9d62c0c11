"""Training, fine-tuning and prediction of ALIGNN models on crystal graphs."""

from __future__ import annotations

import copy
import math
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from perovdb.graphs.batch import collate
from perovdb.graphs.graph import CrystalGraph
from perovdb.ml.checkpoint import state_dict_from_bytes, state_dict_to_bytes
from perovdb.ml.config import ALIGNNConfig, TrainConfig
from perovdb.ml.heap import retained_heap
from perovdb.ml.models import build_model, model_outputs
from perovdb.ml.splits import split_ids
from perovdb.switches import torch_threads


@dataclass
class TrainingResult:
    """What a training run produced: weights, normaliser, split, history, metrics and provenance."""

    state_dict: bytes
    model_config: ALIGNNConfig
    train_config: TrainConfig
    normalizer: dict[str, float]
    split: dict[str, list[str]]
    history: list[dict[str, float]]
    metrics: dict[str, float]
    best_epoch: int
    versions: dict[str, str]
    init_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self) -> nn.Module:
        """The trained model (best weights), in eval mode."""
        model = build_model(self.model_config)
        model.load_state_dict(state_dict_from_bytes(self.state_dict), strict=True)
        return model.eval()


def library_versions() -> dict[str, str]:
    """Versions of what shapes a model's numbers."""
    import alignn
    import jarvis
    import pymatgen.core

    import perovdb

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "alignn": getattr(alignn, "__version__", "unknown"),
        "jarvis-tools": getattr(jarvis, "__version__", "unknown"),
        "pymatgen": getattr(pymatgen.core, "__version__", "unknown"),
        "perovdb": perovdb.__version__,
    }


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(indices: Sequence[int], batch_size: int, generator: torch.Generator | None) -> list[list[int]]:
    order = list(indices)
    if generator is not None:
        order = [order[i] for i in torch.randperm(len(order), generator=generator).tolist()]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _regression_metrics(predicted: np.ndarray, actual: np.ndarray, prefix: str) -> dict[str, float]:
    if len(actual) == 0:
        return {}
    error = predicted - actual
    metrics = {f"{prefix}_mae": float(np.mean(np.abs(error))), f"{prefix}_rmse": float(np.sqrt(np.mean(error**2)))}
    variance = float(np.sum((actual - actual.mean()) ** 2))
    if variance > 0:
        metrics[f"{prefix}_r2"] = 1.0 - float(np.sum(error**2)) / variance
    return metrics


def predict(
    model: nn.Module,
    graphs: Sequence[CrystalGraph],
    batch_size: int = 64,
    normalizer: dict[str, float] | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Predictions in target units (``normalizer`` {"mean", "std"} undone when given)."""
    device = resolve_device(device) if isinstance(device, str) else device
    was_training = model.training
    model.eval()
    model.to(device)
    outputs = []
    with torch.no_grad(), retained_heap():
        for start in range(0, len(graphs), batch_size):
            batch = collate(graphs[start : start + batch_size]).to(device)
            outputs.append(model_outputs(model, batch).detach().cpu().double().numpy())
    model.train(was_training)
    values = np.concatenate(outputs) if outputs else np.empty(0)
    if normalizer:
        values = values * normalizer["std"] + normalizer["mean"]
    return values


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int) -> Any:
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=max(steps, 1))
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    return None


def train_model(
    graphs: Sequence[CrystalGraph],
    targets: Sequence[float],
    ids: Sequence[str],
    model_config: ALIGNNConfig,
    train_config: TrainConfig,
    split: dict[str, list[str]] | None = None,
    *,
    initial_state: bytes | None = None,
    normalizer: dict[str, float] | None = None,
) -> TrainingResult:
    """Train (or, with ``initial_state``, fine-tune) a model; early stopping keeps the best-val-MAE weights.

    ``split`` maps "train"/"val"/"test" to ids (default: ``split_ids`` with the config's fractions and seed).
    ``normalizer`` fixes the target standardisation (default: mean/std of the training targets).
    """
    if not (len(graphs) == len(targets) == len(ids)):
        raise ValueError("graphs, targets and ids must have the same length")
    hashes = {g.settings_hash for g in graphs}
    if hashes != {model_config.graph.settings_hash}:
        raise ValueError(f"graphs were built with settings {sorted(hashes)}, the model reads {model_config.graph.settings_hash}")
    split = split or split_ids(list(ids), train_config.fractions, train_config.seed)
    position = {structure_id: i for i, structure_id in enumerate(ids)}
    unknown = [i for part in split.values() for i in part if i not in position]
    if unknown:
        raise ValueError(f"split names unknown ids, e.g. {unknown[:3]}")
    train_idx = [position[i] for i in split.get("train", [])]
    val_idx = [position[i] for i in split.get("val", [])]
    test_idx = [position[i] for i in split.get("test", [])]
    if not train_idx or not val_idx:
        raise ValueError("training needs non-empty train and val splits")
    y = np.asarray(targets, dtype=float)
    if normalizer is None:
        if train_config.standardize:
            std = float(np.std(y[train_idx]))
            normalizer = {"mean": float(np.mean(y[train_idx])), "std": std if std > 1e-12 else 1.0}
        else:
            normalizer = {"mean": 0.0, "std": 1.0}
    y_scaled = torch.tensor((y - normalizer["mean"]) / normalizer["std"], dtype=torch.float32)

    # big per-edge tensors: reuse freed memory instead of page-faulting; the configured thread count
    with retained_heap(), torch_threads(train_config.num_threads):
        seed_everything(train_config.seed)
        device = resolve_device(train_config.device)
        model = build_model(model_config)
        if initial_state is not None:
            model.load_state_dict(state_dict_from_bytes(initial_state), strict=True)
        model.to(device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
        )
        steps_per_epoch = math.ceil(len(train_idx) / train_config.batch_size)
        scheduler = _scheduler(optimizer, train_config, steps_per_epoch * train_config.epochs)
        generator = torch.Generator().manual_seed(train_config.seed)
        loss_fn = nn.MSELoss()
        graph_list = list(graphs)
        val_graphs = [graph_list[i] for i in val_idx]
        history: list[dict[str, float]] = []
        best_mae, best_epoch, best_state, stale = math.inf, 0, copy.deepcopy(model.state_dict()), 0
        for epoch in range(1, train_config.epochs + 1):
            started = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for batch_idx in _batches(train_idx, train_config.batch_size, generator):
                batch = collate([graph_list[i] for i in batch_idx]).to(device)
                optimizer.zero_grad()
                loss = loss_fn(model_outputs(model, batch), y_scaled[batch_idx].to(device))
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total += float(loss.item()) * len(batch_idx)
                count += len(batch_idx)
            train_seconds = time.perf_counter() - started
            val_pred = predict(model, val_graphs, train_config.batch_size, normalizer, device)
            val_mae = float(np.mean(np.abs(val_pred - y[val_idx])))
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / count,
                    "val_mae": val_mae,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "train_seconds": train_seconds,
                    "seconds": time.perf_counter() - started,
                }
            )
            if val_mae < best_mae:
                best_mae, best_epoch, stale = val_mae, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if train_config.early_stopping_patience and stale >= train_config.early_stopping_patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
        val_pred = predict(model, val_graphs, train_config.batch_size, normalizer, device)
        metrics = _regression_metrics(val_pred, y[val_idx], "val")
        if test_idx:
            test_graphs = [graph_list[i] for i in test_idx]
            test_pred = predict(model, test_graphs, train_config.batch_size, normalizer, device)
            metrics.update(_regression_metrics(test_pred, y[test_idx], "test"))
    return TrainingResult(
        state_dict=state_dict_to_bytes(model.state_dict()),
        model_config=model_config,
        train_config=train_config,
        normalizer=normalizer,
        split={name: list(part) for name, part in split.items()},
        history=history,
        metrics=metrics,
        best_epoch=best_epoch,
        versions=library_versions(),
    )


def fine_tune(
    graphs: Sequence[CrystalGraph],
    targets: Sequence[float],
    ids: Sequence[str],
    initial_state: bytes,
    model_config: ALIGNNConfig,
    train_config: TrainConfig,
    split: dict[str, list[str]] | None = None,
    normalizer: dict[str, float] | None = None,
    init_from: str | None = None,
) -> TrainingResult:
    """Train starting from ``initial_state`` (e.g. a PBE model fine-tuned on HSE06 gaps).

    Pass the base model's ``normalizer`` to keep its output scale (the usual choice for transfer);
    ``None`` re-standardises on the new training targets.
    """
    result = train_model(
        graphs, targets, ids, model_config, train_config, split, initial_state=initial_state, normalizer=normalizer
    )
    result.init_from = init_from
    return result

