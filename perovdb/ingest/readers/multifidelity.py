"""The group's multi-fidelity training set: relaxed structures (pymatgen's printed text) with PBE or HSE06 results."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

from perovdb.documents import (
    CalculationDoc,
    CalculationProperties,
    LevelOfTheory,
    StructureDoc,
)
from perovdb.documents.structure import geometry_id, structure_dict
from perovdb.errors import InvalidRecord
from perovdb.ingest.records import (
    READER_VERSION,
    ParseMemo,
    RawRecord,
    Record,
    RecordStream,
    csv_lines,
    csv_rows,
    dataset_name,
    make_source,
    raw_digest,
    readable_rows,
)

REQUIRED_COLUMNS = ("Name", "Decomposition Energy", "Crystal Structure", "Structure", "Functional", "Band Gap")


def is_multifidelity_table(path: Path) -> bool:
    """Whether ``path`` is a CSV with the multi-fidelity set's header."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        header = next(csv_rows(path), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return all(column in header for column in REQUIRED_COLUMNS)


def read_multifidelity_table(path: Path, *, dataset: str | None = None) -> RecordStream:
    """Yield one ``RawRecord`` per row (→ relaxed structure + its PBE or HSE06 calculation)."""
    path = Path(path)
    dataset = dataset_name(path, dataset)
    reader = csv.DictReader(csv_lines(path), strict=True)
    try:
        header = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as error:
        yield InvalidRecord(f"unreadable header ({error})", field="header", record=path.name)
        return
    twice = sorted({column for column in header if header.count(column) > 1})
    if twice:  # csv.DictReader would silently keep the last of them
        yield InvalidRecord(f"columns {twice} appear more than once", field="header", record=path.name)
        return
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        yield InvalidRecord(f"missing columns {missing}", field="header", record=path.name)
        return
    described = ParseMemo()  # by geometry id: many HSE06 rows repeat their PBE row's structure
    for row_number, row in enumerate(readable_rows(reader, path.name), start=1):
        if isinstance(row, InvalidRecord):
            yield row
            continue
        if None not in row and not any((value or "").strip() for value in row.values()):  # ",,,,," (Excel)
            continue
        yield RawRecord(
            name=f"{path.name} row {row_number}",
            dataset=dataset,
            key=str(row_number),
            digest=raw_digest(READER_VERSION, "multifidelity", [row.get(c) for c in REQUIRED_COLUMNS]),
            parse=partial(_parse_row, row, row_number, path, dataset, described),
        )


def _parse_row(
    row: dict[str, str | None], row_number: int, path: Path, dataset: str, described: dict[str, StructureDoc]
) -> Record:
    from perovdb.perovskite import parse_printed_structure

    if None in row or any(value is None for value in row.values()):
        raise InvalidRecord("row has a different number of columns than the header", field="columns")
    cells: dict[str, str] = {k: v or "" for k, v in row.items() if k is not None}
    level = LevelOfTheory.parse(cells["Functional"])
    structure = parse_printed_structure(cells["Structure"])
    source = make_source(path, dataset, str(row_number), label=cells["Name"].strip())
    phase = cells["Crystal Structure"].strip() or None
    known = described.get(geometry_id(structure))
    if known is not None and known.structure == structure_dict(structure):  # the very same structure
        doc = known.model_copy(update={"sources": [source], "phase": phase})
    else:  # symmetry, sites, composition: described once per structure in this file
        doc = StructureDoc.from_structure(structure, origin="relaxed", source=source, phase=phase)
        described.setdefault(doc.structure_id, doc)
    properties = CalculationProperties(
        band_gap=_cell(cells["Band Gap"], "Band Gap"),
        decomposition_energy_per_fu=_cell(cells["Decomposition Energy"], "Decomposition Energy"),
    )
    if not properties.present():
        raise InvalidRecord("Band Gap and Decomposition Energy are both empty: no value to store", field="properties")
    calculation = CalculationDoc(
        calculation_id=CalculationDoc.make_id(doc.structure_id, level, dataset),
        structure_id=doc.structure_id,
        level_of_theory=level,
        properties=properties,
        source=source,
    )
    return Record(name=f"{path.name} row {row_number}", structures=[doc], calculations=[calculation])


def _cell(text: str, column: str) -> str | None:
    text = text.strip()
    if text == "" or text.lower() == "n/a":
        return None
    if text.lower() == "nan":
        raise InvalidRecord("NaN is not a value; leave the cell empty when not computed", field=column)
    return text
