"""The HTTP API: ``create_app(db, settings)`` → a FastAPI app over one perovdb ``Database``.

Read-only by default: ``POST /ingest`` answers 403 unless ``settings.api_key`` is set, and then needs
the key in ``X-API-Key``. Lists are paged with ``skip`` and ``limit``; a ``limit`` above the maximum
(``Limits.max_limit``, 1000 by default) is refused with 400, not silently capped.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from perovdb import __version__
from perovdb.api.fields import check_typed_filter, parse_fields, parse_sort
from perovdb.api.lineage import prediction_lineage
from perovdb.api.optimade import optimade_router
from perovdb.api.params import (
    CalculationQuery,
    DocumentQuery,
    EvaluationQuery,
    MaterialQuery,
    ModelQuery,
    PagingQuery,
    PredictionQuery,
    StructureQuery,
    with_page_size,
)
from perovdb.api.routing import DirectRoute
from perovdb.api.schemas import (
    RESOURCE_MODELS,
    ErrorResponse,
    IngestResult,
    Lineage,
    Page,
)
from perovdb.api.schemas import Stats as StatsModel
from perovdb.api.security import (
    ApiError,
    Guard,
    install_error_handlers,
    require_api_key,
)
from perovdb.api.store import (
    FastJSONResponse,
    Limits,
    in_database,
    next_page_url,
    query_page,
)
from perovdb.config import Settings
from perovdb.db import Database
from perovdb.documents import COLLECTIONS, PROPERTIES, LevelOfTheory
from perovdb.query import stats, structure_criteria

STATIC = Path(__file__).resolve().parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid parameter or unsafe filter."},
    404: {"model": ErrorResponse, "description": "No such document."},
}
#: upload names the ingest endpoint accepts (the readers pick the format from the name)
UPLOAD_NAME = re.compile(r"^(?:[\w.+-]+\.(?:cif|vasp|poscar|json|csv)|POSCAR[\w.+-]*|CONTCAR[\w.+-]*)$", re.IGNORECASE)
_RANGE_PARAM = re.compile(r"^(?P<prop>[a-z_]+?)(?:_(?P<level>[a-z0-9]+))?_(?P<bound>min|max)$")
_LEVELS = {level.value.lower(): level.value for level in LevelOfTheory}


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _user_filter(collection: str, text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        criteria = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"filter is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(criteria, dict):
        raise ApiError(400, "filter must be a JSON object")
    return check_typed_filter(collection, criteria)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    """The entries whose value was given (not None)."""
    return {k: v for k, v in values.items() if v is not None}


def _and(*clauses: dict[str, Any] | None) -> dict[str, Any]:
    present = [c for c in clauses if c]
    if not present:
        return {}
    return present[0] if len(present) == 1 else {"$and": present}


def property_ranges(params: dict[str, str]) -> dict[str, Any] | None:
    """Materials filters from ``<property>[_<level>]_(min|max)`` parameters, e.g. ``band_gap_hse06_min=1.5``
    (``properties.band_gap.HSE06.value >= 1.5``); without a level, the preferred value is used."""
    clauses: dict[str, dict[str, float]] = {}
    for name, raw in params.items():
        match = _RANGE_PARAM.match(name)
        if not match:
            continue
        prop, level = match["prop"], match["level"]
        if level and level not in _LEVELS:  # e.g. "band_gap_min" parsed as prop="band", level="gap"
            prop, level = f"{prop}_{level}", None
        if prop not in PROPERTIES:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be a number, got {raw!r}") from None
        path = f"properties.{prop}.{_LEVELS[level]}.value" if level else f"preferred.{prop}.value"
        clauses.setdefault(path, {})["$gte" if match["bound"] == "min" else "$lte"] = value
    return clauses or None


def create_app(db: Database, settings: Settings, limits: Limits | None = None) -> FastAPI:
    """The perovdb HTTP API and web page over ``db`` (held on ``app.state``; no global state)."""
    limits = limits or Limits.from_settings(settings)
    app = FastAPI(
        title="perovdb",
        default_response_class=FastJSONResponse,
        version=__version__,
        description="Halide perovskite structures, DFT results, ML models and predictions. Read-only unless "
        "an API key is configured. Every error is `{\"error\": {\"status\", \"title\", \"detail\"}}`.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.router.route_class = DirectRoute  # endpoints that read the request themselves skip FastAPI's resolution
    app.state.db = db
    app.state.settings = settings
    app.state.limits = limits
    install_error_handlers(app)
    app.add_middleware(Guard, max_body_bytes=limits.max_body_bytes)

    page_size = limits.default_limit, limits.max_limit
    structures_query = with_page_size(StructureQuery, *page_size)
    calculations_query = with_page_size(CalculationQuery, *page_size)
    materials_query = with_page_size(MaterialQuery, *page_size)
    models_query = with_page_size(ModelQuery, *page_size)
    predictions_query = with_page_size(PredictionQuery, *page_size)
    evaluations_query = with_page_size(EvaluationQuery, *page_size)

    def listing(collection: str, query: type[PagingQuery], tags: list[str]) -> Callable[[Callable[..., Any]], Any]:
        """``@app.get`` of a list resource, its parameters documented from its query model."""
        return app.get(f"/{collection}", response_model=Page[RESOURCE_MODELS[collection]], responses=ERRORS,
                       tags=tags, openapi_extra=query.openapi())

    async def page(
        request: Request, query: PagingQuery, collection: str, *clauses: dict[str, Any] | None
    ) -> FastJSONResponse:
        """One page of ``collection`` matching every clause and the user's checked filter."""
        criteria = _and(*clauses, _user_filter(collection, query.filter))
        skip, limit = query.skip, query.limit
        docs, total = await in_database(db, partial(
            query_page, db, collection, criteria, fields=parse_fields(collection, query.fields),
            sort=parse_sort(collection, query.sort), skip=skip, limit=limit, max_time_ms=limits.max_time_ms))
        total = total or 0
        more = skip + len(docs) < total
        next_url = next_page_url(request, {"skip": skip + len(docs), "limit": limit}) if more else None
        body = {
            "data": docs,
            "meta": {"total": total, "returned": len(docs), "skip": skip, "limit": limit,
                     "more_data_available": more},
            "links": {"next": next_url},
        }
        return FastJSONResponse(body)

    def document(collection: str, id_name: str, tags: list[str]) -> Callable[[Callable[..., Any]], Any]:
        """``@app.get`` of one document of a resource, its ``fields`` parameter documented from ``DocumentQuery``."""
        return app.get(f"/{collection}/{{{id_name}}}", response_model=RESOURCE_MODELS[collection], responses=ERRORS,
                       tags=tags, openapi_extra=DocumentQuery.openapi())

    async def one(request: Request, collection: str, doc_id: str) -> FastJSONResponse:
        """The document of ``collection`` with id ``doc_id`` (404 when there is none)."""
        key = COLLECTIONS[collection][1]
        fields = parse_fields(collection, DocumentQuery.read(request).fields)
        docs, _ = await in_database(db, partial(query_page, db, collection, {key: doc_id}, fields=fields, limit=1,
                                                count=False, max_time_ms=limits.max_time_ms))
        if not docs:
            raise ApiError(404, f"no {collection[:-1]} with id {doc_id!r}")
        return FastJSONResponse(docs[0])

    # -- web page ----------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # -- resources ---------------------------------------------------------------------------
    @listing("structures", structures_query, ["data"])
    async def list_structures(request: Request) -> FastJSONResponse:
        """Crystal structures."""
        query = structures_query.read(request)
        simple: dict[str, Any] = {}
        if query.nsites_max is not None or query.nsites_min is not None:
            simple["nsites"] = _present({"$lte": query.nsites_max, "$gte": query.nsites_min})
        if query.mixing_type:
            simple["perovskite.mixing_type"] = query.mixing_type
        if query.origin:
            simple["origin"] = query.origin
        found = structure_criteria(query.formula, _split(query.elements))
        return await page(request, query, "structures", found, simple)

    @document("structures", "structure_id", ["data"])
    async def get_structure(structure_id: str, request: Request) -> FastJSONResponse:
        """One structure."""
        return await one(request, "structures", structure_id)

    @listing("calculations", calculations_query, ["data"])
    async def list_calculations(request: Request) -> FastJSONResponse:
        """DFT (and experimental) results."""
        query = calculations_query.read(request)
        simple: dict[str, Any] = {}
        if query.structure_id:
            simple["structure_id"] = {"$in": _split(query.structure_id)}
        if query.level_of_theory:
            simple["level_of_theory"] = LevelOfTheory.parse(query.level_of_theory).value
        if query.dataset:
            simple["source.dataset"] = query.dataset
        return await page(request, query, "calculations", simple)

    @listing("materials", materials_query, ["data"])
    async def list_materials(request: Request) -> FastJSONResponse:
        """Per-compound summaries. Any ``<property>[_<level>]_(min|max)`` works like the band-gap ranges,
        e.g. ``lattice_constant_pbe_max=6.2``."""
        query = materials_query.read(request)
        simple: dict[str, Any] = {}
        if query.nsites_max is not None:
            simple["nsites"] = {"$lte": query.nsites_max}
        if query.mixing_type:
            simple["perovskite.mixing_type"] = query.mixing_type
        ranges = property_ranges(dict(request.query_params))
        found = structure_criteria(query.formula, _split(query.elements))
        return await page(request, query, "materials", found, simple, ranges)

    @document("materials", "material_id", ["data"])
    async def get_material(material_id: str, request: Request) -> FastJSONResponse:
        """One material."""
        return await one(request, "materials", material_id)

    @listing("models", models_query, ["ml"])
    async def list_models(request: Request) -> FastJSONResponse:
        """Registered ML models."""
        query = models_query.read(request)
        given = {"target_property": query.target_property, "active": query.active, "name": query.name}
        return await page(request, query, "models", _present(given))

    @document("models", "model_id", ["ml"])
    async def get_model(model_id: str, request: Request) -> FastJSONResponse:
        """One model."""
        return await one(request, "models", model_id)

    @listing("predictions", predictions_query, ["ml"])
    async def list_predictions(request: Request) -> FastJSONResponse:
        """Model predictions."""
        query = predictions_query.read(request)
        simple = _present({"model_id": query.model_id, "property": query.property, "stale": query.stale})
        if query.structure_id:
            simple["structure_id"] = {"$in": _split(query.structure_id)}
        return await page(request, query, "predictions", simple)

    @listing("evaluations", evaluations_query, ["ml"])
    async def list_evaluations(request: Request) -> FastJSONResponse:
        """Model evaluations with their parity pairs."""
        query = evaluations_query.read(request)
        given = {"model_id": query.model_id, "property": query.property, "subset": query.subset}
        return await page(request, query, "evaluations", _present(given))

    @app.get("/provenance/{prediction_id}", response_model=Lineage, responses=ERRORS, tags=["ml"])
    async def provenance(prediction_id: str) -> FastJSONResponse:
        """Lineage of a prediction: structure (and its sources) → model (and its job) → prediction."""
        return FastJSONResponse(await in_database(db, partial(prediction_lineage, db, prediction_id)))

    @app.get("/stats", response_model=StatsModel, tags=["data"])
    async def get_stats() -> FastJSONResponse:
        """Counts per collection, level of theory, mixing type and origin."""
        return FastJSONResponse(await in_database(db, partial(stats, db)))

    # -- writes ------------------------------------------------------------------------------
    @app.post(
        "/ingest",
        response_model=IngestResult,
        tags=["write"],
        dependencies=[Depends(require_api_key)],
        responses={**ERRORS, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                   413: {"model": ErrorResponse}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}},
    )
    async def ingest_upload(
        request: Request,
        filename: str = Query(..., max_length=200,
                              description="Name of the file: *.cif, POSCAR*, CONTCAR*, *.vasp, *.json (pymatgen) or *.csv."),
        kind: str = Query("auto", pattern="^(auto|composition-table|multifidelity|id-prop|structures)$"),
        property_name: str | None = Query(None, alias="property", max_length=100),
        level: str | None = Query(None, max_length=50),
        dataset: str | None = Query(None, max_length=200),
        origin: str | None = Query(None, pattern="^(relaxed|generated|experimental|unknown)$"),
    ) -> FastJSONResponse:
        """Upload one CIF, POSCAR, pymatgen JSON or CSV file (the raw bytes as the request body) and ingest
        it. Needs ``X-API-Key``. Flows (training, prediction) are not launched from the API."""
        if not UPLOAD_NAME.match(filename):
            raise ApiError(400, "filename must be a plain name ending in .cif, .vasp, .poscar, .json or .csv, or "
                                "POSCAR*/CONTCAR*")
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "send the file as the raw request body (curl --data-binary @FILE), not as a form")
        if kind == "id-prop":
            raise ApiError(400, "kind id-prop reads a folder (id_prop.csv beside its structure files), not one "
                                "uploaded file: ingest the folder with the CLI, or upload the structures one by one")
        content = await request.body()
        if not content:
            raise ApiError(400, "empty upload")
        from perovdb.ingest import ingest

        def run() -> Any:
            with tempfile.TemporaryDirectory(prefix="perovdb-upload-") as folder:
                path = Path(folder) / filename
                path.write_bytes(content)
                # workers=1: one uploaded file is small, and a server's threads must not fork
                return ingest(db, path, kind=kind, property_name=property_name, level=level,  # type: ignore[arg-type]
                              dataset=dataset or f"upload/{filename}", origin=origin, workers=1)  # type: ignore[arg-type]

        report = await in_database(db, run)
        result = IngestResult(
            filename=filename,
            read=report.read,
            skipped_unchanged=report.skipped_unchanged,
            rejected=[str(r) for r in report.rejected],
            structures=vars(report.structures),
            calculations=vars(report.calculations),
            ok=report.ok,
        )
        return FastJSONResponse(result.model_dump(), status_code=201 if report.ok else 422)

    app.include_router(optimade_router(limits))
    return app


__all__ = ["Limits", "create_app", "property_ranges"]
