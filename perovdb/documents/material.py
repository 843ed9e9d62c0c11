"""``materials``: one summary per structure, every property by level of theory, and the preferred value."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from perovdb.documents.base import PerovdbDocument
from perovdb.documents.structure import PerovskiteSites


class PropertyValue(BaseModel):
    """One value of a property with its provenance."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(description="The value, in the property's unit.")
    unit: str = Field(description="Unit of the value.")
    level_of_theory: str = Field(description="Level of theory the value comes from.")
    calculation_id: str = Field(description="Calculation that holds the value.")


class MaterialDoc(PerovdbDocument):
    """A structure with all its results side by side (built by the materials builder)."""

    material_id: str = Field(description="Same as the structure_id it summarises.")
    structure_id: str = Field(description="The structure summarised.")
    formula: str = Field(description="Full formula of the cell.")
    reduced_formula: str = Field(description="Reduced formula.")
    elements: list[str] = Field(description="Elements, sorted.")
    nsites: int = Field(ge=1, description="Sites in the cell.")
    origin: str = Field(description="'relaxed' or 'generated' (from the structure).")
    phase: str | None = Field(default=None, description="Phase label.")
    group_key: str | None = Field(default=None, description="Compound-and-phase key that groups related structures.")
    perovskite: PerovskiteSites | None = Field(default=None, description="ABX3 site assignment.")
    properties: dict[str, dict[str, PropertyValue]] = Field(
        default_factory=dict, description="property → level of theory → value (experiment kept as its own level)."
    )
    preferred: dict[str, PropertyValue] = Field(
        default_factory=dict, description="property → preferred computed value (policy in README)."
    )
    calculation_ids: list[str] = Field(default_factory=list, description="Calculations that contributed.")
