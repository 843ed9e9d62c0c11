"""Response models of the HTTP API (what ``/openapi.json`` shows), built from perovdb's document models."""

from __future__ import annotations

from typing import Any, Generic, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from perovdb.documents import (
    CalculationDoc,
    EvaluationDoc,
    MaterialDoc,
    ModelDoc,
    PerovdbDocument,
    PredictionDoc,
    StructureDoc,
)


def partial(document: type[PerovdbDocument], name: str) -> type[BaseModel]:
    """``document`` with every field optional: what a response holds after a ``fields`` projection."""
    fields: dict[str, Any] = {
        field: (Optional[info.annotation], Field(default=None, description=info.description))  # noqa: UP045
        for field, info in document.model_fields.items()
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=document.__doc__, **fields)


Structure = partial(StructureDoc, "Structure")
Calculation = partial(CalculationDoc, "Calculation")
Material = partial(MaterialDoc, "Material")
Model = partial(ModelDoc, "Model")
Prediction = partial(PredictionDoc, "Prediction")
Evaluation = partial(EvaluationDoc, "Evaluation")

#: collection → response model of one document
RESOURCE_MODELS: dict[str, type[BaseModel]] = {
    "structures": Structure,
    "calculations": Calculation,
    "materials": Material,
    "models": Model,
    "predictions": Prediction,
    "evaluations": Evaluation,
}

T = TypeVar("T")


class PageMeta(BaseModel):
    """Counts and paging of one list response."""

    total: int = Field(description="Documents matching the query.")
    returned: int = Field(description="Documents in this page.")
    skip: int = Field(description="Documents skipped before this page.")
    limit: int = Field(description="Page size asked for.")
    more_data_available: bool = Field(description="Whether a next page exists.")


class PageLinks(BaseModel):
    """Links of a list response."""

    next: str | None = Field(default=None, description="URL of the next page, if any.")


class Page(BaseModel, Generic[T]):
    """A page of documents."""

    data: list[T]
    meta: PageMeta
    links: PageLinks


class ErrorBody(BaseModel):
    """What went wrong, without internals (no stack traces, no connection strings)."""

    status: int = Field(description="HTTP status code.")
    title: str = Field(description="Short name of the error.")
    detail: str = Field(description="What was wrong with the request.")


class ErrorResponse(BaseModel):
    """Every error response."""

    error: ErrorBody


class LineageNode(BaseModel):
    """One node of a lineage graph."""

    id: str = Field(description="Document id, or a synthetic id for sources and jobs.")
    kind: str = Field(description="source, structure, calculation, model, job, prediction or evaluation.")
    label: str = Field(description="Short human-readable label.")
    data: dict[str, Any] = Field(default_factory=dict, description="A few fields of the node.")


class LineageEdge(BaseModel):
    """A directed edge: ``source`` was used by (or produced) ``target``."""

    source: str
    target: str
    relation: str = Field(description="e.g. read_from, input_of, predicted_by, produced_by.")


class Lineage(BaseModel):
    """Where a prediction came from: its model (and the model's job), its structure and the structure's sources."""

    prediction: Prediction  # type: ignore[valid-type]
    model: Model | None = None  # type: ignore[valid-type]
    job_uuid: str | None = Field(default=None, description="jobflow job that produced the model.")
    structure: Structure | None = None  # type: ignore[valid-type]
    sources: list[dict[str, Any]] = Field(default_factory=list, description="Sources of the structure.")
    nodes: list[LineageNode]
    edges: list[LineageEdge]


class IngestResult(BaseModel):
    """Outcome of an upload."""

    filename: str
    read: int
    skipped_unchanged: int
    rejected: list[str]
    structures: dict[str, int]
    calculations: dict[str, int]
    ok: bool


class Stats(BaseModel):
    """Counts per collection, level of theory, mixing type and origin."""

    collections: dict[str, int]
    calculations_by_level_of_theory: dict[str, int]
    structures_by_mixing_type: dict[str, int]
    structures_by_origin: dict[str, int]
