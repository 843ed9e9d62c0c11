"""Query parameters of the list resources: one pydantic model per resource, validated in one call.

A list endpoint takes the ``Request`` and reads its query string with ``QueryModel.read``: one pydantic
validation of every parameter at once (about 0.01 ms). FastAPI resolves declared parameters one by
one on every request, about 0.4 ms for a list resource's eleven, more than the query itself on the
embedded store (its own query-parameter models, ``Annotated[Model, Query()]``, are resolved field by
field too). ``QueryModel.openapi`` lists the model's fields as the operation's query parameters
(``openapi_extra``), so ``/openapi.json`` documents them as FastAPI would; the model is the single
place where a parameter's type, bounds and description live.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from typing_extensions import Self  # typing's needs Python 3.11

from perovdb.api.security import ApiError, validation_detail
from perovdb.api.store import Limits


class QueryModel(BaseModel):
    """Query parameters of one resource; parameters the model does not name are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def read(cls, request: Request) -> Self:
        """The request's query parameters (the last value of a repeated one), validated; 400 naming the
        parameter when one is invalid."""
        try:
            return cls.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise ApiError(400, validation_detail(exc.errors()), "Bad Request") from None

    @classmethod
    def openapi(cls) -> dict[str, Any]:
        """``openapi_extra`` documenting every field as an optional query parameter."""
        schema = cls.model_json_schema()
        if "$defs" in schema:  # a nested or enum field: OpenAPI could not resolve its reference here
            raise TypeError(f"{cls.__name__}: query parameters must be scalars (str, int, float, bool)")
        parameters = []
        for name, field_schema in schema["properties"].items():
            field_schema = {k: v for k, v in field_schema.items() if k != "title"}
            parameter = {"name": name, "in": "query", "required": False, "schema": field_schema}
            if "description" in field_schema:
                parameter["description"] = field_schema.pop("description")
            parameters.append(parameter)
        return {"parameters": parameters}


class DocumentQuery(QueryModel):
    """What every resource takes, single documents too: the fields to return."""

    fields: str | None = Field(None, max_length=2000, description="Comma list of fields to return (dotted paths "
                               "allowed).")


_LIMITS = Limits()


class PagingQuery(DocumentQuery):
    """What every list resource takes: the user's filter, fields, sort and the page."""

    filter: str | None = Field(None, max_length=5000, description="JSON filter (checked: known fields, typed "
                               "operators, no $where/$function/$expr/$lookup; string fields take strings, not "
                               "operator objects).")
    sort: str | None = Field(None, max_length=500, description="Comma list of fields; '-' prefix for descending.")
    skip: int = Field(0, ge=0, le=10_000_000, description="Documents to skip.")
    limit: int = Field(_LIMITS.default_limit, ge=1, le=_LIMITS.max_limit,
                       description=f"Page size; above {_LIMITS.max_limit} is refused (400).")


Q = TypeVar("Q", bound=PagingQuery)


def with_page_size(model: type[Q], default: int, maximum: int) -> type[Q]:
    """``model`` (a ``PagingQuery``) with this server's default and maximum page size (``Limits``)."""
    limit = Field(default, ge=1, le=maximum, description=f"Page size; above {maximum} is refused (400).")
    return create_model(model.__name__, __base__=model, limit=(int, limit))


class StructureQuery(PagingQuery):
    formula: str | None = Field(None, max_length=200, description="Reduced or perovskite formula (MAPbI3).")
    elements: str | None = Field(None, max_length=200, description="Comma list; all must be present.")
    nsites_max: int | None = Field(None, ge=1)
    nsites_min: int | None = Field(None, ge=1)
    mixing_type: str | None = Field(None, max_length=100, description="Pure, A-site mixed, …")
    origin: str | None = Field(None, max_length=50)


class CalculationQuery(PagingQuery):
    structure_id: str | None = Field(None, max_length=2000, description="Comma list of structure ids.")
    level_of_theory: str | None = Field(None, max_length=50)
    dataset: str | None = Field(None, max_length=300)


class MaterialQuery(PagingQuery):
    formula: str | None = Field(None, max_length=200)
    elements: str | None = Field(None, max_length=200, description="Comma list; all must be present.")
    nsites_max: int | None = Field(None, ge=1)
    mixing_type: str | None = Field(None, max_length=100)
    band_gap_min: float | None = Field(None, description="Preferred band gap ≥ (eV).")
    band_gap_max: float | None = Field(None, description="Preferred band gap ≤ (eV).")
    band_gap_pbe_min: float | None = Field(None, description="PBE band gap ≥ (eV).")
    band_gap_pbe_max: float | None = Field(None, description="PBE band gap ≤ (eV).")
    band_gap_hse06_min: float | None = Field(None, description="HSE06 band gap ≥ (eV).")
    band_gap_hse06_max: float | None = Field(None, description="HSE06 band gap ≤ (eV).")


class ModelQuery(PagingQuery):
    target_property: str | None = Field(None, max_length=100)
    active: bool | None = None
    name: str | None = Field(None, max_length=200)


class PredictionQuery(PagingQuery):
    model_id: str | None = Field(None, max_length=200)
    structure_id: str | None = Field(None, max_length=20_000, description="Comma list of structure ids.")
    property: str | None = Field(None, max_length=100)
    stale: bool | None = None


class EvaluationQuery(PagingQuery):
    model_id: str | None = Field(None, max_length=200)
    property: str | None = Field(None, max_length=100)
    subset: str | None = Field(None, max_length=200)


__all__ = [
    "CalculationQuery",
    "DocumentQuery",
    "EvaluationQuery",
    "MaterialQuery",
    "ModelQuery",
    "PagingQuery",
    "PredictionQuery",
    "QueryModel",
    "StructureQuery",
    "with_page_size",
]
