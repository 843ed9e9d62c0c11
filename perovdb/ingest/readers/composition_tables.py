"""The group's composition tables (PBE_data.csv, HSE_data.csv): compositions and properties, no coordinates.

Each row becomes a generated pseudo-cubic supercell (marked ``generated``) and one calculation. The
layout is the authors' (headerless): formula, mixing type, the level's properties, 14 composition
fractions (K Rb Cs MA FA Ca Sr Ba Ge Sn Pb Cl Br I), 36 elemental descriptors.
"""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path
from typing import Any

from perovdb.documents import (
    CalculationDoc,
    CalculationProperties,
    Generation,
    LevelOfTheory,
    StructureDoc,
)
from perovdb.errors import InvalidRecord
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

COMPOSITION_COLUMNS = ("K", "Rb", "Cs", "MA", "FA", "Ca", "Sr", "Ba", "Ge", "Sn", "Pb", "Cl", "Br", "I")
N_DESCRIPTORS = 36

#: property columns after formula and mixing type, per level of theory
PROPERTY_COLUMNS: dict[LevelOfTheory, tuple[str, ...]] = {
    LevelOfTheory.PBE: (
        "lattice_constant",
        "band_gap",
        "formation_energy_per_fu",
        "decomposition_energy_per_fu",
        "dielectric_constant",
        "pv_figure_of_merit",
    ),
    LevelOfTheory.HSE06: ("lattice_constant", "band_gap", "formation_energy_per_fu", "decomposition_energy_per_fu"),
}

#: preference for the lattice constant of a generated structure seen at several levels (order-independent)
LATTICE_LEVEL_PRIORITY = (LevelOfTheory.PBE.value, LevelOfTheory.HSE06.value)


def expected_columns(level: LevelOfTheory) -> int:
    """Column count of a row of this level's table."""
    return 2 + len(PROPERTY_COLUMNS[level]) + len(COMPOSITION_COLUMNS) + N_DESCRIPTORS


def detect_level(path: Path) -> LevelOfTheory:
    """PBE or HSE06 from the table's column count (58 or 56)."""
    try:
        first = next(csv_rows(path), None)
    except (csv.Error, UnicodeDecodeError) as error:
        raise InvalidRecord(f"unreadable first row ({error})", field="row", record=f"{path.name} row 1") from None
    for level in PROPERTY_COLUMNS:
        if first is not None and len(first) == expected_columns(level):
            return level
    raise InvalidRecord(
        f"{len(first or [])} columns fit neither the PBE (58) nor the HSE06 (56) table layout",
        field="columns",
        record=str(path),
    )


def is_composition_table(path: Path) -> bool:
    """Whether ``path`` looks like one of the group's headerless composition tables."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        detect_level(path)
    except (InvalidRecord, OSError):
        return False
    return True


def _number(text: str, column: str) -> float | None:
    """A property cell: empty and n/a mean not computed (None), never zero."""
    text = text.strip()
    if text == "" or text.lower() in {"n/a", "na", "nan", "none"}:
        if text.lower() == "nan":
            raise InvalidRecord("NaN is not a value; leave the cell empty when not computed", field=column)
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidRecord(f"{text!r} is not a number", field=column) from None
    if math.isnan(value):
        raise InvalidRecord("NaN is not a value", field=column)
    return value


def read_composition_table(
    path: Path, *, level: LevelOfTheory | None = None, dataset: str | None = None, seed: int = 0
) -> RecordStream:
    """Yield one ``RawRecord`` per row (→ generated structure + calculation) or an ``InvalidRecord``."""
    path = Path(path)
    level = level or detect_level(path)
    if level not in PROPERTY_COLUMNS:
        raise InvalidRecord(f"no composition-table layout for level {level.value}", field="level_of_theory")
    dataset = dataset_name(path, dataset)
    for row_number, row in enumerate(readable_rows(csv_rows(path), path.name), start=1):
        if isinstance(row, InvalidRecord):
            yield row
            continue
        if not any(cell.strip() for cell in row):  # a blank line: nothing to read (it keeps its number)
            continue
        name = f"{path.name} row {row_number}"
        yield RawRecord(
            name=name,
            dataset=dataset,
            key=str(row_number),
            digest=raw_digest(READER_VERSION, "composition-table", level.value, seed, row),
            parse=partial(_parse_row, row, row_number, path, dataset, level, seed),
        )


def _parse_row(row: list[str], row_number: int, path: Path, dataset: str, level: LevelOfTheory, seed: int) -> Record:
    from perovdb.perovskite import (
        SiteFractions,
        generate_supercell,
        supercell_for_mixing,
    )

    properties = PROPERTY_COLUMNS[level]
    n_columns = expected_columns(level)
    if len(row) != n_columns:
        raise InvalidRecord(f"{len(row)} columns, expected {n_columns} for a {level.value} table", field="columns")
    formula, mixing = row[0].strip(), row[1].strip()
    values = {prop: _number(cell, prop) for prop, cell in zip(properties, row[2:], strict=False)}
    first = 2 + len(properties)
    cells = row[first : first + len(COMPOSITION_COLUMNS)]
    if all(cell.strip().lower() == "n/a" for cell in cells):
        fractions = SiteFractions.from_formula(formula)
    else:
        numbers = {col: _number(cell, f"fraction {col}") for col, cell in zip(COMPOSITION_COLUMNS, cells, strict=True)}
        fractions = SiteFractions.from_columns({k: v or 0.0 for k, v in numbers.items()}).validate()
        _check_formula_agrees(formula, fractions)
    fractions.validate()
    lattice_constant = values.get("lattice_constant")
    if lattice_constant is None:
        raise InvalidRecord("needed to generate the structure but empty", field="lattice_constant")
    supercell = supercell_for_mixing(mixing)
    structure = generate_supercell(fractions, lattice_constant, supercell=supercell, seed=seed)
    source = make_source(path, dataset, str(row_number), label=formula)
    generation = Generation(
        lattice_constant=lattice_constant,
        lattice_constant_level=level.value,
        supercell=supercell,
        seed=seed,
        composition_counts=_recipe_counts(fractions, supercell),
    )
    doc = StructureDoc.from_structure(
        structure, origin="generated", source=source, phase="pseudo-cubic", generation=generation
    )
    calculation = CalculationDoc(
        calculation_id=CalculationDoc.make_id(doc.structure_id, level, dataset),
        structure_id=doc.structure_id,
        level_of_theory=level,
        properties=CalculationProperties(**values),
        source=source,
    )
    return Record(name=f"{path.name} row {row_number}", structures=[doc], calculations=[calculation])


def _check_formula_agrees(formula: str, fractions: Any, tolerance: float = 0.02) -> None:
    """Reject a row whose formula string and composition columns describe different compounds.

    Labels that are not formulas (``K-Rb-Cs-BX3_184``) are not checked: the columns are all there is.
    """
    from perovdb.perovskite import SiteFractions

    try:
        named = SiteFractions.from_formula(formula)
    except InvalidRecord:
        return
    for site in ("a", "b", "x"):
        said, given = getattr(named, site), getattr(fractions, site)
        species = set(said) | set(given)
        if any(abs(said.get(sp, 0.0) - given.get(sp, 0.0)) > tolerance for sp in species):
            raise InvalidRecord(
                f"formula {formula!r} gives {site.upper()} site {_fmt(said)} but the composition columns give "
                f"{_fmt(given)}",
                field="formula",
            )


def _fmt(site: dict[str, float]) -> str:
    return "{" + ", ".join(f"{sp} {x:g}" for sp, x in sorted(site.items())) + "}"


def _recipe_counts(fractions: object, supercell: int) -> dict[str, int]:
    """Species per supercell (MA/FA as units): the generation recipe that identifies the structure."""
    cells = supercell**3
    counts: dict[str, int] = {}
    for site in (fractions.a, fractions.b, fractions.x):  # type: ignore[attr-defined]
        for species, fraction in site.items():
            counts[species] = counts.get(species, 0) + round(fraction * cells)
    return dict(sorted(counts.items()))
