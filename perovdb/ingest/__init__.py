"""Ingest: readers turn files into documents, the writer stores them (dedup, merge, validate, upsert)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from perovdb.db import Database
from perovdb.documents import LevelOfTheory
from perovdb.documents.structure import Origin
from perovdb.errors import InvalidRecord
from perovdb.ingest.readers import (
    is_composition_table,
    is_id_prop_folder,
    is_multifidelity_table,
    is_structure_file,
    read_composition_table,
    read_id_prop_folder,
    read_multifidelity_table,
    read_structure_files,
    structure_files,
)
from perovdb.ingest.records import RecordStream, csv_lines, csv_rows, not_utf8, readable_rows
from perovdb.ingest.writer import IngestReport, IngestWriter

Kind = Literal["auto", "composition-table", "multifidelity", "id-prop", "structures"]
KINDS: tuple[str, ...] = ("auto", "composition-table", "multifidelity", "id-prop", "structures")


def detect_kind(path: Path) -> str:
    """Which reader fits ``path``."""
    path = Path(path)
    if not path.exists():
        raise InvalidRecord(f"{path} does not exist", field="path")
    if is_id_prop_folder(path):
        return "id-prop"
    if path.is_dir() or is_structure_file(path) and path.suffix.lower() != ".csv":
        return "structures"
    if is_multifidelity_table(path):
        return "multifidelity"
    if is_composition_table(path):
        return "composition-table"
    if path.suffix.lower() == ".csv":
        try:
            next(csv_lines(path), None)
        except UnicodeDecodeError as error:
            raise InvalidRecord(not_utf8(error), field="encoding", record=path.name) from None
    raise InvalidRecord(
        f"cannot tell what {path.name} holds; give its kind (--kind, or kind= over HTTP): one of {', '.join(KINDS[1:])}",
        field="path",
    )


def read(
    path: Path,
    *,
    kind: Kind = "auto",
    property_name: str | None = None,
    level: str | None = None,
    dataset: str | None = None,
    origin: Origin | None = None,
    seed: int = 0,
) -> RecordStream:
    """The reader stream for ``path`` (nothing is parsed until iterated)."""
    path = Path(path)
    kind = detect_kind(path) if kind == "auto" else kind  # type: ignore[assignment]
    level_of_theory = LevelOfTheory.parse(level) if level else None
    if kind == "composition-table":
        return read_composition_table(path, level=level_of_theory, dataset=dataset, seed=seed)
    if kind == "multifidelity":
        return read_multifidelity_table(path, dataset=dataset)
    if kind == "id-prop":
        if not property_name or level_of_theory is None:
            raise InvalidRecord(
                "an id_prop.csv folder needs the property and level of theory of its values "
                "(e.g. --property band_gap --level OptB88vdW)",
                field="property" if not property_name else "level_of_theory",
            )
        return read_id_prop_folder(
            path, property_name=property_name, level=level_of_theory, dataset=dataset, origin=origin or "relaxed"
        )
    if kind == "structures":
        files = structure_files(path) if path.is_dir() else [path]
        return read_structure_files(
            files, dataset=dataset, origin=origin or "unknown", root=path if path.is_dir() else None
        )
    raise InvalidRecord(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}", field="kind")


def ingest(
    db: Database,
    path: str | Path,
    *,
    kind: Kind = "auto",
    property_name: str | None = None,
    level: str | None = None,
    dataset: str | None = None,
    origin: Origin | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Read ``path`` and store its documents in ``db``; bad records are rejected and reported, never stored.

    ``workers`` processes parse records (default ``Settings.num_workers``, 0 = all cores; 1 = here)."""
    stream = read(
        Path(path),
        kind=kind,
        property_name=property_name,
        level=level,
        dataset=dataset,
        origin=origin,
        seed=db.settings.generation_seed if seed is None else seed,
    )
    with db.lock("ingest"):  # two ingests at once would race on merged sources
        return IngestWriter(db, batch_size=batch_size, workers=workers).write(stream, on_progress=on_progress)


def count_records(path: str | Path, kind: Kind = "auto") -> int | None:
    """Cheap record count for a progress bar (rows or files), or None when unknown."""
    path = Path(path)
    try:
        kind = detect_kind(path) if kind == "auto" else kind  # type: ignore[assignment]
    except InvalidRecord:
        return None
    if kind in {"composition-table"}:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    if kind == "multifidelity":
        return max(sum(1 for _ in readable_rows(csv_rows(path), path.name)) - 1, 0)
    if kind == "id-prop":
        with open(path / "id_prop.csv", "rb") as handle:
            return sum(1 for line in handle if line.strip())
    if kind == "structures":
        return len(structure_files(path)) if path.is_dir() else 1
    return None


__all__ = ["KINDS", "IngestReport", "IngestWriter", "count_records", "detect_kind", "ingest", "read"]
