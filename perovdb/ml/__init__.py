"""ALIGNN models: configs, upstream-compatible architectures, checkpoints, training and the model registry."""

from perovdb.ml.checkpoint import (
    import_checkpoint,
    model_from_bytes,
    model_to_bytes,
    state_dict_from_bytes,
    state_dict_to_bytes,
)
from perovdb.ml.config import ALIGNNConfig, TrainConfig
from perovdb.ml.models import ClassicALIGNN, build_model, model_outputs
from perovdb.ml.splits import kfold, split_ids
from perovdb.ml.train import TrainingResult, fine_tune, predict, train_model

__all__ = [
    "ALIGNNConfig",
    "ClassicALIGNN",
    "TrainConfig",
    "TrainingResult",
    "build_model",
    "fine_tune",
    "import_checkpoint",
    "kfold",
    "model_from_bytes",
    "model_outputs",
    "model_to_bytes",
    "predict",
    "split_ids",
    "state_dict_from_bytes",
    "state_dict_to_bytes",
    "train_model",
]
