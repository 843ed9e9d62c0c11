"""The ALIGNN/JARVIS folder layout: structure files plus ``id_prop.csv`` (file name, value; no header)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from perovdb.documents import (
    CalculationDoc,
    CalculationProperties,
    LevelOfTheory,
    StructureDoc,
    property_spec,
)
from perovdb.documents.structure import Origin
from perovdb.errors import InvalidRecord
from perovdb.ingest.readers.structure_files import load_structure
from perovdb.ingest.records import (
    READER_VERSION,
    RawRecord,
    Record,
    RecordStream,
    csv_rows,
    dataset_name,
    make_source,
    raw_digest,
    readable_rows,
)


def is_id_prop_folder(path: Path) -> bool:
    """Whether ``path`` is a folder with an ``id_prop.csv``."""
    return path.is_dir() and (path / "id_prop.csv").is_file()


def read_id_prop_folder(
    folder: Path,
    *,
    property_name: str,
    level: LevelOfTheory,
    dataset: str | None = None,
    origin: Origin = "relaxed",
) -> RecordStream:
    """Yield one ``Record`` per ``id_prop.csv`` row: the structure file and its ``property_name`` value."""
    folder = Path(folder)
    spec = property_spec(property_name)
    dataset = dataset_name(folder, dataset)
    rows = list(readable_rows(csv_rows(folder / "id_prop.csv"), "id_prop.csv"))
    first_row: dict[str, int] = {}
    for row_number, row in enumerate(rows, start=1):
        if isinstance(row, InvalidRecord):
            yield row
            continue
        if not any(cell.strip() for cell in row):  # a blank line: nothing to read (it keeps its number)
            continue
        name = f"id_prop.csv row {row_number}" + (f" ({row[0].strip()})" if row else "")
        file_name = row[0].strip() if row else ""
        if file_name and first_row.setdefault(file_name, row_number) != row_number:
            # one file, one record: a second value for it would depend on which row is read last
            yield InvalidRecord(f"{file_name} is listed again (first on row {first_row[file_name]})", field="file", record=name)
            continue
        path = folder / file_name
        if file_name and _leaves_folder(file_name):
            # id_prop.csv names files of its own folder; '../x' or '/etc/x' would read anything the user can
            # (symlinks inside the folder are followed, as for a plain structure folder)
            yield InvalidRecord(f"{file_name!r} is outside the folder {folder.name}", field="file", record=name)
            continue
        content = path.read_bytes() if file_name and path.is_file() else b""
        yield RawRecord(
            name=name,
            dataset=dataset,
            key=file_name or f"row {row_number}",
            digest=raw_digest(READER_VERSION, "id_prop", spec.name, level.value, origin, row, content),
            parse=partial(_parse_row, row, folder, dataset, spec.name, level, origin, name),
        )


def _leaves_folder(file_name: str) -> bool:
    """Whether a name from id_prop.csv points outside its folder as written (absolute, or up with '..')."""
    normal = os.path.normpath(file_name)
    return os.path.isabs(file_name) or normal == os.pardir or normal.startswith(os.pardir + os.sep)


def _parse_row(
    row: list[str], folder: Path, dataset: str, property_name: str, level: LevelOfTheory, origin: Origin, name: str
) -> Record:
    spec = property_spec(property_name)
    if len(row) != 2:
        raise InvalidRecord(f"{len(row)} columns, expected 2 (file, value)", field="columns")
    file_name, value = row[0].strip(), row[1].strip()
    path = folder / file_name
    if not path.is_file():
        raise InvalidRecord(f"file {file_name!r} not found in {folder.name}", field="file")
    structure = load_structure(path)
    source = make_source(path, dataset, file_name, label=path.stem)
    doc = StructureDoc.from_structure(structure, origin=origin, source=source)
    calculation = CalculationDoc(
        calculation_id=CalculationDoc.make_id(doc.structure_id, level, dataset),
        structure_id=doc.structure_id,
        level_of_theory=level,
        properties=CalculationProperties(**{spec.name: spec.check(value)}),
        source=source,
    )
    return Record(name=name, structures=[doc], calculations=[calculation])
