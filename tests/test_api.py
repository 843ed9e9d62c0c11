"""HTTP API on real ingested data (rows of the HSE06 and PBE tables, the JARVIS sample), on memory and monty.

Data are ingested once into memory, materials built, a few model/prediction/evaluation documents added,
and the same documents copied into a fresh embedded (monty) store; every test runs on both.
Limits: ``limit`` above the maximum (1000) is refused with 400, never silently capped.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pymatgen.core import Composition, Structure

from conftest import DATA, HSE_TABLE, JARVIS, PBE_TABLE, make_database
from perovdb import Database
from perovdb.api import Limits, create_app
from perovdb.api.routing import DirectRoute, is_direct
from perovdb.config import Settings
from perovdb.documents import EvaluationDoc, ModelDoc, PredictionDoc, StructureDoc, content_hash
from perovdb.ingest import ingest
from perovdb.query import find

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # montydb's $elemMatch

#: real rows, fewer of them, so the whole module runs in well under a minute on both backends
HSE_EVERY = 3
PBE_ROWS = 40  # the first rows of the PBE table: PBE beside HSE06 values for some materials
API_KEY = "test-key-0123456789"
COPIED = ("structures", "calculations", "materials", "models", "predictions", "evaluations")


def _build_materials(db: Database) -> None:
    from perovdb.builders.materials import MaterialsBuilder

    builder = MaterialsBuilder(db.structures, db.calculations, db.materials)
    builder.run()


def _ml_documents(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Two models with predictions on HSE06 structures and their evaluations (parity pairs)."""
    hse = {c["structure_id"]: c["properties"]["band_gap"]
           for c in find(db, "calculations", {"level_of_theory": "HSE06"}) if c["properties"].get("band_gap")}
    structures = {s["structure_id"]: s for s in find(db, "structures", {"structure_id": {"$in": sorted(hse)}})}
    ids = sorted(hse)[:30]
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n, (scale, shift) in enumerate([(0.9, 0.2), (1.05, -0.1)], start=1):
        model = ModelDoc(
            model_id=f"model-{n:04d}", name=f"alignn-bandgap-{n}", version=1, architecture="alignn",
            origin="trained", target_property="band_gap", target_level_of_theory="HSE06", unit="eV",
            graph_settings={"cutoff": 8.0, "max_neighbors": 12}, weights_key=f"weights/model-{n:04d}.pt",
            weights_sha256=content_hash(["weights", n], 64), job_uuid=f"0000000{n}-aaaa-bbbb-cccc-dddddddddddd",
            metrics={"test_mae": 0.3},
        )
        out["models"].append(model.model_dump(mode="json"))
        pairs = []
        for sid in ids:
            digest = StructureDoc.model_validate(structures[sid]).content_digest()
            value = round(scale * hse[sid] + shift, 4)
            out["predictions"].append(PredictionDoc(
                prediction_id=PredictionDoc.make_id(model.model_id, sid, digest), model_id=model.model_id,
                structure_id=sid, structure_digest=digest, property="band_gap", unit="eV", value=value,
                job_uuid=f"pred-job-{n}",
            ).model_dump(mode="json"))
            pairs.append({"structure_id": sid, "predicted": value, "reference": hse[sid]})
        errors = [abs(p["predicted"] - p["reference"]) for p in pairs]
        out["evaluations"].append(EvaluationDoc(
            evaluation_id=EvaluationDoc.make_id(model.model_id, "band_gap", "HSE06", "all"), model_id=model.model_id,
            property="band_gap", reference_level_of_theory="HSE06", unit="eV", n=len(pairs),
            mae=sum(errors) / len(errors), max_error=max(errors), pairs=pairs,
        ).model_dump(mode="json"))
    return out


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """Real data ingested once into memory, materials built, ML documents added."""
    db = make_database("memory", tmp_path_factory.mktemp("memory"))
    tables = tmp_path_factory.mktemp("tables")
    hse = tables / "HSE_data.csv"  # every third row (all mixing types) and the CsPb* rows
    rows = HSE_TABLE.read_text().splitlines(keepends=True)
    hse.write_text("".join(r for i, r in enumerate(rows) if i % HSE_EVERY == 0 or r.startswith("CsPb")))
    assert ingest(db, hse, dataset="mannodi_halide_perovskites/HSE_data.csv").ok
    pbe = tables / "PBE_data.csv"
    pbe.write_text("".join(PBE_TABLE.read_text().splitlines(keepends=True)[:PBE_ROWS]))
    assert ingest(db, pbe, dataset="mannodi_halide_perovskites/PBE_data.csv").ok
    assert ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW").ok
    _build_materials(db)
    for name, docs in _ml_documents(db).items():
        db.store(name).update(docs, key=db.store(name).key)
    yield db
    db.close()


@pytest.fixture(scope="module", params=["memory", "monty"])
def api_db(request: pytest.FixtureRequest, source_db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The seeded database, once per backend (monty gets a copy of the same documents)."""
    if request.param == "memory":
        yield source_db
        return
    db = make_database("monty", tmp_path_factory.mktemp("monty"))
    for name in COPIED:
        docs = [{k: v for k, v in d.items() if k != "_id"} for d in source_db.store(name).query({})]
        db.store(name).update(docs, key=db.store(name).key)
    yield db
    db.close()


@pytest.fixture(scope="module")
def client(api_db: Database) -> TestClient:
    return TestClient(create_app(api_db, Settings(uri=api_db.uri)))


@pytest.fixture(scope="module")
def memory_client(source_db: Database) -> TestClient:
    """For checks that do not depend on the backend (run once)."""
    return TestClient(create_app(source_db, Settings(uri=source_db.uri)))


@pytest.fixture(scope="module")
def all_structures(api_db: Database) -> list[dict[str, Any]]:
    """Every structure (without its sites): the expected answers are computed from these in plain Python."""
    fields = ["structure_id", "elements", "nelements", "nsites", "formula", "reduced_formula", "perovskite",
              "origin", "space_group_number"]
    return find(api_db, "structures", {}, fields=fields)


def _ids(body: dict[str, Any], key: str) -> set[str]:
    return {d[key] for d in body["data"]}


# -- resources ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "key", "document"),
    [("/structures", "structure_id", "structures"), ("/calculations", "calculation_id", "calculations"),
     ("/materials", "material_id", "materials"), ("/models", "model_id", "models"),
     ("/predictions", "prediction_id", "predictions"), ("/evaluations", "evaluation_id", "evaluations")],
)
def test_every_list_resource(client, api_db, path, key, document):
    from perovdb.documents import COLLECTIONS

    body = client.get(path, params={"limit": 1000, "fields": key}).json()
    assert body["meta"]["total"] == api_db.store(document).count() > 0
    assert len(body["data"]) == body["meta"]["returned"] == min(1000, body["meta"]["total"])
    assert all(set(d) == {key} for d in body["data"])
    model = COLLECTIONS[document][0]
    for doc in client.get(path, params={"limit": 10}).json()["data"]:  # stored documents: they validate
        model.model_validate(doc)


@pytest.mark.parametrize(("path", "collection", "key"), [
    ("/structures/{}", "structures", "structure_id"), ("/materials/{}", "materials", "material_id"),
    ("/models/{}", "models", "model_id")])
def test_get_one_and_404(client, api_db, path, collection, key):
    doc = find(api_db, collection, {}, limit=1)[0]
    got = client.get(path.format(doc[key]))
    assert got.status_code == 200 and got.json()[key] == doc[key]
    missing = client.get(path.format("nope-404"))
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == 404 and "nope-404" in missing.json()["error"]["detail"]


def test_structure_simple_filters_match_plain_python(client, all_structures):
    body = client.get("/structures", params={"elements": "Pb,I", "nsites_max": 40, "limit": 1000,
                                             "fields": "structure_id"}).json()
    expected = {d["structure_id"] for d in all_structures if {"Pb", "I"} <= set(d["elements"]) and d["nsites"] <= 40}
    assert expected and _ids(body, "structure_id") == expected
    body = client.get("/structures", params={"mixing_type": "Pure", "limit": 1000, "fields": "structure_id"}).json()
    expected = {d["structure_id"] for d in all_structures if (d.get("perovskite") or {}).get("mixing_type") == "Pure"}
    assert expected and _ids(body, "structure_id") == expected
    body = client.get("/structures", params={"formula": "CsPbI3", "limit": 1000}).json()
    expected = {d["structure_id"] for d in all_structures if d["reduced_formula"] == "CsPbI3"
                or (d.get("perovskite") or {}).get("formula") == "CsPbI3"}
    assert expected and _ids(body, "structure_id") == expected


def test_fields_projection_and_sort(client):
    body = client.get("/structures", params={"fields": "structure_id,nsites", "sort": "-nsites", "limit": 50}).json()
    assert all(set(d) == {"structure_id", "nsites"} for d in body["data"])
    sizes = [d["nsites"] for d in body["data"]]
    assert sizes == sorted(sizes, reverse=True)
    nested = client.get("/materials", params={"fields": "material_id,preferred.band_gap.value", "limit": 5}).json()
    assert all(set(d) <= {"material_id", "preferred"} for d in nested["data"])
    bad = client.get("/structures", params={"fields": "structure_id,password"})
    assert bad.status_code == 400 and "password" in bad.json()["error"]["detail"]
    assert client.get("/structures", params={"sort": "$natural"}).status_code == 400


def test_material_band_gap_ranges(client, api_db):
    materials = find(api_db, "materials", {})

    def gap(m, level):
        return ((m.get("properties") or {}).get("band_gap") or {}).get(level, {}).get("value")

    body = client.get("/materials", params={"band_gap_hse06_min": 1.5, "band_gap_hse06_max": 2.5, "limit": 1000, "fields": "material_id"}).json()
    expected = {m["material_id"] for m in materials if gap(m, "HSE06") is not None and 1.5 <= gap(m, "HSE06") <= 2.5}
    assert expected and _ids(body, "material_id") == expected
    body = client.get("/materials", params={"band_gap_pbe_max": 2.0, "limit": 1000, "fields": "material_id"}).json()
    expected = {m["material_id"] for m in materials if gap(m, "PBE") is not None and gap(m, "PBE") <= 2.0}
    assert expected and _ids(body, "material_id") == expected
    both = [m for m in materials if gap(m, "PBE") is not None and gap(m, "HSE06") is not None]
    assert both, "the PBE subset shares materials with the HSE06 table"
    body = client.get("/materials", params={"lattice_constant_max": 6.0, "limit": 1000, "fields": "material_id"}).json()
    expected = {m["material_id"] for m in materials if m["preferred"].get("lattice_constant", {}).get("value", 99) <= 6.0}
    assert _ids(body, "material_id") == expected
    assert client.get("/materials", params={"band_gap_hse06_min": "abc"}).status_code == 400


def test_ml_resources_and_provenance(client, api_db):
    models = client.get("/models").json()["data"]
    assert {m["model_id"] for m in models} == {"model-0001", "model-0002"}
    preds = client.get("/predictions", params={"model_id": "model-0001", "limit": 1000}).json()
    assert preds["meta"]["total"] == 30
    sid = preds["data"][0]["structure_id"]
    by_structure = client.get("/predictions", params={"structure_id": sid}).json()["data"]
    assert {p["model_id"] for p in by_structure} == {"model-0001", "model-0002"}
    evaluation = client.get("/evaluations", params={"model_id": "model-0002"}).json()["data"][0]
    assert evaluation["n"] == len(evaluation["pairs"]) == 30
    lineage = client.get(f"/provenance/{preds['data'][0]['prediction_id']}").json()
    assert lineage["model"]["model_id"] == "model-0001"
    assert lineage["job_uuid"] == "00000001-aaaa-bbbb-cccc-dddddddddddd"
    assert lineage["structure"]["structure_id"] == sid and lineage["sources"]
    kinds = {n["kind"] for n in lineage["nodes"]}
    assert {"structure", "model", "prediction", "job", "source"} <= kinds
    relations = {(e["source"], e["target"]) for e in lineage["edges"]}
    assert (sid, lineage["prediction"]["prediction_id"]) in relations
    assert ("model-0001", lineage["prediction"]["prediction_id"]) in relations
    assert client.get("/provenance/pred-nope").status_code == 404


def test_pagination_walks_every_document_once(client, all_structures):
    seen: list[str] = []
    url: str | None = "/structures?fields=structure_id&limit=150"
    pages = 0
    while url:
        body = client.get(url).json()
        seen += [d["structure_id"] for d in body["data"]]
        url = body["links"]["next"]
        pages += 1
        assert pages < 50
    assert len(seen) == len(set(seen)) == len(all_structures)
    assert pages == -(-len(all_structures) // 150)


def test_total_is_the_count_of_matches_on_every_page(client, all_structures):
    """``meta.total`` on full pages, last pages (not counted again) and pages past the end."""
    expected = sum(1 for s in all_structures if {"Pb", "I"} <= set(s["elements"]) and s["nsites"] <= 40)
    assert 5 < expected < 1000
    for skip, limit in [(0, 5), (0, 1000), (3, 1000), (expected - 2, 5), (expected - 2, 2), (expected, 5),
                        (expected + 7, 5)]:  # fmt: skip
        body = client.get("/structures", params={"elements": "Pb,I", "nsites_max": 40, "fields": "structure_id",
                                                 "skip": skip, "limit": limit}).json()  # fmt: skip
        assert body["meta"]["total"] == expected, (skip, limit)
        assert body["meta"]["returned"] == max(0, min(limit, expected - skip))
        assert body["meta"]["more_data_available"] == (skip + limit < expected)


def test_limit_above_maximum_is_refused(client):
    assert client.get("/structures", params={"limit": 1000, "fields": "nsites"}).status_code == 200
    too_many = client.get("/structures", params={"limit": 1001})
    assert too_many.status_code == 400 and too_many.json()["error"]["title"] == "Bad Request"
    assert "limit" in too_many.json()["error"]["detail"]
    assert client.get("/structures", params={"limit": 0}).status_code == 400
    assert client.get("/structures", params={"skip": -1}).status_code == 400
    assert client.get("/optimade/v1/structures", params={"page_limit": 5000}).status_code == 400


@pytest.mark.parametrize(("path", "params", "named"), [
    ("/structures", {"nsites_max": "many"}, "nsites_max"),
    ("/structures", {"formula": "X" * 201}, "formula"),
    ("/materials", {"band_gap_hse06_max": "wide"}, "band_gap_hse06_max"),
    ("/predictions", {"stale": "perhaps"}, "stale"),
    ("/models", {"active": "sometimes", "skip": "-3"}, "active"),
    ("/materials/mat-none", {"fields": "x" * 2001}, "fields"),
])  # fmt: skip
def test_invalid_list_parameters_are_400_naming_the_parameter(client, path, params, named):
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["detail"]


def test_list_parameters_are_documented_with_their_bounds(api_db):
    spec = TestClient(create_app(api_db, Settings(uri=api_db.uri), Limits(max_limit=50, default_limit=7))).get(
        "/openapi.json").json()
    for path, names in [("/structures", {"formula", "elements", "nsites_max", "nsites_min", "mixing_type", "origin"}),
                        ("/calculations", {"structure_id", "level_of_theory", "dataset"}),
                        ("/materials", {"band_gap_min", "band_gap_pbe_max", "band_gap_hse06_min"}),
                        ("/models", {"target_property", "active", "name"}),
                        ("/predictions", {"model_id", "structure_id", "property", "stale"}),
                        ("/evaluations", {"model_id", "property", "subset"})]:  # fmt: skip
        parameters = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert names | {"filter", "fields", "sort", "skip", "limit"} <= set(parameters), path
        assert all(p["in"] == "query" and not p["required"] for p in parameters.values())
        limit = parameters["limit"]["schema"]
        assert (limit["default"], limit["minimum"], limit["maximum"]) == (7, 1, 50)
    for path in ["/structures/{structure_id}", "/materials/{material_id}", "/models/{model_id}"]:
        names = {(p["name"], p["in"]) for p in spec["paths"][path]["get"]["parameters"]}
        assert names == {(path.split("{")[1].rstrip("}"), "path"), ("fields", "query")}, path
    structures = {p["name"]: p for p in spec["paths"]["/structures"]["get"]["parameters"]}
    assert structures["formula"]["schema"]["anyOf"][0]["maxLength"] == 200
    assert "MAPbI3" in structures["formula"]["description"]


def test_custom_limits_apply(api_db):
    small = TestClient(create_app(api_db, Settings(uri=api_db.uri), Limits(max_limit=10, default_limit=5)))
    assert small.get("/structures").json()["meta"]["limit"] == 5
    assert small.get("/structures", params={"limit": 11}).status_code == 400


# -- OPTIMADE -------------------------------------------------------------------------------
def _mixing(d):
    return (d.get("perovskite") or {}).get("mixing_type")


OPTIMADE_FILTERS = [
    ('elements HAS ALL "Pb","I" AND nsites<=40', lambda d: {"Pb", "I"} <= set(d["elements"]) and d["nsites"] <= 40),
    ('elements HAS ANY "Sn","Ge"', lambda d: bool({"Sn", "Ge"} & set(d["elements"]))),
    ('elements HAS ONLY "Cs","Pb","I","Br"', lambda d: set(d["elements"]) <= {"Cs", "Pb", "I", "Br"}),
    ("nelements>=5", lambda d: d["nelements"] >= 5),
    ("elements LENGTH 3", lambda d: len(d["elements"]) == 3),
    ('NOT elements HAS "H"', lambda d: "H" not in d["elements"]),
    ('_perovdb_mixing_type="Pure"', lambda d: _mixing(d) == "Pure"),
    ('_perovdb_mixing_type="B-site mixed" AND elements HAS "Sn"', lambda d: _mixing(d) == "B-site mixed" and "Sn" in d["elements"]),
    ('_perovdb_origin="relaxed" AND nsites<10', lambda d: d["origin"] == "relaxed" and d["nsites"] < 10),
    ('chemical_formula_reduced="CsI3Pb"', lambda d: d["reduced_formula"] == Composition("CsPbI3").reduced_formula),
    ('chemical_formula_reduced="CsPbI3" OR chemical_formula_reduced="Si"', lambda d: d["reduced_formula"] in {"CsPbI3", "Si"}),
    ('chemical_formula_descriptive CONTAINS "Cs"', lambda d: "Cs" in d["formula"]),
    ("nsites>=40 AND nsites<=96 OR elements HAS \"Br\"", lambda d: 40 <= d["nsites"] <= 96 or "Br" in d["elements"]),
    ('last_modified > "2000-01-01T00:00:00Z"', lambda d: True),
    ('_perovdb_space_group_number=221', lambda d: d.get("space_group_number") == 221),
    ('_other_unknown=1', lambda d: False),  # another provider's field: UNKNOWN, matches nothing
]


@pytest.mark.parametrize(("text", "expected"), OPTIMADE_FILTERS, ids=[f for f, _ in OPTIMADE_FILTERS])
def test_optimade_filter_translation(client, all_structures, text, expected):
    want = {d["structure_id"] for d in all_structures if expected(d)}
    response = client.get("/optimade/v1/structures", params={"filter": text, "page_limit": 1000,
                                                              "response_fields": "nsites"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["data_returned"] == len(want)
    assert {d["id"] for d in body["data"]} == want


def test_optimade_filter_table_is_not_trivial(all_structures):
    counts = [sum(1 for d in all_structures if f(d)) for _, f in OPTIMADE_FILTERS]
    assert sum(1 for c in counts if 0 < c < len(all_structures)) >= 8


def test_optimade_envelope_and_paging(client):
    body = client.get("/optimade/v1/structures", params={"filter": 'elements HAS "Pb"', "page_limit": 3}).json()
    assert body["meta"]["api_version"].startswith("1.") and body["meta"]["more_data_available"] is True
    assert body["links"]["next"] and "page_offset=3" in body["links"]["next"]
    entry = body["data"][0]
    assert entry["type"] == "structures"
    attrs = entry["attributes"]
    for name in ("lattice_vectors", "cartesian_site_positions", "species_at_sites", "species", "elements",
                 "nsites", "chemical_formula_reduced", "last_modified", "_perovdb_mixing_type"):
        assert name in attrs
    assert len(attrs["cartesian_site_positions"]) == len(attrs["species_at_sites"]) == attrs["nsites"]
    from optimade.models import StructureResponseMany, StructureResponseOne

    StructureResponseMany(**body)  # the envelope is valid OPTIMADE
    one = client.get(f"/optimade/v1/structures/{entry['id']}").json()
    StructureResponseOne(**one)
    assert one["data"]["id"] == entry["id"]
    # the served reduced formula finds the entry again
    again = client.get("/optimade/v1/structures", params={
        "filter": f'chemical_formula_reduced="{attrs["chemical_formula_reduced"]}" AND id="{entry["id"]}"'}).json()
    assert [d["id"] for d in again["data"]] == [entry["id"]]
    info = client.get("/optimade/v1/info").json()
    assert info["data"]["attributes"]["available_endpoints"] == ["info", "structures"]
    assert client.get("/optimade/v1/structures/st-missing").status_code == 404


@pytest.mark.parametrize("text", ['elements HAS ALL "Pb" AND', "nsites <<< 3", "lattice_vectors=1", "unknownfield=1"])
def test_optimade_bad_filters_are_400(client, text):
    response = client.get("/optimade/v1/structures", params={"filter": text})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["status"] == 400 and body["errors"][0]["status"] == "400"
    assert "traceback" not in response.text.lower() and "\n" not in body["error"]["detail"]


# -- OpenAPI --------------------------------------------------------------------------------
def test_openapi_document_is_valid_and_lists_every_path(memory_client):
    spec = memory_client.get("/openapi.json").json()
    for path in ["/structures", "/structures/{structure_id}", "/calculations", "/materials",
                 "/materials/{material_id}", "/models", "/models/{model_id}", "/predictions", "/evaluations",
                 "/provenance/{prediction_id}", "/ingest", "/optimade/v1/info", "/optimade/v1/structures",
                 "/optimade/v1/structures/{structure_id}"]:
        assert path in spec["paths"], path
    assert "Structure" in spec["components"]["schemas"] and "Lineage" in spec["components"]["schemas"]
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)


# -- security -------------------------------------------------------------------------------
@pytest.mark.parametrize("criteria", [
    {"$where": "sleep(1000)"},
    {"nsites": {"$gt": 1}, "$or": [{"$function": {"body": "return 1", "args": [], "lang": "js"}}]},
    {"$expr": {"$accumulator": {"init": "function(){}"}}},
    {"$lookup": {"from": "models", "localField": "a", "foreignField": "b", "as": "c"}},
    {"reduced_formula": {"$gt": ""}},
    {"structure_id": {"$regex": ".*"}},
    {"structure_id": {"$ne": {"$gt": ""}}},
    {"reduced_formula": {"$in": [{"$gt": ""}]}},
    {"no_such_field": 1},
    ["not", "an", "object"],
    {"nsites": {"$not": 5}},
    {"formula": {"$not": "abc"}},
    {"nsites": {"$in": 5}},
])
def test_unsafe_filters_are_refused(client, criteria):
    response = client.get("/structures", params={"filter": json.dumps(criteria)})
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


def test_typed_filter_works(client, all_structures):
    criteria = {"nsites": {"$lte": 10}, "origin": "relaxed", "elements": {"$all": ["Si"]}}
    body = client.get("/structures", params={"filter": json.dumps(criteria), "limit": 1000,
                                             "fields": "structure_id"}).json()
    expected = {d["structure_id"] for d in all_structures
                if d["nsites"] <= 10 and d["origin"] == "relaxed" and "Si" in d["elements"]}
    assert _ids(body, "structure_id") == expected


def test_operator_objects_in_string_params_are_plain_strings(client):
    for params in ({"formula": '{"$gt": ""}'}, {"mixing_type": '{"$ne": null}'}, {"elements": '{"$gt":""}'},
                   {"origin[$ne]": "x"}):
        response = client.get("/structures", params={**params, "fields": "structure_id"})
        if "origin[$ne]" in params:  # PHP-style keys are unknown parameters: ignored, all documents
            assert response.status_code == 200
            continue
        assert response.status_code == 200 and response.json()["meta"]["total"] == 0
    assert client.get("/structures/" + '{"$gt": ""}').status_code == 404
    assert client.get("/predictions", params={"model_id": '{"$ne": 1}'}).json()["meta"]["total"] == 0


def test_writes_are_disabled_without_a_key(client):
    response = client.post("/ingest", params={"filename": "x.cif"}, content=b"data")
    assert response.status_code == 403 and "disabled" in response.json()["error"]["detail"]
    assert client.put("/structures").status_code == 405
    assert client.delete("/structures/abc").status_code == 405


def test_api_key_and_upload(api_db, caplog):
    caplog.set_level(logging.DEBUG)
    keyed = TestClient(create_app(api_db, Settings(uri=api_db.uri, api_key=API_KEY)))
    cif = sorted((DATA / "mannodi_multifidelity_structures" / "PBE-relaxed_cif_files").glob("*.cif"))[0]
    params = {"filename": cif.name, "origin": "relaxed"}
    assert keyed.post("/ingest", params=params, content=cif.read_bytes()).status_code == 401
    wrong = keyed.post("/ingest", params=params, content=cif.read_bytes(), headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 403
    bad_name = keyed.post("/ingest", params={"filename": "../../etc/passwd"}, content=b"x",
                          headers={"X-API-Key": API_KEY})
    assert bad_name.status_code == 400
    form = keyed.post("/ingest", params=params, files={"file": (cif.name, cif.read_bytes())}, headers={"X-API-Key": API_KEY})
    assert form.status_code == 400 and "--data-binary" in form.json()["error"]["detail"]
    folder_kind = keyed.post("/ingest", params={"filename": "id_prop.csv", "kind": "id-prop", "property": "band_gap"},
                             content=b"a.vasp,1.0\n", headers={"X-API-Key": API_KEY})
    assert folder_kind.status_code == 400 and "folder" in folder_kind.json()["error"]["detail"]
    ok = keyed.post("/ingest", params=params, content=cif.read_bytes(), headers={"X-API-Key": API_KEY})
    assert ok.status_code == 201, ok.text
    report = ok.json()
    assert report["ok"] and report["read"] == 1
    assert report["structures"]["new"] + report["structures"]["updated"] + report["structures"]["unchanged"] == 1
    found = keyed.get("/structures", params={"filter": json.dumps({"sources.dataset": f"upload/{cif.name}"})}).json()
    assert found["meta"]["total"] == 1
    as_json = keyed.post("/ingest", params={"filename": "cs.json"}, headers={"X-API-Key": API_KEY},
                         content=Structure.from_file(cif).to_json().encode())  # pymatgen JSON, as the CLI reads it
    assert as_json.status_code == 201 and as_json.json()["read"] == 1, as_json.text
    assert API_KEY not in caplog.text


def test_oversized_body_is_413(api_db):
    keyed = TestClient(create_app(api_db, Settings(uri=api_db.uri, api_key=API_KEY), Limits(max_body_bytes=1000)))
    response = keyed.post("/ingest", params={"filename": "big.csv"}, content=b"x" * 5000,
                          headers={"X-API-Key": API_KEY})
    assert response.status_code == 413 and response.json()["error"]["status"] == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(10):
            yield b"y" * 500

    streamed = keyed.post("/ingest", params={"filename": "big.csv"}, content=chunks(), headers={"X-API-Key": API_KEY})
    assert streamed.status_code == 413


class _BrokenDatabase:
    """A database whose every read fails with a message full of secrets."""

    backend = "mongodb"
    uri = "mongodb://admin:s3cret@db.internal:27017/perovdb"

    def store(self, name: str) -> Any:
        raise RuntimeError(f"connection to {self.uri} refused\nTraceback (most recent call last): ...")

    def __getattr__(self, name: str) -> Any:
        return self.store(name)


@pytest.mark.parametrize("path", ["/structures", "/materials/x", "/optimade/v1/structures", "/provenance/p", "/stats"])
def test_errors_never_leak_internals(path):
    client = TestClient(create_app(_BrokenDatabase(), Settings(uri="memory://")), raise_server_exceptions=False)  # type: ignore[arg-type]
    response = client.get(path)
    assert response.status_code == 500
    text = response.text
    assert response.json()["error"] == {"status": 500, "title": "Internal Server Error",
                                        "detail": "internal error; see the server log"}
    for secret in ("mongodb://", "s3cret", "Traceback", "db.internal", "RuntimeError"):
        assert secret not in text


def test_every_error_is_json(memory_client):
    client = memory_client
    for response in (client.get("/nope"), client.get("/structures", params={"filter": "{not json"}),
                     client.get("/structures", params={"nsites_max": "many"}),
                     client.get("/optimade/v1/structures", params={"filter": "((("}),
                     client.post("/structures")):
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert set(error) == {"status", "title", "detail"} and error["status"] == response.status_code


def test_web_page_is_served_without_external_resources(memory_client):
    client = memory_client
    page = client.get("/")
    assert page.status_code == 200 and "<script" in page.text
    assert "content-security-policy" in page.headers
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
        text = response.text.replace('"http://www.w3.org/2000/svg"', "")  # the SVG namespace is a name, not a fetch
        assert "http://" not in text and "https://" not in text
    assert "http://" not in page.text and "https://" not in page.text


def test_query_models_document_scalars_only():
    """A field OpenAPI could not resolve inside ``parameters`` (an enum or a nested model) fails when the
    app is made, not as a broken /openapi.json."""
    from enum import Enum

    from perovdb.api.params import PagingQuery, StructureQuery

    class Kind(Enum):
        A = "a"

    class WithEnum(PagingQuery):
        kind: Kind | None = None

    with pytest.raises(TypeError, match="scalars"):
        WithEnum.openapi()
    names = [p["name"] for p in StructureQuery.openapi()["parameters"]]
    assert {"formula", "limit", "filter"} <= set(names)
    with pytest.raises(ValueError, match="limit"):  # bounded even without with_page_size
        StructureQuery.model_validate({"limit": "5000"})


def test_next_link_keeps_the_query_as_written(client, all_structures):
    """The next page is the same query: repeated and percent-encoded parameters kept, only the page moved."""
    url = "/structures?elements=Pb%2CI&fields=structure_id&fields=nsites&limit=4&skip=0&filter=%7B%7D"
    body = client.get(url).json()
    assert body["meta"]["more_data_available"]
    following = body["links"]["next"]
    query = following.split("?", 1)[1].split("&")
    assert query == ["elements=Pb%2CI", "fields=structure_id", "fields=nsites", "filter=%7B%7D", "skip=4", "limit=4"]
    second = client.get(following).json()
    assert second["meta"]["skip"] == 4 and second["meta"]["total"] == body["meta"]["total"]
    assert not _ids(body, "structure_id") & _ids(second, "structure_id")


def test_next_link_escapes_what_a_query_cannot_hold(api_db):
    """Characters a client sent unescaped (``#``, quotes, UTF-8 bytes) are percent-encoded in the link, so
    following it reads the same parameters; the paging parameters are replaced however they were spelled."""
    from urllib.parse import parse_qsl, urlsplit

    from perovdb.api.store import next_page_url

    raw = "fields=structure_id&x=#y&q=a\"<b>&n=\u00e9&sk%69p=7&limit=3".encode()
    request = Request({"type": "http", "method": "GET", "path": "/structures", "query_string": raw,
                       "headers": [(b"host", b"h")], "scheme": "http", "server": ("h", 80), "root_path": ""})
    link = next_page_url(request, {"skip": 10, "limit": 3})
    parts = urlsplit(link)
    assert not parts.fragment and "#" not in link and '"' not in link and "<" not in link
    assert parse_qsl(parts.query, encoding="utf-8") == [
        ("fields", "structure_id"), ("x", "#y"), ("q", 'a"<b>'), ("n", "\u00e9"), ("skip", "10"), ("limit", "3")]


def test_times_are_iso_utc_and_documents_round_trip(client, api_db):
    """Stored (naive UTC) datetimes leave as ISO-8601 with ``Z``; a document read through the API equals
    the stored one."""
    from datetime import datetime, timezone

    stored = find(api_db, "structures", {}, limit=1)[0]
    served = client.get(f"/structures/{stored['structure_id']}").json()
    for name in ("created_at", "last_updated"):
        assert served[name].endswith("Z")
        when = datetime.fromisoformat(served[name].replace("Z", "+00:00"))
        expected = stored[name] if stored[name].tzinfo else stored[name].replace(tzinfo=timezone.utc)
        assert when == expected
    assert {k: v for k, v in served.items() if k not in ("created_at", "last_updated")} == json.loads(
        json.dumps({k: v for k, v in stored.items() if k not in ("created_at", "last_updated")}))


def test_direct_routes_skip_only_what_they_do_not_need():
    """Endpoints that read the request themselves run as ``DirectRoute``s; a route with declared parameters
    or dependencies keeps FastAPI's resolution (its parameter errors stay FastAPI's)."""
    app = FastAPI()
    app.router.route_class = DirectRoute

    def needs_header(request: Request) -> None:
        if "x-ok" not in request.headers:
            raise ValueError("no header")

    @app.get("/direct/{name}")
    async def direct(name: str, request: Request) -> JSONResponse:
        return JSONResponse({"name": name, "q": request.query_params.get("q")})

    @app.get("/typed")
    async def typed(n: int) -> JSONResponse:
        return JSONResponse({"n": n})

    @app.get("/guarded", dependencies=[Depends(needs_header)])
    async def guarded(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/dict")
    async def returns_data(request: Request) -> dict[str, int]:
        return {"a": 1}

    @app.get("/lies")
    async def lies(request: Request) -> JSONResponse:
        return {"a": 1}  # type: ignore[return-value]

    @app.get("/short/{code}")
    async def short(code: Annotated[str, Path(max_length=3)], request: Request) -> JSONResponse:
        return JSONResponse({"code": code})

    secret = APIRouter(route_class=DirectRoute)

    @secret.get("/secret")
    async def hidden(request: Request) -> JSONResponse:
        return JSONResponse({"secret": True})

    app.include_router(secret, prefix="/admin", dependencies=[Depends(needs_header)])

    routes = {route.path: route for route in app.routes if isinstance(route, DirectRoute)}
    assert {path: is_direct(route.dependant) for path, route in routes.items() if path != "/admin/secret"} == {
        "/direct/{name}": True, "/typed": False, "/guarded": False, "/dict": False, "/lies": True,
        "/short/{code}": False}
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/direct/a%20b", params={"q": "x"}).json() == {"name": "a b", "q": "x"}
    assert client.get("/typed", params={"n": "3"}).json() == {"n": 3}
    assert client.get("/typed", params={"n": "three"}).status_code == 422
    assert client.get("/guarded", headers={"x-ok": "1"}).json() == {"ok": True}
    with pytest.raises(ValueError, match="no header"):
        TestClient(app).get("/guarded")
    assert client.get("/dict").json() == {"a": 1}  # FastAPI's handler serialises data
    assert client.get("/lies").status_code == 500  # a direct endpoint must return a Response
    with pytest.raises(TypeError, match="GET /lies returned dict"):
        TestClient(app).get("/lies")
    assert client.get("/short/abc").json() == {"code": "abc"}
    assert client.get("/short/abcd").status_code == 422  # the path constraint is FastAPI's to check
    with pytest.raises(ValueError, match="no header"):  # the including router's dependency runs
        TestClient(app).get("/admin/secret")
    assert client.get("/admin/secret", headers={"x-ok": "1"}).json() == {"secret": True}
    perovdb_app = create_app(Database.__new__(Database), Settings(uri="memory://"))  # routes only, no queries
    direct_paths = {route.path for route in perovdb_app.routes
                    if isinstance(route, DirectRoute) and is_direct(route.dependant)}  # fmt: skip
    assert {"/structures", "/structures/{structure_id}", "/predictions", "/provenance/{prediction_id}"} <= direct_paths
    assert "/ingest" not in direct_paths
