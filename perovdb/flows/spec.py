"""Workflow specs: the YAML files in ``workflows/`` that users keep under version control."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from jobflow import Flow
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perovdb.errors import InvalidRecord
from perovdb.flows.inputs import DatasetQuery, StructureQuery
from perovdb.flows.makers import (
    EvaluateMaker,
    GraphsMaker,
    MultiFidelityFlowMaker,
    PredictMaker,
    PropertyFlowMaker,
    SplitMaker,
    TrainMaker,
)
from perovdb.graphs import GraphSettings
from perovdb.ml import ALIGNNConfig, TrainConfig


class SplitSpec(BaseModel):
    """Train/val/test fractions and seed (grouped by compound)."""

    model_config = ConfigDict(extra="forbid")

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


class WorkflowSpec(BaseModel):
    """One workflow: what to train on, the model and training settings, what to predict and evaluate."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Flow name; also the registered model's name.")
    kind: Literal["property", "multi-fidelity"] = Field(default="property", description="Flow shape.")
    description: str = ""
    dataset: DatasetQuery = Field(description="Training targets (the accurate level for multi-fidelity).")
    pretrain_dataset: DatasetQuery | None = Field(default=None, description="Cheap level to pretrain on (multi-fidelity).")
    predict: StructureQuery = Field(default_factory=StructureQuery, description="Structures to predict.")
    graph: GraphSettings = Field(default_factory=GraphSettings)
    model: dict[str, Any] = Field(default_factory=dict, description="ALIGNNConfig fields (graph settings excluded).")
    training: TrainConfig = Field(default_factory=TrainConfig)
    pretraining: TrainConfig | None = Field(default=None, description="Training settings of the pretraining step.")
    split: SplitSpec = Field(default_factory=SplitSpec)
    reference_level: str | None = Field(default=None, description="Level to evaluate against (default: all present).")
    activate: bool = Field(default=True, description="Make the model active so builders keep its predictions current.")
    domain: dict[str, Any] | None = Field(default=None, description="Structures the active model covers.")

    @classmethod
    def from_file(cls, path: str | Path) -> WorkflowSpec:
        """Read and validate a YAML spec; errors name the file and the field."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise InvalidRecord(f"cannot read the spec: {error}", record=str(path)) from None
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            raise InvalidRecord(first["msg"], field=".".join(map(str, first["loc"])), record=str(path)) from None

    def model_config_dict(self) -> dict[str, Any]:
        """The full ALIGNNConfig (model fields + graph settings), validated."""
        return ALIGNNConfig(**self.model, graph=self.graph).model_dump(mode="json")

    def to_flow(self, uri: str | None = None) -> Flow:
        """The jobflow Flow of this spec (``uri``: database the jobs open when run outside ``perovdb flow run``)."""
        model = self.model_config_dict()
        common = {"uri": uri}
        graphs = GraphsMaker(graph=self.graph.model_dump(mode="json"), **common)
        split = SplitMaker(fractions=self.split.fractions, seed=self.split.seed, **common)
        training = self.training.model_dump(mode="json")
        predictor = PredictMaker(**common)
        evaluator = EvaluateMaker(reference_level=self.reference_level, **common)
        if self.kind == "property":
            return PropertyFlowMaker(
                name=self.name,
                dataset=self.dataset.model_dump(mode="json"),
                predict=self.predict.model_dump(mode="json"),
                split=split,
                graphs=graphs,
                train=TrainMaker(
                    model_name=self.name, model=model, training=training, activate=self.activate, domain=self.domain, **common
                ),
                predictor=predictor,
                evaluator=evaluator,
            ).make()
        if self.pretrain_dataset is None:
            raise InvalidRecord("a multi-fidelity spec needs pretrain_dataset", field="pretrain_dataset", record=self.name)
        pretraining = (self.pretraining or self.training).model_dump(mode="json")
        return MultiFidelityFlowMaker(
            name=self.name,
            pretrain_dataset=self.pretrain_dataset.model_dump(mode="json"),
            dataset=self.dataset.model_dump(mode="json"),
            predict=self.predict.model_dump(mode="json"),
            split=split,
            graphs=graphs,
            pretrain=TrainMaker(name="pretrain", model_name=f"{self.name}-pretrain", model=model, training=pretraining, **common),
            finetune=TrainMaker(
                name="fine-tune",
                model_name=f"{self.name}-finetuned",
                model=model,
                training=training,
                activate=self.activate,
                domain=self.domain,
                **common,
            ),
            direct=TrainMaker(name="train direct", model_name=f"{self.name}-direct", model=model, training=training, **common),
            predictor=predictor,
            evaluator=evaluator,
        ).make()
