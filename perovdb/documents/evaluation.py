"""``evaluations``: how well a model's predictions match reference calculations."""

from __future__ import annotations

from pydantic import Field

from perovdb.documents.base import PerovdbDocument, content_hash


class EvaluationDoc(PerovdbDocument):
    """Error metrics of one model against one reference level of theory on one subset."""

    evaluation_id: str = Field(description="Derived from model, property, reference level and subset.")
    model_id: str = Field(description="Model evaluated.")
    property: str = Field(description="Property compared.")
    reference_level_of_theory: str = Field(description="Level of theory of the reference values.")
    subset: str = Field(default="all", description="Subset, e.g. 'all', 'test', 'mixing_type=B-site mixed'.")
    unit: str = Field(description="Unit of the errors.")
    n: int = Field(ge=0, description="Number of (prediction, reference) pairs.")
    mae: float | None = Field(default=None, description="Mean absolute error.")
    rmse: float | None = Field(default=None, description="Root-mean-square error.")
    r2: float | None = Field(default=None, description="Coefficient of determination.")
    max_error: float | None = Field(default=None, description="Largest absolute error.")
    pairs: list[dict[str, float | str]] = Field(
        default_factory=list, description="Parity pairs: structure_id, predicted, reference."
    )
    inputs_digest: str | None = Field(
        default=None, description="Hash of the predictions and reference calculations compared (for incremental builds)."
    )
    job_uuid: str | None = Field(default=None, description="Job or builder run that computed it.")

    @staticmethod
    def make_id(model_id: str, prop: str, level: str, subset: str) -> str:
        """One evaluation per (model, property, reference level, subset)."""
        return "eval-" + content_hash([model_id, prop, level, subset])
