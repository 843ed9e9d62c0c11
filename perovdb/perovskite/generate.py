"""Generated structures: a pseudo-cubic ABX3 supercell that realises given site fractions on sites."""

from __future__ import annotations

import re
import numpy as np
from pymatgen.core import Lattice, Structure

from perovdb.errors import InvalidRecord
from perovdb.perovskite.formula import SiteFractions

#: allowed pseudo-cubic lattice constants (Å); the tables' values lie between 5 and 7
LATTICE_RANGE = (3.0, 10.0)
#: a fraction times the number of cells must be this close to an integer to be realised on sites
COUNT_TOLERANCE = 0.1

#: molecule geometries (Å, relative to the A site): methylammonium CH3NH3 along x, formamidinium CH(NH2)2 in xy
_C_N_MA, _C_H, _N_H_MA = 1.47, 1.09, 1.03


def _tetrahedral_hydrogens(centre: np.ndarray, outward: float, bond: float, phase: float) -> list[np.ndarray]:
    """Three H atoms around an sp3 atom on the x axis, pointing away from its partner."""
    return [
        centre
        + bond
        * np.array(
            [outward / 3.0, np.sqrt(8.0 / 9.0) * np.cos(angle), np.sqrt(8.0 / 9.0) * np.sin(angle)]
        )
        for angle in np.radians([phase, phase + 120.0, phase + 240.0])
    ]


def _methylammonium() -> list[tuple[str, np.ndarray]]:
    carbon, nitrogen = np.array([-_C_N_MA / 2, 0.0, 0.0]), np.array([_C_N_MA / 2, 0.0, 0.0])
    atoms = [("C", carbon), ("N", nitrogen)]
    atoms += [("H", h) for h in _tetrahedral_hydrogens(carbon, -1.0, _C_H, 0.0)]
    atoms += [("H", h) for h in _tetrahedral_hydrogens(nitrogen, 1.0, _N_H_MA, 60.0)]
    return atoms


def _formamidinium() -> list[tuple[str, np.ndarray]]:
    s60, c60, nh = np.sin(np.radians(60)), 0.5, 1.01
    carbon = np.array([0.0, -0.33, 0.0])
    n1, n2 = carbon + 1.32 * np.array([-s60, c60, 0.0]), carbon + 1.32 * np.array([s60, c60, 0.0])
    return [
        ("C", carbon),
        ("H", carbon + np.array([0.0, -_C_H, 0.0])),
        ("N", n1),
        ("H", n1 + nh * np.array([0.0, 1.0, 0.0])),
        ("H", n1 + nh * np.array([-s60, -c60, 0.0])),
        ("N", n2),
        ("H", n2 + nh * np.array([0.0, 1.0, 0.0])),
        ("H", n2 + nh * np.array([s60, -c60, 0.0])),
    ]


MOLECULES = {"MA": _methylammonium(), "FA": _formamidinium()}


#: the tables' mixing labels: "Pure", "A-site mixed", "B-site and X-site mixed", "New B-site elements",
#: "New 3x3x3 Supercell Calc"
MIXING_LABEL = re.compile(
    r"^(?:Pure|[ABX]-site(?: and [ABX]-site)* mixed|New [ABX]-site elements|New (?P<n>[2-9])x(?P=n)x(?P=n) Supercell Calc)$",
    re.IGNORECASE,
)


def supercell_for_mixing(mixing_type: str) -> int:
    """The authors' supercell for a table row: N where the label says "NxNxN", else 2. Raises
    ``InvalidRecord`` (field ``mixing``) for a label of none of the tables' forms, whose cell is unknown."""
    match = MIXING_LABEL.match(mixing_type.strip())
    if match is None:
        raise InvalidRecord(
            f"unknown mixing label {mixing_type!r}: the supercell follows from 'Pure', '<A|B|X>-site mixed', "
            "'New <A|B|X>-site elements' or 'New NxNxN Supercell Calc' (N from 2 to 9)",
            field="mixing",
        )
    return int(match["n"]) if match["n"] else 2


def site_counts(site: dict[str, float], n_sites: int, total: float, name: str) -> list[str]:
    """The species of ``n_sites`` sites realising the fractions (which sum to ``total``) of one sublattice."""
    labels: list[str] = []
    for species, fraction in sorted(site.items()):
        exact = fraction / total * n_sites
        count = round(exact)
        if abs(exact - count) > COUNT_TOLERANCE:
            raise InvalidRecord(
                f"{species} fraction {fraction:g} is not realisable on {n_sites} {name} sites ({exact:.3f} atoms)",
                field=f"fractions.{name}",
            )
        labels += [species] * count
    if len(labels) != n_sites:
        raise InvalidRecord(
            f"{name}-site fractions give {len(labels)} atoms for {n_sites} sites", field=f"fractions.{name}"
        )
    return labels


def generate_supercell(
    fractions: SiteFractions, lattice_constant: float, *, supercell: int = 2, seed: int = 0
) -> Structure:
    """A pseudo-cubic ABX3 supercell: A on cell corners, B at body centres, X on face centres.

    Alloy species are placed on their sublattice by a shuffle seeded with ``seed`` (same inputs, same
    structure); MA and FA are placed as molecules with explicit C, N and H. Every site carries the
    site property ``perovskite_site`` ('A', 'B' or 'X').
    """
    low, high = LATTICE_RANGE
    if not low <= lattice_constant <= high:
        raise InvalidRecord(
            f"pseudo-cubic lattice constant {lattice_constant:g} Å is outside {low:g}–{high:g} Å",
            field="lattice_constant",
        )
    if supercell < 1:
        raise InvalidRecord(f"supercell {supercell} must be at least 1", field="supercell")
    n = supercell
    cells = [np.array([i, j, k], dtype=float) for i in range(n) for j in range(n) for k in range(n)]
    rng = np.random.default_rng(seed)
    a_labels = list(rng.permutation(site_counts(fractions.a, n**3, 1.0, "A")))
    b_labels = list(rng.permutation(site_counts(fractions.b, n**3, 1.0, "B")))
    x_labels = list(rng.permutation(site_counts(fractions.x, 3 * n**3, 3.0, "X")))
    length = lattice_constant * n
    lattice = Lattice.cubic(length)
    species: list[str] = []
    coords: list[np.ndarray] = []
    roles: list[str] = []

    def add(label: str, cart: np.ndarray, role: str) -> None:
        species.append(label)
        coords.append(cart)
        roles.append(role)

    faces = (np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5]), np.array([0.0, 0.5, 0.5]))
    for index, cell in enumerate(cells):
        a_site = cell * lattice_constant
        label = a_labels[index]
        if label in MOLECULES:
            for element, offset in MOLECULES[label]:
                add(element, a_site + offset, "A")
        else:
            add(label, a_site, "A")
        add(b_labels[index], (cell + 0.5) * lattice_constant, "B")
        for face_index, face in enumerate(faces):
            add(x_labels[3 * index + face_index], (cell + face) * lattice_constant, "X")
    return Structure(
        lattice,
        species,
        np.array(coords),
        coords_are_cartesian=True,
        to_unit_cell=True,
        site_properties={"perovskite_site": roles},
    )
