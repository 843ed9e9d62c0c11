"""``structures``: crystal structures with a content-derived id, composition and perovskite sites."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pymatgen.core import Composition, DummySpecies, Element, Species, Structure
from pymatgen.core.units import Length, Mass

from perovdb.documents.base import PerovdbDocument, Source, content_hash
from perovdb.errors import InvalidRecord

Origin = Literal["relaxed", "generated", "experimental", "unknown"]

#: rounding used by the structure id: 1e-3 Å on lattice lengths, 1e-2 degrees on angles, 1e-4 on fractional coordinates
LATTICE_DECIMALS = 3
ANGLE_DECIMALS = 2
FRACTIONAL_DECIMALS = 4


class PerovskiteSites(BaseModel):
    """ABX3 site assignment: species fractions per site (A and B sum to 1, X to 3)."""

    model_config = ConfigDict(extra="forbid")

    a: dict[str, float] = Field(description="A-site species (K, Rb, Cs, MA, FA, …) and fractions.")
    b: dict[str, float] = Field(description="B-site species and fractions.")
    x: dict[str, float] = Field(description="X-site (halide) species and amounts per formula unit (sum 3).")
    molecular_cations: dict[str, int] = Field(
        default_factory=dict, description="Molecular A cations found in the cell (MA, FA) and their counts."
    )
    formula: str = Field(description="Perovskite formula with MA/FA as units, e.g. 'MAPb0.5Sn0.5I3'.")
    mixing_type: str = Field(description="'Pure', 'A-site mixed', 'B-site mixed', 'X-site mixed' or a combination.")


class Generation(BaseModel):
    """How a generated (not relaxed) structure was made from a composition."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(default="pseudo-cubic ABX3 supercell", description="Generator used.")
    lattice_constant: float = Field(description="Pseudo-cubic lattice constant used (Å).")
    lattice_constant_level: str = Field(description="Level of theory the lattice constant comes from.")
    supercell: int = Field(ge=1, description="Repetitions of the ABX3 cell along each axis.")
    seed: int = Field(description="Seed that placed the alloy species on sites.")
    composition_counts: dict[str, int] = Field(description="Species (MA/FA as units) per supercell: the recipe.")


#: validation context flag: the data is the dump of a validated ``StructureDoc`` whose structure was not
#: changed since, so its ``geometry_digest`` is kept instead of computed again (a writer re-validating)
DIGEST_CHECKED = "geometry_digest_checked"


class StructureDoc(PerovdbDocument):
    """A crystal structure and what is known of it, independent of any calculation."""

    structure_id: str = Field(description="Content-derived id; see README 'Identifiers'.")
    structure: dict[str, Any] = Field(description="pymatgen Structure.as_dict().")
    geometry_digest: str = Field(
        default="",
        description="Digest of `structure`, what a model sees of it: computed on validation, never set by hand.",
    )
    formula: str = Field(description="Full formula of the cell, e.g. 'Cs8 Pb8 I24'.")
    reduced_formula: str = Field(description="Reduced formula, e.g. 'CsPbI3'.")
    elements: list[str] = Field(description="Elements, sorted alphabetically.")
    nelements: int = Field(ge=1, description="Number of elements.")
    chemsys: str = Field(description="Elements joined by '-', sorted.")
    nsites: int = Field(ge=1, description="Number of sites in the cell.")
    volume: float = Field(gt=0, description="Cell volume (Å^3).")
    density: float = Field(gt=0, description="Density (g/cm^3).")
    space_group_symbol: str | None = Field(default=None, description="Space group (spglib, symprec 0.1 Å).")
    space_group_number: int | None = Field(default=None, ge=1, le=230, description="Space group number.")
    perovskite: PerovskiteSites | None = Field(default=None, description="ABX3 site assignment, if ABX3-like.")
    origin: Origin = Field(description="'relaxed' DFT geometry, 'generated' from a composition, or other.")
    phase: str | None = Field(default=None, description="Phase label from the source (Cubic, Tetra, Ortho, Hex…).")
    generation: Generation | None = Field(default=None, description="Recipe, for generated structures.")
    sources: list[Source] = Field(min_length=1, description="Every source this structure was read from.")

    digested_fields: ClassVar[frozenset[str]] = frozenset({"structure"})  # by geometry_digest

    @model_validator(mode="before")
    @classmethod
    def _digest_geometry(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("structure"), dict):
            return data
        if data.get("geometry_digest") and (info.context or {}).get(DIGEST_CHECKED):
            return data  # a writer re-validating its own dump
        return {**data, "geometry_digest": content_hash(data["structure"])}

    def to_pymatgen(self) -> Structure:
        """The pymatgen Structure."""
        return Structure.from_dict(self.structure)

    @classmethod
    def from_structure(
        cls,
        structure: Structure,
        *,
        origin: Origin,
        source: Source,
        phase: str | None = None,
        generation: Generation | None = None,
        symprec: float | None = 0.1,
    ) -> StructureDoc:
        """Describe ``structure``: composition, density, symmetry, perovskite sites and its id."""
        from perovdb.perovskite import assign_sites, reduced_perovskite_formula

        composition = structure.composition  # pymatgen recomputes it on every access
        check_physical(structure, composition)
        elements = sorted(el.symbol for el in composition.elements)
        symbol, number = _space_group(structure, symprec)
        sites = assign_sites(structure)
        perovskite = None
        if sites is not None:
            perovskite = PerovskiteSites(
                a=sites.a,
                b=sites.b,
                x=sites.x,
                molecular_cations=sites.molecular_cations,
                formula=reduced_perovskite_formula(sites),
                mixing_type=mixing_type(sites.a, sites.b, sites.x),
            )
        if generation is not None:
            structure_id = recipe_id(generation.composition_counts, generation.supercell, generation.seed, generation.method)
        else:
            structure_id = geometry_id(structure)
        return cls(
            structure_id=structure_id,
            structure=structure_dict(structure),
            formula=composition.formula,
            reduced_formula=composition.reduced_formula,
            elements=elements,
            nelements=len(elements),
            chemsys="-".join(elements),
            nsites=len(structure),
            volume=structure.volume,
            density=_density(composition, structure.volume),
            space_group_symbol=symbol,
            space_group_number=number,
            perovskite=perovskite,
            origin=origin,
            phase=phase,
            generation=generation,
            sources=[source],
        )


#: two atoms closer than this (Å) are overlapping, whatever the elements (H–C is about 1.09 Å)
MIN_DISTANCE = 0.5
#: a cell with less volume per atom (Å³) is degenerate (flat or collapsed; diamond has 5.7)
MIN_VOLUME_PER_ATOM = 0.1
#: longest lattice vector (Å) and farthest fractional coordinate accepted: beyond them a cell is a typo
MAX_LATTICE_LENGTH = 1000.0
MAX_FRACTIONAL_COORDINATE = 1000.0


def _density(composition: Composition, volume: float) -> float:
    """g/cm³: the float pymatgen's ``Structure.density`` gives (the same operations in the same order),
    without building a unit-checked number at each step."""
    weight = sum(amount * _atomic_mass(element) for element, amount in composition.items())
    amu_in_g, cm3_per_ang3 = _unit_factors()
    return weight * amu_in_g / (volume * cm3_per_ang3)


@cache
def _atomic_mass(element: Element | Species) -> float:
    return float(element.atomic_mass)


@cache
def _unit_factors() -> tuple[float, float]:
    return float(Mass(1, "amu").to("g")), float(Length(1, "ang").to("cm")) ** 3


def check_geometry(structure: Structure) -> None:
    """Raise ``InvalidRecord`` for a cell no neighbour search or symmetry finder should see: numbers that are
    not finite, a flat or collapsed cell, a lattice vector or an atom position absurdly far out."""
    lattice, frac = structure.lattice.matrix, structure.frac_coords
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise InvalidRecord("the lattice or the atom positions hold numbers that are not finite", field="structure")
    longest = float(np.linalg.norm(lattice, axis=1).max())
    if longest > MAX_LATTICE_LENGTH:
        raise InvalidRecord(f"a lattice vector is {longest:.4g} Å long (> {MAX_LATTICE_LENGTH:g} Å)", field="lattice")
    volume = abs(float(np.linalg.det(lattice)))
    if volume < MIN_VOLUME_PER_ATOM * max(len(structure), 1):
        raise InvalidRecord(f"the cell is flat or collapsed: {volume:.4g} Å³ for {len(structure)} atom(s)", field="lattice")
    farthest = float(np.abs(frac).max()) if len(frac) else 0.0
    if farthest > MAX_FRACTIONAL_COORDINATE:
        raise InvalidRecord(f"a fractional coordinate is {farthest:.4g} (> {MAX_FRACTIONAL_COORDINATE:g})", field="structure")


def check_physical(structure: Structure, composition: Composition | None = None) -> None:
    """Raise ``InvalidRecord`` for what no real crystal has: a degenerate cell (``check_geometry``), disorder,
    dummy species, overlapping atoms (an atom and its own periodic images too)."""
    if len(structure) == 0:
        raise InvalidRecord("the structure has no atoms", field="structure")
    check_geometry(structure)
    if not structure.is_ordered:
        raise InvalidRecord("disordered (partially occupied) sites are not supported", field="structure")
    for species in composition if composition is not None else structure.composition:
        if isinstance(species, DummySpecies) or not isinstance(species, (Element, Species)):
            raise InvalidRecord(f"{species} is not a chemical element", field="species")
    centres, neighbours, _, distances = structure.get_neighbor_list(MIN_DISTANCE)
    if len(centres):
        i, j, d = centres[0], neighbours[0], distances[0]
        which = "and a periodic image of itself" if i == j else f"and {j} ({structure[j].species_string})"
        raise InvalidRecord(
            f"atoms {i} ({structure[i].species_string}) {which} overlap: {d:.3f} Å apart (< {MIN_DISTANCE} Å)",
            field="structure",
        )


def structure_dict(structure: Structure) -> dict[str, Any]:
    """pymatgen's ``as_dict()`` (verbosity 1), equal to it key for key and float for float, but built once
    per structure: pymatgen builds the lattice's dict again for every site and throws it away. The one
    tuple (``lattice.pbc``) is a list, as stored documents hold it, so writes need no sanitising pass."""
    if type(structure).as_dict is not Structure.as_dict:  # a subclass with a dict of its own
        data = structure.as_dict()
        data["lattice"]["pbc"] = list(data["lattice"]["pbc"])
        return data
    lattice = structure.lattice
    lattice_dict = {"matrix": lattice.matrix.tolist(), "pbc": list(lattice.pbc), **lattice.params_dict}
    lattice_dict["volume"] = lattice.volume
    species_dicts: dict[Any, dict[str, Any]] = {}
    sites = []
    for site, abc, xyz in zip(structure, structure.frac_coords.tolist(), structure.cart_coords.tolist(), strict=True):
        species = []
        for spec, occu in site.species.items():  # each site its own occupancy: 1 and 1.0 print differently
            known = species_dicts.get(spec)
            if known is None:
                known = species_dicts[spec] = {k: v for k, v in spec.as_dict().items() if k not in ("@module", "@class")}
            species.append({**known, "occu": occu})
        sites.append({"species": species, "abc": abc, "properties": site.properties, "label": site.label, "xyz": xyz})
    return {
        "@module": type(structure).__module__,
        "@class": type(structure).__name__,
        "charge": structure.charge,
        "lattice": lattice_dict,
        "properties": structure.properties,
        "sites": sites,
    }


def mixing_type(a: dict[str, float], b: dict[str, float], x: dict[str, float]) -> str:
    """'Pure', or which sites hold more than one species ('B-site and X-site mixed')."""
    mixed = [name for name, site in (("A", a), ("B", b), ("X", x)) if len(site) > 1]
    if not mixed:
        return "Pure"
    return " and ".join(f"{name}-site" for name in mixed) + " mixed"


def _space_group(structure: Structure, symprec: float | None) -> tuple[str | None, int | None]:
    """International symbol and number from spglib, on the cell pymatgen's ``SpacegroupAnalyzer`` builds for
    an ordered structure (species numbered in order of appearance, angle tolerance 5°); magnetic cells go
    through pymatgen."""
    if symprec is None:
        return None, None
    import spglib

    try:
        if "magmom" in structure.site_properties or any(getattr(sp, "spin", None) is not None for sp in structure.types_of_species):
            from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

            analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
            return analyzer.get_space_group_symbol(), analyzer.get_space_group_number()
        numbering: dict[Any, int] = {}
        numbers = [numbering.setdefault(tuple(site.species.items()), len(numbering) + 1) for site in structure]
        cell = (structure.lattice.matrix, structure.frac_coords, numbers)
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=5)
        if dataset is None:
            return None, None
        return dataset.international, int(dataset.number)
    except Exception:  # spglib gives up on some cells; the structure is still valid
        return None, None


def geometry_id(structure: Structure) -> str:
    """Id of a geometry: lattice parameters (Å 1e-3, degrees 1e-2) and species at wrapped fractional coordinates (1e-4), sorted.

    The same cell read from a CIF, a POSCAR or a printed structure gets the same id, however the file
    orients it in Cartesian space; site order, periodic images of a site and sub-tolerance noise do not
    matter. A different cell setting of the same crystal (a supercell, permuted axes) is a different geometry.
    """
    lengths = np.round(structure.lattice.abc, LATTICE_DECIMALS) + 0.0
    angles = np.round(structure.lattice.angles, ANGLE_DECIMALS) + 0.0
    frac = np.round(np.mod(np.round(structure.frac_coords, FRACTIONAL_DECIMALS), 1.0), FRACTIONAL_DECIMALS) % 1.0 + 0.0
    # every coordinate formatted by one '%' call: x, y, z of site i at 3i, 3i + 1, 3i + 2
    coordinates = (f"%.{FRACTIONAL_DECIMALS}f " * frac.size % tuple(frac.ravel().tolist())).split()
    sites = sorted(
        zip(_site_formulas(structure), coordinates[0::3], coordinates[1::3], coordinates[2::3], strict=True)
    )
    lattice_text = [f"{x:.{LATTICE_DECIMALS}f}" for x in lengths] + [f"{x:.{ANGLE_DECIMALS}f}" for x in angles]
    return "st-" + content_hash(["geometry", lattice_text, sites])


def _site_formulas(structure: Structure) -> list[str]:
    """Each site's ``species.formula`` ('Pb1'), computed once per distinct occupancy."""
    known: dict[tuple, str] = {}
    formulas = []
    for site in structure:
        key = tuple(site.species.items())
        formula = known.get(key)
        if formula is None:
            formula = known[key] = site.species.formula
        formulas.append(formula)
    return formulas


def recipe_id(composition_counts: dict[str, int], supercell: int, seed: int, method: str) -> str:
    """Id of a generated structure: its recipe, so PBE and HSE06 rows of one composition share it."""
    return "st-" + content_hash(["generated", method, sorted(composition_counts.items()), supercell, seed])
