"""``models``: registered ML models (trained here or imported), their settings, data and metrics."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from perovdb.documents.base import PerovdbDocument


class ModelDoc(PerovdbDocument):
    """A model that can predict a property; weights live in the artifact store under ``weights_key``."""

    model_id: str = Field(description="Unique id (uuid-based).")
    name: str = Field(description="Human-readable name.")
    version: int = Field(default=1, ge=1, description="Version within the name; a new version re-predicts.")
    architecture: str = Field(description="Model family, e.g. 'alignn_atomwise_pure' or 'alignn'.")
    origin: Literal["trained", "imported"] = Field(description="Trained by perovdb or imported from a checkpoint.")
    target_property: str = Field(description="Property predicted (see the property registry).")
    target_level_of_theory: str | None = Field(default=None, description="Level of theory of the training targets.")
    unit: str = Field(description="Unit of the predictions.")
    active: bool = Field(default=False, description="Whether builders keep predictions of this model current.")
    domain: str = Field(
        default="{}", description="Filter on structures, as JSON text: the ones this model predicts ('{}' = all)."
    )
    architecture_config: dict[str, Any] = Field(default_factory=dict, description="Architecture hyperparameters.")
    graph_settings: dict[str, Any] = Field(description="Every graph setting the model was trained with.")
    train_config: dict[str, Any] = Field(default_factory=dict, description="Training hyperparameters.")
    normalizer: dict[str, float] | None = Field(default=None, description="Target mean and std used in training.")
    dataset: dict[str, Any] = Field(default_factory=dict, description="Data snapshot: query, ids and their hash.")
    split: dict[str, list[str]] = Field(default_factory=dict, description="structure_ids per split.")
    metrics: dict[str, float] = Field(default_factory=dict, description="MAE/RMSE/R² on validation and test.")
    history: list[dict[str, float]] = Field(default_factory=list, description="Per-epoch losses and MAEs.")
    versions: dict[str, str] = Field(default_factory=dict, description="Library versions at training time.")
    weights_key: str = Field(description="Artifact-store key of the weights.")
    weights_sha256: str = Field(description="sha256 of the stored weights.")
    job_uuid: str | None = Field(default=None, description="jobflow job that produced the model.")
