"""schemas/*.json stay in sync with perovdb.documents; the MongoDB validator dialect is valid."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import REPO
from perovdb.documents import COLLECTIONS, CalculationDoc, CalculationProperties, Source
from perovdb.schemas import all_schemas, mongo_validator


@pytest.mark.parametrize("name", list(COLLECTIONS))
def test_schema_files_match_documents(name):
    path = REPO / "schemas" / f"{name}.json"
    assert path.is_file(), f"missing {path}; run `perovdb schemas --write schemas`"
    assert json.loads(path.read_text()) == json.loads(json.dumps(all_schemas()[name])), (
        f"{path} is out of date; run `perovdb schemas --write schemas`"
    )


def test_stored_documents_validate_against_the_schema_files():
    calc = CalculationDoc(
        calculation_id="calc-x",
        structure_id="st-x",
        level_of_theory="HSE06",
        properties=CalculationProperties(band_gap=1.5),
        source=Source(dataset="d"),
    )
    schema = json.loads((REPO / "schemas" / "calculations.json").read_text())
    jsonschema.validate(calc.model_dump(mode="json"), schema)
    bad = calc.model_dump(mode="json")
    bad["properties"]["band_gap"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize("name", list(COLLECTIONS))
def test_mongo_validator_uses_only_mongodb_keywords(name):
    text = json.dumps(mongo_validator(COLLECTIONS[name][0]))
    for keyword in ('"$ref"', '"$defs"', '"integer"', '"format"', '"default"', '"const"'):
        assert keyword not in text
    assert '"bsonType": "date"' in text
