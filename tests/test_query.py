"""Queries on real ingested data, and refusal of unsafe filters."""

from __future__ import annotations

import pytest
from pymatgen.core import Structure

from conftest import JARVIS
from perovdb.errors import InvalidRecord, UnsafeQuery
from perovdb.ingest import ingest
from perovdb.query import check_filter, find, get_structures, show, stats, structure_criteria


@pytest.fixture
def jarvis_db(db):
    assert ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW").ok
    return db


@pytest.mark.parametrize(
    "criteria",
    [
        {"$where": "sleep(1000)"},
        {"nsites": {"$gt": 1}, "$or": [{"$function": {"body": "return 1", "args": [], "lang": "js"}}]},
        {"$expr": {"$accumulator": {}}},
        {"a": [{"b": {"$where": "1"}}]},
        ["not", "an", "object"],
    ],
)
def test_unsafe_filters_are_refused(criteria):
    with pytest.raises(UnsafeQuery):
        check_filter(criteria)


@pytest.mark.parametrize(
    ("criteria", "named"),
    [
        ({"nsites": {"$not": 5}}, "$not (on nsites)"),
        ({"formula": {"$not": "abc"}}, "$not (on formula)"),
        ({"nsites": {"$in": 5}}, "$in (on nsites)"),
        ({"elements": {"$all": "Pb"}}, "$all (on elements)"),
        ({"$or": []}, "$or takes a non-empty list"),
        ({"$and": [{"nsites": 1}, 2]}, "$and takes a non-empty list"),
        ({"sources": {"$elemMatch": [1]}}, "$elemMatch (on sources)"),
        ({"elements": {"$size": -1}}, "$size (on elements)"),
        ({"nsites": {"$mod": [0, 1]}}, "$mod (on nsites)"),
        ({"perovskite": {"a": {"$regex": 5}}}, "$regex (on perovskite.a)"),
    ],
)
def test_malformed_operator_arguments_are_refused_naming_the_field(jarvis_db, criteria, named):
    """Each backend fails differently on these (a server error on MongoDB, a crash in mongomock, silence
    elsewhere): perovdb refuses them first, the same way everywhere."""
    with pytest.raises(UnsafeQuery) as refused:
        find(jarvis_db, "structures", criteria)
    assert named in str(refused.value)


def test_well_formed_operators_still_work(jarvis_db):
    everything = find(jarvis_db, "structures", {})
    not_small = find(jarvis_db, "structures", {"nsites": {"$not": {"$lte": 4}}})
    assert {d["structure_id"] for d in not_small} == {d["structure_id"] for d in everything if d["nsites"] > 4}
    some = find(jarvis_db, "structures", {"$or": [{"elements": {"$all": ["Si"]}}, {"nsites": {"$in": [1, 3]}}]})
    assert {d["structure_id"] for d in some} == {
        d["structure_id"] for d in everything if "Si" in d["elements"] or d["nsites"] in (1, 3)
    }
    with pytest.raises(InvalidRecord, match="limit"):
        find(jarvis_db, "structures", {}, limit=-1)


def test_unsafe_filter_never_reaches_the_store(jarvis_db):
    with pytest.raises(UnsafeQuery, match=r"\$where"):
        find(jarvis_db, "structures", {"$where": "this.nsites > 1"})


def test_query_by_elements_and_operators(jarvis_db):
    docs = find(jarvis_db, "structures", structure_criteria(elements=["Si"], extra={"nsites": {"$lte": 8}}))
    assert docs and all("Si" in d["elements"] and d["nsites"] <= 8 for d in docs)
    everything = find(jarvis_db, "structures", {})
    expected = [d for d in everything if "Si" in d["elements"] and d["nsites"] <= 8]
    assert sorted(d["structure_id"] for d in docs) == sorted(d["structure_id"] for d in expected)


def test_query_by_formula_accepts_any_order(jarvis_db):
    some = find(jarvis_db, "structures", {}, limit=1)[0]
    reordered = "".join(reversed([f"{el}" for el in some["elements"]]))  # element order does not matter
    by_reduced = find(jarvis_db, "structures", structure_criteria(formula=some["reduced_formula"]))
    assert some["structure_id"] in {d["structure_id"] for d in by_reduced}
    assert isinstance(reordered, str)


def test_fields_and_limit(jarvis_db):
    docs = find(jarvis_db, "calculations", {}, fields=["calculation_id", "properties.band_gap"], limit=7)
    assert len(docs) == 7
    assert all(set(d) <= {"calculation_id", "properties"} for d in docs)


def test_structures_as_pymatgen(jarvis_db):
    structures = get_structures(jarvis_db, {"nsites": {"$lte": 2}})
    assert structures and all(isinstance(s, Structure) and len(s) <= 2 for s in structures)
    assert all(s.properties["structure_id"].startswith("st-") for s in structures)


def test_show_and_stats(jarvis_db):
    doc = find(jarvis_db, "structures", {}, limit=1)[0]
    shown = show(jarvis_db, doc["structure_id"])
    assert shown["calculations"][0]["structure_id"] == doc["structure_id"]
    numbers = stats(jarvis_db)
    assert numbers["collections"]["structures"] == 50
    assert numbers["calculations_by_level_of_theory"] == {"OptB88vdW": 50}
