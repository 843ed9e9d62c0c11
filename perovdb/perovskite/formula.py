"""Perovskite formulas in the notations of the group's tables, and ABX3 site fractions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pymatgen.core import Element

from perovdb.errors import InvalidRecord

#: molecular A cations, written as units in formulas: methylammonium CH3NH3+ and formamidinium CH(NH2)2+
MOLECULAR_CATIONS = ("MA", "FA")
#: species that sit on the A site (order used when writing formulas)
A_SPECIES = ("Li", "Na", "K", "Rb", "Cs", "MA", "FA")
#: species that sit on the X site (order used when writing formulas)
X_SPECIES = ("F", "Cl", "Br", "I")
#: B-site species of the group's tables, in their column order; other B elements follow alphabetically
B_ORDER = ("Ca", "Sr", "Ba", "Ge", "Sn", "Pb")

_TOKEN = re.compile(r"(MA|FA|[A-Z][a-z]?)_?(\d+(?:\.\d*)?|\.\d+)?_?")


def parse_formula(text: str) -> dict[str, float]:
    """Species amounts of a formula in any of the tables' notations (MA/FA kept as units).

    ``FASr_0.5Ba_0.5Cl_3``, ``MA_27Pb_26_BaI_81``, ``MA_27Pb_25SnBaBr_81``, ``RbCaCl_1.5_I_1.5`` and
    ``MA1Ca0.12Sn0.75Pb0.12I3`` all parse; a missing amount is 1. Labels that are not formulas
    (``FA-A-BX3_232``) and unknown elements raise ``InvalidRecord`` on field ``formula``.
    """
    cleaned = text.strip()
    position, amounts = 0, {}
    while position < len(cleaned):
        match = _TOKEN.match(cleaned, position)
        if match is None or match.end() == position:
            raise InvalidRecord(f"{text!r} is not a formula (cannot read {cleaned[position:]!r})", field="formula")
        species, amount = match.group(1), match.group(2)
        if species not in MOLECULAR_CATIONS and not Element.is_valid_symbol(species):
            raise InvalidRecord(f"{species!r} in {text!r} is not an element", field="formula")
        amounts[species] = amounts.get(species, 0.0) + (float(amount) if amount else 1.0)
        position = match.end()
    if not amounts:
        raise InvalidRecord("empty formula", field="formula")
    return amounts


def site_of(species: str) -> str:
    """'A', 'B' or 'X': where a species sits in ABX3."""
    if species in A_SPECIES:
        return "A"
    if species in X_SPECIES:
        return "X"
    return "B"


@dataclass(frozen=True)
class SiteFractions:
    """Species fractions per ABX3 site: A and B sum to 1, X to 3 (amounts per formula unit)."""

    a: dict[str, float] = field(default_factory=dict)
    b: dict[str, float] = field(default_factory=dict)
    x: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_formula(cls, text: str) -> SiteFractions:
        """Fractions from a formula string, each site normalised to its ABX3 total (A 1, B 1, X 3).

        The tables write some compositions per supercell (``MA_27Pb_26_BaI_81``, ``CsBaI_3_Cl_21``),
        so every site is normalised on its own.
        """
        sites: dict[str, dict[str, float]] = {"A": {}, "B": {}, "X": {}}
        for species, amount in parse_formula(text).items():
            sites[site_of(species)][species] = amount
        for name, site in sites.items():
            if not site:
                raise InvalidRecord(f"{text!r} has no {name}-site species", field="formula")
        return cls(a=_normalise(sites["A"], 1.0), b=_normalise(sites["B"], 1.0), x=_normalise(sites["X"], 3.0))

    @classmethod
    def from_columns(cls, columns: dict[str, float]) -> SiteFractions:
        """Fractions from the tables' composition columns (species → fraction; zeros dropped)."""
        sites: dict[str, dict[str, float]] = {"A": {}, "B": {}, "X": {}}
        for species, value in columns.items():
            if value < 0:
                raise InvalidRecord(f"negative fraction {value:g} of {species}", field=f"fractions.{site_of(species)}")
            if value > 0:
                if species not in MOLECULAR_CATIONS and not Element.is_valid_symbol(species):
                    raise InvalidRecord(f"{species!r} is not an element", field="species")
                sites[site_of(species)][species] = float(value)
        return cls(a=sites["A"], b=sites["B"], x=sites["X"])

    def validate(self, tolerance: float = 0.02) -> SiteFractions:
        """Raise ``InvalidRecord`` (field ``fractions.A|B|X``) unless A and B sum to 1 and X to 3."""
        for name, site, total in (("A", self.a, 1.0), ("B", self.b, 1.0), ("X", self.x, 3.0)):
            if not site:
                raise InvalidRecord(f"no {name}-site species", field=f"fractions.{name}")
            if any(value < 0 for value in site.values()):
                raise InvalidRecord(f"negative fraction in {site}", field=f"fractions.{name}")
            if abs(sum(site.values()) - total) > tolerance * total:
                raise InvalidRecord(
                    f"{name}-site fractions sum to {sum(site.values()):.4g}, expected {total:g}",
                    field=f"fractions.{name}",
                )
        return self


def _normalise(site: dict[str, float], total: float) -> dict[str, float]:
    norm = sum(site.values())
    if norm <= 0:
        raise InvalidRecord("site amounts sum to zero", field="formula")
    return {species: amount * total / norm for species, amount in site.items()}
