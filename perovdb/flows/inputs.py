"""The inputs of perovdb's jobs: what to train on, what to predict, with which settings (validated, serialisable)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from perovdb.db import Database
from perovdb.documents import content_hash
from perovdb.query import check_filter


class StructureQuery(BaseModel):
    """A set of structures: a filter on ``structures``, optionally only those lacking a computed property."""

    model_config = ConfigDict(extra="forbid")

    filter: dict[str, Any] = Field(default_factory=dict, description="MongoDB filter on structures.")
    without_property: str | None = Field(default=None, description="Only structures with no value of this property…")
    without_level: str | None = Field(default=None, description="…at this level of theory (e.g. HSE06).")
    limit: int | None = Field(default=None, ge=1, description="At most this many (by structure_id order).")

    def resolve(self, db: Database) -> list[str]:
        """Matching structure_ids, sorted (what the job saw is recorded in its provenance)."""
        check_filter(self.filter)
        ids = sorted(d["structure_id"] for d in db.structures.query(self.filter, properties=["structure_id"]))
        if self.without_property:
            criteria: dict[str, Any] = {f"properties.{self.without_property}": {"$ne": None}}
            if self.without_level:
                criteria["level_of_theory"] = self.without_level
            having = {c["structure_id"] for c in db.calculations.query(criteria, properties=["structure_id"])}
            ids = [i for i in ids if i not in having]
        return ids[: self.limit] if self.limit else ids


class DatasetQuery(BaseModel):
    """Training data: one property at one level of theory, on the structures of a query."""

    model_config = ConfigDict(extra="forbid")

    property: str = Field(default="band_gap", description="Target property (see the property registry).")
    level_of_theory: str = Field(default="HSE06", description="Level of theory of the targets.")
    structures: dict[str, Any] = Field(default_factory=dict, description="Filter on structures (e.g. origin).")
    datasets: list[str] = Field(default_factory=list, description="Only calculations from these source datasets.")
    limit: int | None = Field(default=None, ge=1, description="At most this many examples (by structure_id).")

    def resolve(self, db: Database) -> tuple[list[str], list[float], dict[str, Any]]:
        """(structure_ids, targets, snapshot): one target per structure (newest calculation), and what was matched."""
        check_filter(self.structures)
        allowed = {d["structure_id"] for d in db.structures.query(self.structures, properties=["structure_id"])}
        criteria: dict[str, Any] = {
            "level_of_theory": self.level_of_theory,
            f"properties.{self.property}": {"$ne": None},
        }
        if self.datasets:
            criteria["source.dataset"] = {"$in": self.datasets}
        newest: dict[str, dict[str, Any]] = {}
        for calc in db.calculations.query(
            criteria, properties=["calculation_id", "structure_id", "properties", "last_updated"]
        ):
            sid = calc["structure_id"]
            if sid in allowed and (sid not in newest or calc["last_updated"] > newest[sid]["last_updated"]):
                newest[sid] = calc
        ids = sorted(newest)[: self.limit] if self.limit else sorted(newest)
        targets = [float(newest[i]["properties"][self.property]) for i in ids]
        calculation_ids = [newest[i]["calculation_id"] for i in ids]
        snapshot = {
            "query": self.model_dump(mode="json"),
            "n": len(ids),
            "structure_ids_sha256": content_hash(ids, length=64),
            "calculation_ids_sha256": content_hash(calculation_ids, length=64),
            "targets_sha256": content_hash(targets, length=64),
            "digest": content_hash([ids, calculation_ids, targets]),
        }
        return ids, targets, snapshot
