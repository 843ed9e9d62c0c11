"""The group's real data as evaluation records: the multi-fidelity CSV (relaxed) and the HSE06 composition table (generated)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from perovdb.accuracy.folds import compound_key, mixing_type
from perovdb.documents import LevelOfTheory
from perovdb.ingest.readers.composition_tables import (
    COMPOSITION_COLUMNS,
    N_DESCRIPTORS,
    PROPERTY_COLUMNS,
)
from perovdb.perovskite import (
    SiteFractions,
    assign_sites,
    generate_supercell,
    parse_printed_structure,
    supercell_for_mixing,
)

REPO = Path(__file__).resolve().parents[2]
MULTIFIDELITY_CSV = REPO / "data" / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv"
HSE_TABLE_CSV = REPO / "data" / "mannodi_halide_perovskites" / "HSE_data.csv"

#: the authors' elemental descriptors (A_/B_/X_ ion radius, boiling point, …, period), 12 per site
ELEMENT_DESCRIPTORS = tuple(
    f"{site}_{name}"
    for site in "ABX"
    for name in ("ion_rad", "BP", "MP", "dens", "at_wt", "EA", "IE", "hof", "hov", "En", "at_num", "period")
)
PHASE_COLUMNS = ("Cubic", "Tetra", "Ortho", "Hex")
#: RF features of the multi-fidelity CSV: fractions + phase one-hot + elemental descriptors
#: (not the PBE/HSE one-hot, not the targets, not the authors' in-sample ensemble predictions)
MULTIFIDELITY_FEATURES = (*COMPOSITION_COLUMNS, *PHASE_COLUMNS, *ELEMENT_DESCRIPTORS)


@dataclass(frozen=True, eq=False)
class EvalRecord:
    """One row to evaluate on: id, compound key, level, targets, descriptor features and structure."""

    record_id: str
    name: str
    key: str
    level: str  # "PBE" or "HSE06"
    phase: str
    mixing: str
    band_gap: float
    decomposition_energy: float | None
    features: np.ndarray
    structure: Structure
    twin: str | None = None  # HSE06 rows: the PBE row computed on the same geometry
    meta: dict[str, float] = field(default_factory=dict)


def _same_geometry(first: Structure, second: Structure, tolerance: float = 1e-4) -> bool:
    if len(first) != len(second) or [s.specie.symbol for s in first] != [s.specie.symbol for s in second]:
        return False
    if np.abs(first.lattice.matrix - second.lattice.matrix).max() > 10 * tolerance:
        return False
    delta = first.frac_coords - second.frac_coords
    return bool(np.abs(delta - np.round(delta)).max() < tolerance)


def find_twins(records: Sequence[EvalRecord]) -> dict[str, str]:
    """HSE06 record id → id of the PBE record with the identical geometry (same lattice, species, coordinates mod 1)."""
    index: dict[tuple, list[EvalRecord]] = {}
    for record in records:
        if record.level == "PBE":
            index.setdefault((len(record.structure), record.key), []).append(record)
    twins = {}
    for record in records:
        if record.level != "HSE06":
            continue
        for candidate in index.get((len(record.structure), record.key), []):
            if _same_geometry(record.structure, candidate.structure):
                twins[record.record_id] = candidate.record_id
                break
    return twins


def load_multifidelity(path: Path = MULTIFIDELITY_CSV) -> list[EvalRecord]:
    """The 983 rows of the multi-fidelity CSV (613 PBE + 370 HSE06), with compound keys and PBE twins."""
    frame = pd.read_csv(path)
    records = []
    for row_number, cells in enumerate(frame.to_dict("records"), start=1):
        structure = parse_printed_structure(cells["Structure"])
        sites = assign_sites(structure) or SiteFractions.from_formula(cells["Name"])
        level = "HSE06" if cells["Functional"].strip().upper().startswith("HSE") else "PBE"
        records.append(
            EvalRecord(
                record_id=f"mf-{row_number:04d}",
                name=cells["Name"].strip(),
                key=compound_key(sites),
                level=level,
                phase=cells["Crystal Structure"].strip(),
                mixing=mixing_type(sites),
                band_gap=float(cells["Band Gap"]),
                decomposition_energy=float(cells["Decomposition Energy"]),
                features=np.array([float(cells[c]) for c in MULTIFIDELITY_FEATURES]),
                structure=structure,
            )
        )
    twins = find_twins(records)
    return [r if r.record_id not in twins else _with(r, twin=twins[r.record_id]) for r in records]


def _with(record: EvalRecord, **changes: object) -> EvalRecord:
    values = {name: getattr(record, name) for name in record.__dataclass_fields__}
    values.update(changes)
    return EvalRecord(**values)  # type: ignore[arg-type]


def load_hse_table(path: Path = HSE_TABLE_CSV, seed: int = 0) -> list[EvalRecord]:
    """The 298 rows of the HSE06 composition table, each as a generated (unrelaxed) pseudo-cubic supercell."""
    properties = PROPERTY_COLUMNS[LevelOfTheory.HSE06]
    first = 2 + len(properties)
    records = []
    with open(path, newline="") as handle:
        for row_number, row in enumerate(csv.reader(handle), start=1):
            values = dict(zip(properties, row[2:first], strict=True))
            fractions_cells = row[first : first + len(COMPOSITION_COLUMNS)]
            descriptors = row[first + len(COMPOSITION_COLUMNS) : first + len(COMPOSITION_COLUMNS) + N_DESCRIPTORS]
            fractions = SiteFractions.from_columns(
                {c: float(v) for c, v in zip(COMPOSITION_COLUMNS, fractions_cells, strict=True)}
            ).validate()
            lattice_constant = float(values["lattice_constant"])
            structure = generate_supercell(
                fractions, lattice_constant, supercell=supercell_for_mixing(row[1]), seed=seed
            )
            decomposition = values.get("decomposition_energy_per_fu", "").strip()
            records.append(
                EvalRecord(
                    record_id=f"hse-table-{row_number:04d}",
                    name=row[0].strip(),
                    key=compound_key(fractions),
                    level="HSE06",
                    phase="pseudo-cubic",
                    mixing=row[1].strip(),
                    band_gap=float(values["band_gap"]),
                    decomposition_energy=float(decomposition) if decomposition else None,
                    features=np.array([float(v) for v in (*fractions_cells, *descriptors)]),
                    structure=structure,
                    meta={"lattice_constant": lattice_constant},
                )
            )
    return records


def subset_by_compound(records: Sequence[EvalRecord], max_compounds: int | None, seed: int = 0) -> list[EvalRecord]:
    """All rows of ``max_compounds`` compounds drawn reproducibly (None = everything); twins stay together."""
    if max_compounds is None:
        return list(records)
    keys = sorted({r.key for r in records})
    if max_compounds >= len(keys):
        return list(records)
    chosen = {keys[i] for i in np.random.default_rng(seed).permutation(len(keys))[:max_compounds]}
    return [r for r in records if r.key in chosen]
