"""``calculations``: one result set per (structure, level of theory, source)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from perovdb.documents.base import PerovdbDocument, Source, content_hash
from perovdb.documents.properties import PROPERTIES, LevelOfTheory


class CalculationProperties(BaseModel):
    """Computed or measured values; ``None`` means not computed (never zero)."""

    model_config = ConfigDict(extra="forbid")

    band_gap: float | None = Field(default=None, ge=0, description="Band gap (eV).")
    lattice_constant: float | None = Field(default=None, gt=0, description="Pseudo-cubic lattice constant (Å).")
    formation_energy_per_fu: float | None = Field(default=None, description="Formation energy (eV per formula unit).")
    decomposition_energy_per_fu: float | None = Field(
        default=None, description="Decomposition energy (eV per formula unit; positive means unstable)."
    )
    dielectric_constant: float | None = Field(default=None, ge=0, description="Static dielectric constant (unitless).")
    pv_figure_of_merit: float | None = Field(default=None, description="Photovoltaic figure of merit (source's units).")
    formation_energy_per_atom: float | None = Field(default=None, description="Formation energy (eV/atom).")
    energy_above_hull_per_atom: float | None = Field(default=None, ge=0, description="Energy above hull (eV/atom).")

    @field_validator("*", mode="before")
    @classmethod
    def _checked(cls, value: object, info: object) -> object:
        return PROPERTIES[info.field_name].check(value)  # type: ignore[attr-defined]

    def present(self) -> dict[str, float]:
        """The properties that have a value."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CalculationDoc(PerovdbDocument):
    """Results of one calculation (or measurement) on one stored structure."""

    calculation_id: str = Field(description="Derived from structure_id, level of theory and source data set.")
    structure_id: str = Field(description="The structure these results belong to.")
    level_of_theory: LevelOfTheory = Field(description="DFT functional, or 'experiment'.")
    properties: CalculationProperties = Field(description="Values with units (see each field).")
    source: Source = Field(description="Where the values were read from.")

    @staticmethod
    def make_id(structure_id: str, level_of_theory: LevelOfTheory | str, dataset: str) -> str:
        """Content-derived id: the same (structure, level, data set) always gives the same id."""
        level = LevelOfTheory(level_of_theory).value
        return "calc-" + content_hash([structure_id, level, dataset])
