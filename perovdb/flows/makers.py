"""jobflow Makers: small dataclasses with defaults that make perovdb's jobs and flows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Job, Maker

from perovdb.flows import jobs


@dataclass
class GraphsMaker(Maker):
    """Build (or reuse cached) crystal graphs of a structure query."""

    name: str = "build graphs"
    graph: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None

    def make(self, structures: dict[str, Any]) -> Job:
        return _named(jobs.build_graphs_job(structures, self.graph, uri=self.uri), self.name)


@dataclass
class SplitMaker(Maker):
    """A train/val/test split of a dataset grouped by compound."""

    name: str = "split"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    uri: str | None = None

    def make(self, dataset: dict[str, Any]) -> Job:
        return _named(jobs.split_job(dataset, list(self.fractions), self.seed, uri=self.uri), self.name)


@dataclass
class TrainMaker(Maker):
    """Train (or fine-tune) ALIGNN on a dataset and register the model."""

    name: str = "train"
    model_name: str = "alignn"
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    activate: bool = False
    domain: dict[str, Any] | None = None
    uri: str | None = None

    def make(
        self,
        dataset: dict[str, Any],
        split: Any = None,
        init_model: Any = None,
        exclude: Any = None,
        graphs: Any = None,
    ) -> Job:
        return _named(
            jobs.train_job(
                self.model_name,
                dataset,
                self.model,
                self.training,
                split=split,
                init_model=init_model,
                exclude=exclude,
                graphs=graphs,
                activate=self.activate,
                domain=self.domain,
                uri=self.uri,
            ),
            self.name,
        )


@dataclass
class PredictMaker(Maker):
    """Predict with a registered model for a structure query."""

    name: str = "predict"
    uri: str | None = None

    def make(self, model: Any, structures: dict[str, Any]) -> Job:
        return _named(jobs.predict_job(model, structures, uri=self.uri), self.name)


@dataclass
class EvaluateMaker(Maker):
    """Evaluate a model against reference calculations on its own split."""

    name: str = "evaluate"
    reference_level: str | None = None
    uri: str | None = None

    def make(self, model: Any) -> Job:
        return _named(jobs.evaluate_job(model, self.reference_level, uri=self.uri), self.name)


def _named(job: Job, name: str) -> Job:
    job.name = name
    return job


@dataclass
class PropertyFlowMaker(Maker):
    """graphs → split → train → predict → evaluate for one property at one level of theory."""

    name: str = "property model"
    dataset: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)
    split: SplitMaker = field(default_factory=SplitMaker)
    graphs: GraphsMaker = field(default_factory=GraphsMaker)
    train: TrainMaker = field(default_factory=TrainMaker)
    predictor: PredictMaker = field(default_factory=PredictMaker)
    evaluator: EvaluateMaker = field(default_factory=EvaluateMaker)

    def make(self) -> Flow:
        graphs = self.graphs.make({"filter": self.dataset.get("structures", {})})
        split = self.split.make(self.dataset)
        train = self.train.make(self.dataset, split=split.output, graphs=graphs.output)
        predict = self.predictor.make(train.output, self.predict)
        evaluate = self.evaluator.make(train.output)
        return Flow([graphs, split, train, predict, evaluate], output=evaluate.output, name=self.name)


@dataclass
class MultiFidelityFlowMaker(Maker):
    """Pretrain on a cheap level (PBE), fine-tune on the accurate one (HSE06), and train on the accurate one alone.

    Both models share the accurate level's split; the pretraining data excludes the structures of its
    validation and test compounds, so a test compound's PBE twin never reaches training.
    """

    name: str = "multi-fidelity"
    pretrain_dataset: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)
    split: SplitMaker = field(default_factory=SplitMaker)
    graphs: GraphsMaker = field(default_factory=GraphsMaker)
    pretrain: TrainMaker = field(default_factory=lambda: TrainMaker(name="pretrain"))
    finetune: TrainMaker = field(default_factory=lambda: TrainMaker(name="fine-tune"))
    direct: TrainMaker = field(default_factory=lambda: TrainMaker(name="train direct"))
    predictor: PredictMaker = field(default_factory=PredictMaker)
    evaluator: EvaluateMaker = field(default_factory=EvaluateMaker)

    def make(self) -> Flow:
        structures = self.dataset.get("structures", {})
        graphs = self.graphs.make({"filter": structures})
        split = self.split.make(self.dataset)
        pretrain = self.pretrain.make(
            self.pretrain_dataset, exclude={"split": split.output, "parts": ["val", "test"]}, graphs=graphs.output
        )
        finetune = self.finetune.make(self.dataset, split=split.output, init_model=pretrain.output, graphs=graphs.output)
        direct = self.direct.make(self.dataset, split=split.output, graphs=graphs.output)
        predict = self.predictor.make(finetune.output, self.predict)
        evaluate_finetune = _named(self.evaluator.make(finetune.output), "evaluate fine-tuned")
        evaluate_direct = _named(self.evaluator.make(direct.output), "evaluate direct")
        jobs_ = [graphs, split, pretrain, finetune, direct, predict, evaluate_finetune, evaluate_direct]
        return Flow(
            jobs_,
            output={"fine_tuned": evaluate_finetune.output, "direct": evaluate_direct.output},
            name=self.name,
        )
