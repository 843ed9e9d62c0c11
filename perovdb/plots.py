"""Figures (matplotlib, Agg backend: no display needed): parity plots and learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parity_plot(
    predicted: Sequence[float],
    reference: Sequence[float],
    path: str | Path,
    *,
    groups: Sequence[str] | None = None,
    xlabel: str = "reference",
    ylabel: str = "predicted",
    title: str | None = None,
) -> Path:
    """Predicted vs reference with the y = x line, points coloured by ``groups`` (e.g. mixing type)."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    labels = list(groups) if groups is not None else ["all"] * len(predicted)
    for label in sorted(set(labels)):
        xs = [r for r, g in zip(reference, labels, strict=True) if g == label]
        ys = [p for p, g in zip(predicted, labels, strict=True) if g == label]
        ax.scatter(xs, ys, s=14, alpha=0.75, label=f"{label} ({len(xs)})")
    values = list(predicted) + list(reference)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="black", linewidth=1)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if groups is not None:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path, *, title: str | None = None) -> Path:
    """Training loss and validation MAE per epoch, one line per run."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (loss_ax, mae_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", markersize=3, label=name)
        mae_ax.plot(epochs, [h["val_mae"] for h in history], marker="o", markersize=3, label=name)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (standardised MSE)")
    mae_ax.set_xlabel("epoch")
    mae_ax.set_ylabel("validation MAE")
    mae_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
