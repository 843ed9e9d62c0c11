"""``predictions``: one model's value for one structure, tied to the model and the inputs it saw."""

from __future__ import annotations

from pydantic import Field

from perovdb.documents.base import PerovdbDocument, content_hash


class PredictionDoc(PerovdbDocument):
    """A predicted value; ``stale`` once its model is retired or its input changed."""

    prediction_id: str = Field(description="Derived from model_id and structure_id and the structure's content.")
    model_id: str = Field(description="Model that made the prediction.")
    structure_id: str = Field(description="Structure predicted.")
    structure_digest: str = Field(description="Content digest of the structure document predicted from.")
    property: str = Field(description="Property predicted.")
    unit: str = Field(description="Unit of the value.")
    value: float = Field(description="Predicted value.")
    stale: bool = Field(default=False, description="True when the model is retired or the structure changed.")
    job_uuid: str | None = Field(default=None, description="jobflow job (or builder run) that made it.")

    @staticmethod
    def make_id(model_id: str, structure_id: str, structure_digest: str) -> str:
        """Same model, structure and content → same id, so reruns never duplicate predictions."""
        return "pred-" + content_hash([model_id, structure_id, structure_digest])
