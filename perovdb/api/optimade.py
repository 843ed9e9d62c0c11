"""OPTIMADE ``/optimade/v1``: ``/info``, ``/structures`` (with ``filter``) and ``/structures/{id}``.

Filters are parsed with optimade's ``LarkParser`` and translated by its ``MongoTransformer`` through a
``StructureMapper`` subclass whose ``ALIASES`` map OPTIMADE fields to perovdb's stored ones; responses
are validated with optimade's own models. Mapping (OPTIMADE → stored):

==============================  ===========================
id                              structure_id
elements, nelements, nsites     the same
chemical_formula_reduced        reduced_formula (see below)
chemical_formula_descriptive    formula (e.g. "Cs8 Pb8 I24")
last_modified                   last_updated
_perovdb_mixing_type            perovskite.mixing_type
_perovdb_perovskite_formula     perovskite.formula
_perovdb_origin, _perovdb_phase, _perovdb_space_group_symbol, _perovdb_space_group_number,
_perovdb_volume, _perovdb_density, _perovdb_chemsys: the stored field of the same name
==============================  ===========================

``chemical_formula_reduced`` is served in OPTIMADE's alphabetical form ("CsI3Pb"); an equality filter
on it accepts that form or pymatgen's ("CsPbI3") and compares compositions. Other standard fields
(lattice_vectors, species, …) are served but not searchable (400).
"""

from __future__ import annotations

import warnings
from collections import Counter
from datetime import datetime, timezone
from functools import partial
from typing import Any

from fastapi import APIRouter, Query, Request
from lark.exceptions import LarkError
from optimade import __api_version__
from optimade.adapters.structures.utils import elements_ratios_from_species_at_sites, species_from_species_at_sites
from optimade.exceptions import BadRequest
from optimade.filterparser import LarkParser
from optimade.filtertransformers.mongo import MongoTransformer
from optimade.models import (
    BaseInfoAttributes,
    BaseInfoResource,
    InfoResponse,
    StructureResource,
    StructureResponseMany,
    StructureResponseOne,
)
from optimade.models.utils import anonymize_formula, reduce_formula
from optimade.server.config import ServerConfig
from optimade.server.mappers import StructureMapper
from pymatgen.core import Composition

from perovdb import __version__
from perovdb.api.security import ApiError
from perovdb.api.store import FastJSONResponse, Limits, in_database, next_page_url, query_page
from perovdb.db import Database
from perovdb.documents import naive_utc
from perovdb.query import check_filter

PREFIX = "perovdb"
BASE = "/optimade/v1"
PROVIDER = {
    "prefix": PREFIX,
    "name": "perovdb",
    "description": "Halide perovskite structures, DFT results and ML predictions.",
    "homepage": None,
}

#: stored fields an OPTIMADE filter may reach (first path component)
SEARCHABLE = frozenset({
    "structure_id", "elements", "nelements", "nsites", "reduced_formula", "formula", "last_updated",
    "perovskite", "origin", "phase", "space_group_symbol", "space_group_number", "volume", "density", "chemsys",
})  # fmt: skip

#: fields read to build a response
_READ = ["structure_id", "structure", "formula", "reduced_formula", "elements", "nsites", "last_updated",
         "perovskite", "origin", "phase", "space_group_symbol", "space_group_number", "volume", "density", "chemsys"]


class PerovdbStructureMapper(StructureMapper):
    """OPTIMADE structure fields → perovdb's ``structures`` documents."""

    PROVIDER_FIELDS = (
        "mixing_type", "perovskite_formula", "origin", "phase", "space_group_symbol", "space_group_number",
        "volume", "density", "chemsys",
    )  # fmt: skip
    ALIASES = (
        ("id", "structure_id"),
        ("chemical_formula_reduced", "reduced_formula"),
        ("chemical_formula_descriptive", "formula"),
        ("last_modified", "last_updated"),
        ("_perovdb_mixing_type", "perovskite.mixing_type"),
        ("_perovdb_perovskite_formula", "perovskite.formula"),
    )


_CONFIG = ServerConfig(provider=PROVIDER, provider_fields={}, base_url=None)
MAPPER = PerovdbStructureMapper(_CONFIG)
_PARSER = LarkParser(version=(1, 2, 0))
_TRANSFORMER = MongoTransformer(mapper=MAPPER)


def _parse_error(detail: str) -> str:
    """optimade's "Unable to parse filter … Lark traceback: …" as one line: what was unexpected, what was expected."""
    reason = detail.split("Lark traceback:", 1)[-1]
    lines = [line.strip(" \t*") for line in reason.splitlines()]
    lines = list(dict.fromkeys(line for line in lines if line))  # lark lists some tokens twice
    return "cannot parse filter: " + " ".join(lines)


def translate(filter_text: str | None) -> dict[str, Any]:
    """An OPTIMADE filter as a checked Mongo filter on perovdb's ``structures``."""
    if not filter_text or not filter_text.strip():
        return {}
    try:
        tree = _PARSER.parse(filter_text)
    except BadRequest as exc:
        raise ApiError(400, _parse_error(str(exc.detail))) from None
    except LarkError as exc:  # pragma: no cover - LarkParser wraps these as BadRequest
        raise ApiError(400, f"cannot parse filter: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown provider prefixes are UNKNOWN, as the spec says
        try:
            query = _TRANSFORMER.transform(tree)
        except BadRequest:
            raise
        except NotImplementedError as exc:
            raise ApiError(501, str(exc), "Not Implemented") from None
        except Exception as exc:  # lark wraps errors of the transformer
            inner = getattr(exc, "orig_exc", exc)
            if isinstance(inner, BadRequest):
                raise inner from None
            if isinstance(inner, NotImplementedError):
                raise ApiError(501, str(inner), "Not Implemented") from None
            raise ApiError(400, f"cannot translate filter: {type(inner).__name__}: {inner}") from None
    query = _normalise(query)
    check_filter(query)
    return query


def _normalise(node: Any, key: str | None = None) -> Any:
    """Check fields, convert timestamps to naive UTC and reduced formulae to pymatgen's spelling."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if not k.startswith("$"):
                root = k.split(".")[0]
                if root not in SEARCHABLE and not (root.startswith("_") and not root.startswith(f"_{PREFIX}_")):
                    name = MAPPER.get_optimade_field(k)
                    raise BadRequest(detail=f"'{name}' is served but not searchable on this server")
            out[k] = _normalise(v, k if not k.startswith("$") else key)
        return out
    if isinstance(node, list):
        return [_normalise(v, key) for v in node]
    if isinstance(node, datetime):
        return naive_utc(node)
    if key == "reduced_formula" and isinstance(node, str):
        try:
            return Composition(node).reduced_formula
        except Exception:  # not a formula: compare as given
            return node
    return node


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


#: attributes that need the sites of the stored structure
_SITE_FIELDS = frozenset({"lattice_vectors", "cartesian_site_positions", "species_at_sites", "species",
                          "elements_ratios", "chemical_formula_reduced", "chemical_formula_anonymous"})


def attributes_of(doc: dict[str, Any], wanted: set[str] | None = None) -> dict[str, Any]:
    """OPTIMADE attributes of a stored structure document, straight from the stored pymatgen dict
    (``wanted``: only these; sites are read only when a site-derived attribute is wanted)."""
    perovskite = doc.get("perovskite") or {}
    extra = {
        "mixing_type": perovskite.get("mixing_type"),
        "perovskite_formula": perovskite.get("formula"),
        **{name: doc.get(name) for name in
           ("origin", "phase", "space_group_symbol", "space_group_number", "volume", "density", "chemsys")},
    }
    attributes: dict[str, Any] = {
        "last_modified": _utc(doc.get("last_updated")),
        "elements": doc["elements"],
        "nelements": len(doc["elements"]),
        "nsites": doc["nsites"],
        "chemical_formula_descriptive": doc.get("formula"),
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "structure_features": [],
        **{f"_{PREFIX}_{k}": v for k, v in extra.items()},
    }
    if wanted is None or wanted & _SITE_FIELDS:
        structure = doc["structure"]
        sites = structure["sites"]
        species_at_sites = [site["species"][0]["element"] for site in sites]
        attributes.update(
            lattice_vectors=structure["lattice"]["matrix"],
            cartesian_site_positions=[site["xyz"] for site in sites],
            species_at_sites=species_at_sites,
            species=[sp.model_dump(mode="json", exclude_unset=True) for sp in species_from_species_at_sites(species_at_sites)],
            elements_ratios=elements_ratios_from_species_at_sites(species_at_sites),
        )
        counts = Counter(species_at_sites)
        formula = "".join(f"{el}{counts[el]}" for el in sorted(counts))
        attributes["chemical_formula_reduced"] = reduce_formula(formula)
        attributes["chemical_formula_anonymous"] = anonymize_formula(formula)
    if wanted is not None:
        attributes = {k: v for k, v in attributes.items() if k in wanted}
    return attributes


def to_resource(doc: dict[str, Any]) -> StructureResource:
    """A stored structure document as a validated OPTIMADE structure resource."""
    return StructureResource(id=doc["structure_id"], type="structures", attributes=attributes_of(doc))


def resource_json(doc: dict[str, Any], response_fields: str | None) -> dict[str, Any]:
    """One entry of a response: validated in full, or (``response_fields``) only the asked attributes."""
    if not response_fields:
        return to_resource(doc).model_dump(mode="json", exclude_unset=True)
    wanted = {f.strip() for f in response_fields.split(",") if f.strip()}
    attributes = attributes_of(doc, wanted)
    if isinstance(attributes.get("last_modified"), datetime):
        attributes["last_modified"] = attributes["last_modified"].isoformat().replace("+00:00", "Z")
    return {"id": doc["structure_id"], "type": "structures", "attributes": attributes}


def _meta(request: Request, returned: int, available: int | None, more: bool) -> dict[str, Any]:
    query = request.url.path[len(BASE):] + (f"?{request.url.query}" if request.url.query else "")
    return {
        "query": {"representation": query},
        "api_version": __api_version__,
        "more_data_available": more,
        "time_stamp": datetime.now(timezone.utc),
        "data_returned": returned,
        "data_available": available,
        "provider": PROVIDER,
        "implementation": {"name": "perovdb", "version": __version__},
    }


def _sort(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    sort: dict[str, int] = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name = item.lstrip("-")
        backend = MAPPER.get_backend_field(name)
        if backend.split(".")[0] not in SEARCHABLE:
            raise BadRequest(detail=f"cannot sort on '{name}'")
        sort[backend] = -1 if item.startswith("-") else 1
    return sort


def optimade_router(limits: Limits) -> APIRouter:
    """The OPTIMADE routes, reading the database from ``request.app.state.db``."""
    router = APIRouter(prefix=BASE, tags=["optimade"])

    @router.get("/info", response_model=InfoResponse, summary="OPTIMADE base info")
    async def info(request: Request) -> FastJSONResponse:
        """What this OPTIMADE implementation serves."""
        base = str(request.base_url).rstrip("/") + BASE
        attributes = BaseInfoAttributes(
            api_version=__api_version__,
            available_api_versions=[{"url": base, "version": __api_version__}],
            formats=["json"],
            entry_types_by_format={"json": ["structures"]},
            available_endpoints=["info", "structures"],
            is_index=False,
        )
        response = InfoResponse(
            data=BaseInfoResource(id="/", type="info", attributes=attributes),
            meta=_meta(request, 1, None, False),
        )
        return FastJSONResponse(response.model_dump(mode="json", exclude_unset=True))

    @router.get("/structures", response_model=StructureResponseMany, summary="Search structures (OPTIMADE filter)")
    async def structures(
        request: Request,
        filter: str | None = Query(None, max_length=2000, description='e.g. elements HAS ALL "Pb","I" AND nsites<=40'),
        page_limit: int = Query(20, ge=1, le=limits.max_limit, description=f"Page size (max {limits.max_limit})."),
        page_offset: int = Query(0, ge=0, description="Results to skip."),
        sort: str | None = Query(None, description="Comma list of fields, '-' for descending."),
        response_fields: str | None = Query(None, description="Comma list of attributes to return."),
        response_format: str = Query("json", pattern="^json$"),
    ) -> FastJSONResponse:
        """Structures matching an OPTIMADE filter, paged."""
        db: Database = request.app.state.db
        criteria = translate(filter)
        wanted = {f.strip() for f in (response_fields or "").split(",") if f.strip()}
        read = _READ if not wanted or wanted & _SITE_FIELDS else [f for f in _READ if f != "structure"]
        docs, total = await in_database(db, partial(query_page, db, "structures", criteria, fields=read,
                                                    sort=_sort(sort), skip=page_offset, limit=page_limit,
                                                    max_time_ms=limits.max_time_ms))
        available = await in_database(db, db.structures.count) if criteria else total
        total = total or 0
        more = page_offset + len(docs) < total
        page = {"page_offset": page_offset + len(docs), "page_limit": page_limit}
        next_link = next_page_url(request, page) if more else None
        envelope = StructureResponseMany(
            data=[], meta=_meta(request, total, available, more),
            links={"next": next_link},
        )
        body = envelope.model_dump(mode="json", exclude_unset=True)
        body["data"] = [resource_json(doc, response_fields) for doc in docs]
        return FastJSONResponse(body)

    @router.get("/structures/{structure_id}", response_model=StructureResponseOne, summary="One structure (OPTIMADE)")
    async def structure(request: Request, structure_id: str, response_fields: str | None = None) -> FastJSONResponse:
        """One structure by id."""
        db: Database = request.app.state.db
        docs, _ = await in_database(db, partial(query_page, db, "structures", {"structure_id": structure_id},
                                                fields=_READ, limit=1, count=False))
        if not docs:
            raise ApiError(404, f"no structure with id {structure_id!r}")
        envelope = StructureResponseOne(data=None, meta=_meta(request, 1, None, False), links={"next": None})
        body = envelope.model_dump(mode="json", exclude_unset=True)
        body["data"] = resource_json(docs[0], response_fields)
        return FastJSONResponse(body)

    return router


__all__ = ["MAPPER", "PerovdbStructureMapper", "attributes_of", "optimade_router", "to_resource", "translate"]
