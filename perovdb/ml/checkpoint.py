"""Model (de)serialisation: perovdb's self-describing blobs and upstream ALIGNN checkpoints."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perovdb.ml.config import ALIGNNConfig
from perovdb.ml.models import build_model


def state_dict_to_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """``torch.save`` of a state_dict into bytes."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return buffer.getvalue()


def state_dict_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """Inverse of ``state_dict_to_bytes``; also accepts ``{"model": state_dict}`` (upstream checkpoints)."""
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and "model" in loaded and isinstance(loaded["model"], dict):
        loaded = loaded["model"]
    return dict(loaded)


def model_to_bytes(model: nn.Module, config: ALIGNNConfig, normalizer: dict[str, float] | None = None) -> bytes:
    """Weights, config and normaliser in one blob (``torch.save``, loadable with ``weights_only``)."""
    buffer = io.BytesIO()
    payload = {
        "format": "perovdb-alignn/1",
        "config": json.dumps(config.model_dump(mode="json")),
        "normalizer": json.dumps(normalizer),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(payload, buffer)
    return buffer.getvalue()


def model_from_bytes(data: bytes) -> tuple[nn.Module, ALIGNNConfig, dict[str, float] | None]:
    """Inverse of ``model_to_bytes``: (model in eval mode, config, normaliser)."""
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if payload.get("format") != "perovdb-alignn/1":
        raise ValueError("not a perovdb model blob")
    config = ALIGNNConfig.model_validate(json.loads(payload["config"]))
    model = build_model(config)
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    return model, config, json.loads(payload["normalizer"])


def _checkpoint_rank(name: str) -> tuple[int, int]:
    base = name.rsplit("/", 1)[-1]
    if base == "best_model.pt":
        return (2, 0)
    match = re.fullmatch(r"checkpoint_(\d+)\.pt", base)
    if match:
        return (1, int(match.group(1)))
    return (0, 0)


def read_upstream_files(path: str | Path) -> tuple[dict[str, Any], bytes, str]:
    """``(config.json, weights bytes, weights file name)`` from an upstream zip or directory.

    The weights file is ``best_model.pt`` if present, else the highest ``checkpoint_N.pt``, else the only ``.pt``.
    """
    path = Path(path)
    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
        read = lambda name: files[name].read_bytes()  # noqa: E731
        names = list(files)
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
        read = archive.read  # noqa: E731
    else:
        raise ValueError(f"{path} is neither a directory nor a zip file")
    configs = [n for n in names if n.rsplit("/", 1)[-1] == "config.json"]
    weights = sorted((n for n in names if n.endswith(".pt")), key=_checkpoint_rank)
    if len(configs) != 1 or not weights:
        raise ValueError(f"{path}: expected one config.json and a .pt file, found {sorted(names)}")
    return json.loads(read(configs[0])), read(weights[-1]), weights[-1]


def import_checkpoint(path: str | Path) -> tuple[nn.Module, ALIGNNConfig]:
    """Load an upstream ALIGNN checkpoint (zip or folder; bare state_dict or ``{"model": …}``) for inference."""
    upstream_config, weights, _ = read_upstream_files(path)
    config = ALIGNNConfig.from_upstream(upstream_config)
    model = build_model(config)
    model.load_state_dict(state_dict_from_bytes(weights), strict=True)
    model.eval()
    return model, config
