"""The properties perovdb stores, with units and bounds: one registry for ingest, queries and ML targets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from perovdb.errors import InvalidRecord


class LevelOfTheory(str, Enum):
    """How a value was obtained: a DFT functional, or experiment."""

    PBE = "PBE"
    HSE06 = "HSE06"
    OPTB88VDW = "OptB88vdW"
    TBMBJ = "TBmBJ"
    PBESOL = "PBEsol"
    SCAN = "SCAN"
    R2SCAN = "r2SCAN"
    EXPERIMENT = "experiment"

    @classmethod
    def parse(cls, text: str) -> LevelOfTheory:
        """Accept the usual spellings (``hse``, ``HSE06``, ``optb88vdw``, ``exp``)."""
        key = text.strip().lower().replace("-", "").replace("_", "")
        aliases = {"hse": cls.HSE06, "hse06": cls.HSE06, "gga": cls.PBE, "exp": cls.EXPERIMENT, "mbj": cls.TBMBJ}
        if key in aliases:
            return aliases[key]
        for level in cls:
            if level.value.lower() == key:
                return level
        choices = ", ".join(level.value for level in cls)
        raise InvalidRecord(f"unknown level of theory {text!r}; choose one of {choices}", field="level_of_theory")


@dataclass(frozen=True)
class PropertySpec:
    """A stored property: its unit, what it means, and the values that make physical sense."""

    name: str
    unit: str
    description: str
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: float | None) -> float | None:
        """Return ``value`` as float, ``None`` for not computed; raise on NaN or out-of-range values."""
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidRecord(f"{value!r} is not a number", field=self.name) from exc
        if math.isnan(number) or math.isinf(number):
            raise InvalidRecord(f"{value!r} is not a finite number", field=self.name)
        if self.minimum is not None and number < self.minimum:
            raise InvalidRecord(f"{number} {self.unit} is below the physical minimum {self.minimum}", field=self.name)
        if self.maximum is not None and number > self.maximum:
            raise InvalidRecord(f"{number} {self.unit} is above the plausible maximum {self.maximum}", field=self.name)
        return number


PROPERTIES: dict[str, PropertySpec] = {
    spec.name: spec
    for spec in (
        PropertySpec("band_gap", "eV", "Electronic band gap.", 0.0, 30.0),
        PropertySpec("lattice_constant", "Å", "Pseudo-cubic lattice constant of the ABX3 cell.", 1.0, 20.0),
        PropertySpec(
            "formation_energy_per_fu", "eV/f.u.", "Formation energy per ABX3 formula unit w.r.t. elemental states."
        ),
        PropertySpec(
            "decomposition_energy_per_fu",
            "eV/f.u.",
            "Decomposition energy per ABX3 formula unit w.r.t. the competing halides (positive: unstable).",
        ),
        PropertySpec("dielectric_constant", "", "Static electronic dielectric constant.", 0.0, 1000.0),
        PropertySpec("pv_figure_of_merit", "", "Photovoltaic figure of merit as defined by the source."),
        PropertySpec("formation_energy_per_atom", "eV/atom", "Formation energy per atom."),
        PropertySpec("energy_above_hull_per_atom", "eV/atom", "Energy above the convex hull per atom.", 0.0),
    )
}


def property_spec(name: str) -> PropertySpec:
    """Look up a property by name; a clear error lists the known ones."""
    try:
        return PROPERTIES[name]
    except KeyError:
        raise InvalidRecord(
            f"unknown property {name!r}; known properties: {', '.join(PROPERTIES)}", field="property"
        ) from None
