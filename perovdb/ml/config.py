"""Validated settings of a model (architecture + graph settings) and of a training run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from perovdb.graphs.settings import GraphSettings

Architecture = Literal["alignn_atomwise_pure", "alignn"]

#: options for upstream's pure model that make it a property (not force-field) model
PROPERTY_MODEL_OPTIONS: dict[str, Any] = {"calculate_gradient": False, "gradwise_weight": 0.0, "energy_mult_natoms": False}


class ALIGNNConfig(BaseModel):
    """Everything needed to rebuild a model and the graphs it reads: architecture, sizes, graph settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Architecture = Field(default="alignn_atomwise_pure", description="Upstream model family.")
    alignn_layers: int = Field(default=4, ge=0)
    gcn_layers: int = Field(default=4, ge=0)
    atom_input_features: int = Field(default=92, ge=1)
    edge_input_features: int = Field(default=80, ge=2)
    triplet_input_features: int = Field(default=40, ge=2)
    embedding_features: int = Field(default=64, ge=1)
    hidden_features: int = Field(default=256, ge=1)
    output_features: int = Field(default=1, ge=1)
    link: Literal["identity", "log", "logit"] = "identity"
    upstream_options: dict[str, Any] = Field(
        default_factory=dict, description="Further upstream model-config fields (passed through unchanged)."
    )
    graph: GraphSettings = Field(default_factory=GraphSettings, description="Graph settings the model reads.")

    @model_validator(mode="after")
    def _check(self) -> ALIGNNConfig:
        if self.architecture == "alignn":
            unsupported = {k: v for k, v in self.upstream_options.items() if k in {"extra_features", "classification"} and v}
            if unsupported:
                raise ValueError(f"classic alignn options not supported: {unsupported}")
        return self

    def upstream_model_config(self) -> dict[str, Any]:
        """The ``"model"`` section of an upstream ``config.json`` for this model."""
        sizes = self.model_dump(exclude={"architecture", "upstream_options", "graph"})
        options = dict(PROPERTY_MODEL_OPTIONS) if self.architecture == "alignn_atomwise_pure" else {}
        options.update(self.upstream_options)
        return {"name": self.architecture, **sizes, **options}

    @classmethod
    def from_upstream(cls, config: dict[str, Any]) -> ALIGNNConfig:
        """From an upstream ``config.json`` (top-level graph settings + ``"model"`` section)."""
        model = dict(config["model"])
        architecture = model.pop("name")
        own = set(cls.model_fields) - {"architecture", "upstream_options", "graph"}
        sizes = {k: model.pop(k) for k in list(model) if k in own}
        return cls(
            architecture=architecture,
            upstream_options=model,
            graph=GraphSettings.from_upstream_config(config),
            **sizes,
        )


class TrainConfig(BaseModel):
    """Training hyperparameters (AdamW, target standardisation, early stopping on validation MAE)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    scheduler: Literal["onecycle", "cosine", "none"] = "onecycle"
    early_stopping_patience: int | None = Field(default=20, ge=1, description="Epochs without val-MAE gain; None = off.")
    seed: int = 123
    train_fraction: float = Field(default=0.8, gt=0, lt=1)
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda, cuda:1 …")
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads during training.")
    standardize: bool = Field(default=True, description="Train on (y - mean) / std of the training targets.")

    @model_validator(mode="after")
    def _fractions(self) -> TrainConfig:
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions sum to {total}, not 1")
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        """(train, val, test)."""
        return (self.train_fraction, self.val_fraction, self.test_fraction)
