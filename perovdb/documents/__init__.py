"""One pydantic document model per collection; ``COLLECTIONS`` maps collection → (document, key)."""

from __future__ import annotations

from perovdb.documents.base import PerovdbDocument, Source, content_hash, naive_utc, utcnow
from perovdb.documents.calculation import CalculationDoc, CalculationProperties
from perovdb.documents.evaluation import EvaluationDoc
from perovdb.documents.material import MaterialDoc, PropertyValue
from perovdb.documents.model import ModelDoc
from perovdb.documents.prediction import PredictionDoc
from perovdb.documents.properties import PROPERTIES, LevelOfTheory, PropertySpec, property_spec
from perovdb.documents.structure import Generation, PerovskiteSites, StructureDoc, geometry_id, recipe_id

#: collection name → (document model, key field)
COLLECTIONS: dict[str, tuple[type[PerovdbDocument], str]] = {
    "structures": (StructureDoc, "structure_id"),
    "calculations": (CalculationDoc, "calculation_id"),
    "materials": (MaterialDoc, "material_id"),
    "models": (ModelDoc, "model_id"),
    "predictions": (PredictionDoc, "prediction_id"),
    "evaluations": (EvaluationDoc, "evaluation_id"),
}

__all__ = [
    "COLLECTIONS",
    "PROPERTIES",
    "CalculationDoc",
    "CalculationProperties",
    "EvaluationDoc",
    "Generation",
    "LevelOfTheory",
    "MaterialDoc",
    "ModelDoc",
    "PerovdbDocument",
    "PerovskiteSites",
    "PredictionDoc",
    "PropertySpec",
    "PropertyValue",
    "Source",
    "StructureDoc",
    "content_hash",
    "geometry_id",
    "property_spec",
    "recipe_id",
    "naive_utc",
    "utcnow",
]
