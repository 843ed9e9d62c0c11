"""Structures written as pymatgen's printed text (``str(Structure)``), as in the multi-fidelity CSV."""

from __future__ import annotations

import re

from pymatgen.core import Composition, Lattice, Structure

from perovdb.errors import InvalidRecord

FIELD = "Structure"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _three(text: str, label: str) -> list[float]:
    match = re.search(rf"^\s*{label}\s*:\s*({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})", text, re.MULTILINE)
    if match is None:
        raise InvalidRecord(f"no '{label}' line in the printed structure", field=FIELD)
    return [float(value) for value in match.groups()]


def parse_printed_structure(text: str) -> Structure:
    """Parse pymatgen's printed structure exactly: lattice (abc, angles), species and fractional coordinates.

    The site count of the ``Sites (N)`` line and the ``Full Formula`` are checked against the sites read;
    any mismatch or unreadable line raises ``InvalidRecord`` on field ``Structure``.
    """
    if not text or not text.strip():
        raise InvalidRecord("empty structure text", field=FIELD)
    abc, angles = _three(text, "abc"), _three(text, "angles")
    if min(abc) <= 0:
        raise InvalidRecord(f"lattice lengths {abc} must be positive", field=FIELD)
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if re.match(r"^\s*Sites\s*\((\d+)\)", line)), None)
    if header is None:
        raise InvalidRecord("no 'Sites (N)' line in the printed structure", field=FIELD)
    n_expected = int(re.match(r"^\s*Sites\s*\((\d+)\)", lines[header]).group(1))  # type: ignore[union-attr]
    species: list[str] = []
    coords: list[list[float]] = []
    for line in lines[header + 1 :]:
        parts = line.split()
        if not parts or parts[0] == "#" or set(line.strip()) <= {"-", " "}:
            continue
        if len(parts) < 5 or not parts[0].isdigit():
            raise InvalidRecord(f"unreadable site line {line.strip()!r}", field=FIELD)
        if int(parts[0]) != len(species):
            raise InvalidRecord(f"site {parts[0]} out of order (expected {len(species)})", field=FIELD)
        try:
            coords.append([float(value) for value in parts[2:5]])
        except ValueError:
            raise InvalidRecord(f"bad coordinates in site line {line.strip()!r}", field=FIELD) from None
        species.append(parts[1])
    if len(species) != n_expected:
        raise InvalidRecord(f"{len(species)} sites read, the text announces {n_expected}", field=FIELD)
    try:
        structure = Structure(Lattice.from_parameters(*abc, *angles), species, coords)
    except (ValueError, KeyError, ArithmeticError) as error:
        raise InvalidRecord(f"cannot build the structure: {error}", field=FIELD) from None
    formula = re.search(r"Full Formula\s*\(([^)]*)\)", text)
    if formula is not None and Composition(formula.group(1)) != structure.composition:
        raise InvalidRecord(
            f"sites give {structure.composition.formula}, the text's Full Formula is {formula.group(1)}", field=FIELD
        )
    return structure
