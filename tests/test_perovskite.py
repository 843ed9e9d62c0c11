"""ABX3 chemistry on the group's real formulas and structures: notations, generation, site assignment."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
from conftest import HSE_TABLE, MULTIFIDELITY, PBE_TABLE
from pymatgen.core import Composition

from perovdb.errors import InvalidRecord
from perovdb.perovskite import (
    SiteFractions,
    assign_sites,
    generate_supercell,
    parse_formula,
    parse_printed_structure,
    reduced_perovskite_formula,
    supercell_for_mixing,
)


@pytest.mark.parametrize(
    ("text", "a", "b", "x"),
    [
        ("FASr_0.5Ba_0.5Cl_3", {"FA": 1}, {"Sr": 0.5, "Ba": 0.5}, {"Cl": 3}),
        ("MA_27Pb_26_BaI_81", {"MA": 1}, {"Pb": 26 / 27, "Ba": 1 / 27}, {"I": 3}),
        ("MA_27Pb_25SnBaBr_81", {"MA": 1}, {"Pb": 25 / 27, "Sn": 1 / 27, "Ba": 1 / 27}, {"Br": 3}),
        ("RbCaCl_1.5_I_1.5", {"Rb": 1}, {"Ca": 1}, {"Cl": 1.5, "I": 1.5}),
        ("CsBaI_3_Cl_21", {"Cs": 1}, {"Ba": 1}, {"I": 0.375, "Cl": 2.625}),
        ("Rb0.38Cs0.12MA0.5Pb1I3", {"Rb": 0.38, "Cs": 0.12, "MA": 0.5}, {"Pb": 1}, {"I": 3}),
    ],
)
def test_formula_notations(text, a, b, x):
    fractions = SiteFractions.from_formula(text).validate()
    for got, want in ((fractions.a, a), (fractions.b, b), (fractions.x, x)):
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) < 1e-9 for k in want)


@pytest.mark.parametrize("label", ["FA-A-BX3_232", "K-Rb-Cs-BX3_184", "MAPbQq_3", ""])
def test_labels_and_unknown_elements_are_not_formulas(label):
    with pytest.raises(InvalidRecord) as error:
        parse_formula(label)
    assert error.value.field == "formula"


def test_fractions_that_do_not_sum_name_the_site():
    with pytest.raises(InvalidRecord) as error:
        SiteFractions(a={"Cs": 1.0}, b={"Pb": 0.7}, x={"I": 3.0}).validate()
    assert error.value.field == "fractions.B"


def _table_rows(path, first_composition_column):
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            cells = row[first_composition_column : first_composition_column + 14]
            yield row[0], row[1], cells


@pytest.mark.parametrize(("path", "first"), [(PBE_TABLE, 8), (HSE_TABLE, 6)])
def test_every_table_composition_is_realised_exactly(path, first):
    """Every row's fractions (columns or formula) give a supercell whose composition is exactly the row's."""
    columns = ("K", "Rb", "Cs", "MA", "FA", "Ca", "Sr", "Ba", "Ge", "Sn", "Pb", "Cl", "Br", "I")
    sizes = Counter()
    for formula, mixing, cells in _table_rows(path, first):
        if all(c.strip().lower() == "n/a" for c in cells):
            fractions = SiteFractions.from_formula(formula)
        else:
            fractions = SiteFractions.from_columns({c: float(v) for c, v in zip(columns, cells, strict=True)})
        n = supercell_for_mixing(mixing)
        sizes[n] += 1
        structure = generate_supercell(fractions.validate(), 6.0, supercell=n, seed=0)
        sites = assign_sites(structure)
        assert sites is not None, formula
        for want, got in ((fractions.a, sites.a), (fractions.b, sites.b), (fractions.x, sites.x)):
            assert got.keys() == want.keys(), formula
            assert all(abs(got[k] - want[k]) <= 0.1 / n**3 * 3 for k in want), formula
    assert sizes[3] == (5 if path == PBE_TABLE else 0)


def test_generation_is_deterministic_and_places_molecules():
    fractions = SiteFractions.from_formula("MAPb_0.5Sn_0.5I_3")
    first = generate_supercell(fractions, 6.3, seed=7)
    assert first == generate_supercell(fractions, 6.3, seed=7)
    assert first != generate_supercell(fractions, 6.3, seed=8)  # another arrangement of Pb and Sn
    assert first.composition == Composition("C8N8H48Pb4Sn4I24")
    assert set(first.site_properties["perovskite_site"]) == {"A", "B", "X"}
    distances = first.distance_matrix[np.triu_indices(len(first), 1)]
    assert distances.min() > 0.9  # N–H bonds are the shortest; nothing overlaps
    sites = assign_sites(first)
    assert sites.molecular_cations == {"MA": 8}
    assert reduced_perovskite_formula(sites) == "MASn0.5Pb0.5I3"


def test_formamidinium_is_recognised():
    structure = generate_supercell(SiteFractions.from_formula("FAPbBr_3"), 6.0, supercell=2)
    sites = assign_sites(structure)
    assert sites.molecular_cations == {"FA": 8} and reduced_perovskite_formula(sites) == "FAPbBr3"


def test_lattice_constant_out_of_range():
    with pytest.raises(InvalidRecord) as error:
        generate_supercell(SiteFractions.from_formula("CsPbI_3"), 0.0)
    assert error.value.field == "lattice_constant"


def test_unrealisable_fraction_names_the_site():
    with pytest.raises(InvalidRecord) as error:
        generate_supercell(SiteFractions.from_formula("CsPb_0.3Sn_0.7I_3"), 6.2, supercell=2)
    assert error.value.field == "fractions.B"


def test_printed_structures_of_the_multifidelity_set_parse_exactly():
    with open(MULTIFIDELITY, newline="") as handle:
        rows = list(csv.DictReader(handle))
    sizes = []
    for row in rows[::25]:  # every 25th row; the full set is covered by the ingest tests
        structure = parse_printed_structure(row["Structure"])
        sizes.append(len(structure))
        sites = assign_sites(structure)
        assert sites is not None, row["Name"]
        # the authors' name and the parsed structure describe the same perovskite
        named = SiteFractions.from_formula(row["Name"])
        assert set(named.b) == set(sites.b) and set(named.x) == set(sites.x), row["Name"]
    assert min(sizes) >= 10 and max(sizes) <= 288


def test_printed_structure_checks_its_own_counts():
    with open(MULTIFIDELITY, newline="") as handle:
        text = next(csv.DictReader(handle))["Structure"]
    truncated = "\n".join(text.splitlines()[:-1])  # drop the last site
    with pytest.raises(InvalidRecord, match="sites read") as error:
        parse_printed_structure(truncated)
    assert error.value.field == "Structure"
    wrong_formula = text.replace("Full Formula (Ca1", "Full Formula (Ca2", 1)
    with pytest.raises(InvalidRecord, match="Full Formula"):
        parse_printed_structure(wrong_formula)


def test_space_group_and_density_are_pymatgens_own(tmp_path):
    """Ingest computes symmetry with spglib directly and density from cached masses; on real structures
    (JARVIS sample, relaxed multi-fidelity perovskites with MA/FA) the values are
    exactly what pymatgen's SpacegroupAnalyzer and Structure.density give."""
    from conftest import JARVIS
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from perovdb.documents.base import Source
    from perovdb.documents.structure import StructureDoc
    from perovdb.perovskite.printed import parse_printed_structure

    structures = [Structure.from_file(p) for p in sorted(JARVIS.glob("POSCAR*"))[:25]]
    rows = list(csv.DictReader(open(MULTIFIDELITY, newline="")))
    structures += [parse_printed_structure(r["Structure"]) for r in rows[::40]]
    assert len(structures) == 25 + len(rows[::40])
    for structure in structures:
        doc = StructureDoc.from_structure(structure, origin="relaxed", source=Source(dataset="test"))
        analyzer = SpacegroupAnalyzer(structure, symprec=0.1)
        assert (doc.space_group_symbol, doc.space_group_number) == (
            analyzer.get_space_group_symbol(),
            analyzer.get_space_group_number(),
        )
        assert doc.density == structure.density


def test_structure_documents_hold_pymatgens_own_dict_and_ids():
    """``structure_dict`` builds pymatgen's ``as_dict()`` without its per-site lattice dicts and
    ``geometry_id`` formats coordinates in one call: on real structures (JARVIS, relaxed perovskites
    with MA/FA, generated supercells) and on sites with oxidation states, labels, properties and
    partial occupancy, both equal what the plain formulations give, key for key and float for float."""
    import json

    from conftest import JARVIS
    from pymatgen.core import Lattice, Structure

    from perovdb.documents.base import content_hash
    from perovdb.documents.structure import (
        ANGLE_DECIMALS,
        FRACTIONAL_DECIMALS,
        LATTICE_DECIMALS,
        geometry_id,
        structure_dict,
    )
    from perovdb.perovskite import generate_supercell

    structures = [Structure.from_file(p) for p in sorted(JARVIS.glob("POSCAR*"))[:10]]
    rows = list(csv.DictReader(open(MULTIFIDELITY, newline="")))
    structures += [parse_printed_structure(r["Structure"]) for r in rows[::60]]
    structures.append(generate_supercell(SiteFractions.from_formula("MAPb_0.5Sn_0.5I_3"), 6.3, supercell=2, seed=0))
    special = Structure(
        Lattice.cubic(4.0),
        [{"Pb2+": 1}, {"I-": 0.5, "Br-": 0.5}, "I"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, -0.25]],
        site_properties={"magmom": [0.0, 1.0, 2.0]},
        labels=["B", None, "X2"],
    )
    structures.append(special)
    occupancies = special.as_dict()
    occupancies["sites"][2]["species"][0]["occu"] = 1  # an int occupancy, as a hand-written dict may hold
    structures.append(Structure.from_dict(occupancies))
    for structure in structures:
        expected = structure.as_dict()
        expected["lattice"]["pbc"] = list(expected["lattice"]["pbc"])
        assert structure_dict(structure) == expected
        assert json.dumps(structure_dict(structure)) == json.dumps(expected)  # same key order, same floats
    for structure in structures:
        frac = np.round(np.mod(np.round(structure.frac_coords, FRACTIONAL_DECIMALS), 1.0), FRACTIONAL_DECIMALS) % 1.0 + 0.0
        sites = sorted(
            (site.species.formula, *(f"{x:.{FRACTIONAL_DECIMALS}f}" for x in coords))
            for site, coords in zip(structure, frac, strict=True)
        )
        lattice = [f"{x:.{LATTICE_DECIMALS}f}" for x in np.round(structure.lattice.abc, LATTICE_DECIMALS) + 0.0]
        lattice += [f"{x:.{ANGLE_DECIMALS}f}" for x in np.round(structure.lattice.angles, ANGLE_DECIMALS) + 0.0]
        assert geometry_id(structure) == "st-" + content_hash(["geometry", lattice, sites])
