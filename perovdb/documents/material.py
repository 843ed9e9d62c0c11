"""``materials``: one summary per structure, every property by level of theory, and the preferred value."""

from __future__ import annotations

from datetime import datetime

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
    structure_id: str = Field(description="Structure (geometry) the value was computed on.")


class MaterialDoc(PerovdbDocument):
    """One compound in one phase: its structures and all their results side by side (built)."""

    material_id: str = Field(description="Derived from group_key.")
    group_key: str = Field(description="Composition (per site) and phase: the matching rule, see README.")
    structure_id: str = Field(description="Representative structure (of the preferred level's calculation).")
    structure_ids: list[str] = Field(description="All structures of this compound and phase (e.g. PBE and HSE06 geometries).")
    calculation_ids: list[str] = Field(default_factory=list, description="Calculations that contributed.")
    formula: str = Field(description="Full formula of the cell.")
    reduced_formula: str = Field(description="Reduced formula.")
    elements: list[str] = Field(description="Elements, sorted.")
    nsites: int = Field(ge=1, description="Sites in the cell.")
    origin: str = Field(description="'relaxed' or 'generated' (from the structure).")
    phase: str | None = Field(default=None, description="Phase label.")
    perovskite: PerovskiteSites | None = Field(default=None, description="ABX3 site assignment.")
    properties: dict[str, dict[str, PropertyValue]] = Field(
        default_factory=dict, description="property → level of theory → computed value (newest calculation per level)."
    )
    preferred: dict[str, PropertyValue] = Field(
        default_factory=dict, description="property → preferred computed value (policy in README)."
    )
    experimental: dict[str, PropertyValue] = Field(
        default_factory=dict, description="property → measured value, kept apart from computed ones."
    )
    inputs_last_updated: datetime = Field(description="Newest last_updated among the inputs (for incremental builds).")
    builder_version: str = Field(description="Version of the builder that made this document.")
