"""Structure files: CIF, POSCAR/CONTCAR (*.vasp), pymatgen Structure JSON; one file or a folder of them."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from pymatgen.core import Structure

from perovdb.documents import StructureDoc
from perovdb.documents.structure import Origin
from perovdb.errors import InvalidRecord
from perovdb.ingest.records import READER_VERSION, RawRecord, Record, RecordStream, dataset_name, make_source, raw_digest

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".json")
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")


def is_structure_file(path: Path) -> bool:
    """Whether ``path`` is a structure file perovdb reads."""
    name = path.name
    return path.suffix.lower() in STRUCTURE_SUFFIXES or name.startswith(STRUCTURE_NAMES)


def structure_files(folder: Path) -> list[Path]:
    """Structure files below ``folder``, sorted (so ingest order, and so results, are reproducible)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_structure_file(p))


def load_structure(path: Path) -> Structure:
    """Read one structure file; an unreadable or empty file raises ``InvalidRecord``."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about CIF rounding on valid files
            if path.suffix.lower() == ".json":
                structure = Structure.from_dict(json.loads(path.read_text()))
            else:
                structure = Structure.from_file(path)
    except InvalidRecord:
        raise
    except Exception as error:
        raise InvalidRecord(f"cannot parse as a structure ({type(error).__name__}: {error})", field="file") from error
    if len(structure) == 0:
        raise InvalidRecord("the file holds no atoms", field="file")
    for key in [*structure.site_properties, *structure.properties]:
        if not isinstance(key, str) or key.startswith("$") or "." in key:
            raise InvalidRecord(f"property name {key!r}: a database key cannot start with '$' or hold '.'", field="properties")
    return structure


def read_structure_files(
    paths: Iterable[Path], *, dataset: str | None = None, origin: Origin = "unknown", root: Path | None = None
) -> RecordStream:
    """Yield one ``RawRecord`` (→ a structure, no calculation) per file."""
    for path in paths:
        path = Path(path)
        name = dataset_name(root or path, dataset)
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in the name: it could not be stored or shown
            shown = os.fsencode(path.name).decode("utf-8", "backslashreplace")
            yield InvalidRecord("the file name is not UTF-8; rename the file", field="file", record=shown)
            continue
        try:
            content = path.read_bytes()
        except OSError as error:
            yield InvalidRecord(f"cannot read: {error}", field="file", record=path.name)
            continue
        record = path.name if root is None else path.relative_to(root).as_posix()  # a/CONTCAR, b/CONTCAR
        yield RawRecord(
            name=record,
            dataset=name,
            key=record,
            digest=raw_digest(READER_VERSION, "structure-file", origin, content),
            parse=partial(_parse_file, path, name, origin, record),
        )


def _parse_file(path: Path, dataset: str, origin: Origin, record: str) -> Record:
    structure = load_structure(path)
    source = make_source(path, dataset, record, label=path.stem)
    return Record(name=record, structures=[StructureDoc.from_structure(structure, origin=origin, source=source)])
