"""ABX3 perovskite chemistry: formulas, site fractions, generated supercells, site assignment, printed structures."""

from perovdb.perovskite.formula import A_SPECIES, MOLECULAR_CATIONS, X_SPECIES, SiteFractions, parse_formula
from perovdb.perovskite.generate import generate_supercell, supercell_for_mixing
from perovdb.perovskite.printed import parse_printed_structure
from perovdb.perovskite.sites import SiteAssignment, assign_sites, reduced_perovskite_formula

__all__ = [
    "A_SPECIES",
    "MOLECULAR_CATIONS",
    "X_SPECIES",
    "SiteAssignment",
    "SiteFractions",
    "assign_sites",
    "generate_supercell",
    "parse_formula",
    "parse_printed_structure",
    "reduced_perovskite_formula",
    "supercell_for_mixing",
]
