"""Which atoms of a structure form the A, B and X sites of an ABX3 perovskite (MA/FA from C, N, H counts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pymatgen.core import Structure

from perovdb.perovskite.formula import A_SPECIES, B_ORDER, MOLECULAR_CATIONS, X_SPECIES

#: significant digits of fractions in written formulas
FRACTION_DECIMALS = 3


@dataclass(frozen=True)
class SiteAssignment:
    """ABX3 site fractions of a structure (A, B sum to 1, X to 3), species counts and molecular cations."""

    a: dict[str, float]
    b: dict[str, float]
    x: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    molecular_cations: dict[str, int] = field(default_factory=dict)


def assign_sites(structure: Structure) -> SiteAssignment | None:
    """The ABX3 site assignment of ``structure``, or None when it is not ABX3-like.

    C, N and H are read as molecular cations: nFA = nN - nC, nMA = 2 nC - nN, and the H count must be
    6 nMA + 5 nFA. A holds alkali metals and molecules, X halides, B the remaining elements; the A and B
    totals must be equal and X three times A.
    """
    counts = {el.symbol: int(round(amount)) for el, amount in structure.composition.element_composition.items()}
    n_c, n_n, n_h = counts.pop("C", 0), counts.pop("N", 0), counts.pop("H", 0)
    molecules: dict[str, int] = {}
    if n_c or n_n or n_h:
        n_fa, n_ma = n_n - n_c, 2 * n_c - n_n
        if n_fa < 0 or n_ma < 0 or n_h != 6 * n_ma + 5 * n_fa:
            return None
        molecules = {name: n for name, n in (("MA", n_ma), ("FA", n_fa)) if n}
    units = {**counts, **molecules}
    a = {sp: n for sp, n in units.items() if sp in A_SPECIES}
    x = {sp: n for sp, n in units.items() if sp in X_SPECIES}
    b = {sp: n for sp, n in units.items() if sp not in A_SPECIES and sp not in X_SPECIES}
    n_a = sum(a.values())
    if n_a == 0 or sum(b.values()) != n_a or sum(x.values()) != 3 * n_a:
        return None

    def fractions(site: dict[str, int]) -> dict[str, float]:
        return {sp: n / n_a for sp, n in sorted(site.items(), key=lambda item: _order(item[0]))}

    return SiteAssignment(
        a=fractions(a),
        b=fractions(b),
        x=fractions(x),
        counts=dict(sorted(units.items())),
        molecular_cations=molecules,
    )


def _order(species: str) -> tuple[int, str]:
    for order in (A_SPECIES, B_ORDER, X_SPECIES):
        if species in order:
            return order.index(species), species
    return len(B_ORDER), species


def reduced_perovskite_formula(sites: SiteAssignment) -> str:
    """ABX3 formula with MA/FA as units: 'MAPb0.5Sn0.5I3', 'CsPbBr1.5I1.5' (amounts of 1 on A and B omitted)."""
    parts: list[str] = []
    for site, omit in ((sites.a, 1.0), (sites.b, 1.0), (sites.x, None)):
        for species in sorted(site, key=_order):
            amount = round(site[species], FRACTION_DECIMALS)
            parts.append(species if omit is not None and amount == omit else f"{species}{amount:g}")
    return "".join(parts)


__all__ = ["MOLECULAR_CATIONS", "SiteAssignment", "assign_sites", "reduced_perovskite_formula"]
