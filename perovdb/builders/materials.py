"""MaterialsBuilder: ``structures`` + ``calculations`` → ``materials``, incrementally.

A material is one compound in one phase. Its ``group_key`` (the matching rule) is the per-site
composition (A, B and X species with fractions rounded to 0.01, or the reduced formula for a non-ABX3
structure), the phase label and the origin: the PBE- and HSE06-relaxed geometries of one compound in
one phase become one material; a generated (unrelaxed) cell never merges with a relaxed one.

Preferred values (``preferred``): per property, the computed value of the most trusted level of
theory present (``LEVEL_PREFERENCE``: HSE06 first, PBE last), and within a level the newest
calculation. Experimental values are kept apart in ``experimental``.

Planning: the first run (or one under maggma's ``mrun``) compares every group with its material. Later
runs of perovdb's runner know when the previous run started (``since``) and compare only the groups of
structures and calculations stamped since then, of those added (found by id, whatever their stamp) and
of those removed (ids listed by a material but gone); a test checks the result equals a comparison of
every group.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

from maggma.core import Store

from perovdb.builders.base import BuildPlan, IncrementalBuilder, keep_timestamps
from perovdb.db import chunks
from perovdb.documents import PROPERTIES, MaterialDoc, PropertyValue, content_hash, naive_utc, utcnow
from perovdb.documents.properties import LevelOfTheory

BUILDER_VERSION = "materials-1"

#: most trusted first; levels not listed rank after these, experiment is never "preferred"
LEVEL_PREFERENCE: tuple[str, ...] = (
    LevelOfTheory.HSE06.value,
    LevelOfTheory.R2SCAN.value,
    LevelOfTheory.SCAN.value,
    LevelOfTheory.TBMBJ.value,
    LevelOfTheory.PBESOL.value,
    LevelOfTheory.OPTB88VDW.value,
    LevelOfTheory.PBE.value,
)

_STRUCTURE_FIELDS = ["structure_id", "reduced_formula", "perovskite", "phase", "origin", "last_updated"]
#: what a material is built from: everything of a structure but its sites (``structure``)
_MEMBER_FIELDS = [*_STRUCTURE_FIELDS, "formula", "elements", "nsites"]
_CALC_FIELDS = ["calculation_id", "structure_id", "last_updated"]
#: what a plan reads of a stored material
_STORED = ["material_id", "group_key", "structure_ids", "calculation_ids", "inputs_last_updated"]


def compound_key(structure: dict[str, Any]) -> str:
    """The compound: per-site composition with fractions rounded to 0.01 (reduced formula if not ABX3).

    All phases and both functionals' geometries of one compound share it (used to group folds and splits).
    """
    sites = structure.get("perovskite")
    if sites:
        return "|".join(
            site + ":" + ",".join(f"{sp}{round(x, 2):g}" for sp, x in sorted(sites[site].items()))
            for site in ("a", "b", "x")
        )
    return structure["reduced_formula"]


def group_key(structure: dict[str, Any]) -> str:
    """The matching rule: compound + phase + origin (see module docstring)."""
    return f"{compound_key(structure)}#{structure.get('phase') or 'unknown'}#{structure['origin']}"


@lru_cache(maxsize=1 << 16)
def material_id(key: str) -> str:
    """Id of the material of a group key."""
    return "mat-" + content_hash(["material", key])


def _level_rank(level: str) -> int:
    return LEVEL_PREFERENCE.index(level) if level in LEVEL_PREFERENCE else len(LEVEL_PREFERENCE)


def build_material(structures: list[dict[str, Any]], calculations: list[dict[str, Any]], now: datetime) -> MaterialDoc:
    """The material document of one group (pure: no database access)."""
    key = group_key(structures[0])
    by_level: dict[str, dict[str, tuple[datetime, PropertyValue]]] = defaultdict(dict)
    for calc in calculations:
        for prop, value in calc["properties"].items():
            if value is None:
                continue
            candidate = PropertyValue(
                value=value,
                unit=PROPERTIES[prop].unit,
                level_of_theory=calc["level_of_theory"],
                calculation_id=calc["calculation_id"],
                structure_id=calc["structure_id"],
            )
            stamp = calc["last_updated"]
            current = by_level[prop].get(calc["level_of_theory"])
            if current is None or (stamp, calc["calculation_id"]) > (current[0], current[1].calculation_id):
                by_level[prop][calc["level_of_theory"]] = (stamp, candidate)
    computed: dict[str, dict[str, PropertyValue]] = {}
    experimental: dict[str, PropertyValue] = {}
    preferred: dict[str, PropertyValue] = {}
    for prop, levels in sorted(by_level.items()):
        values = {level: pv for level, (_, pv) in levels.items()}
        if LevelOfTheory.EXPERIMENT.value in values:
            experimental[prop] = values.pop(LevelOfTheory.EXPERIMENT.value)
        if values:
            computed[prop] = dict(sorted(values.items()))
            preferred[prop] = min(values.values(), key=lambda pv: _level_rank(pv.level_of_theory))
    representative = _representative(structures, preferred)
    inputs = [s["last_updated"] for s in structures] + [c["last_updated"] for c in calculations]
    return MaterialDoc(
        material_id=material_id(key),
        group_key=key,
        structure_id=representative["structure_id"],
        structure_ids=sorted(s["structure_id"] for s in structures),
        formula=representative["formula"],
        reduced_formula=representative["reduced_formula"],
        elements=representative["elements"],
        nsites=representative["nsites"],
        origin=representative["origin"],
        phase=representative.get("phase"),
        perovskite=representative.get("perovskite"),
        properties=computed,
        preferred=preferred,
        experimental=experimental,
        calculation_ids=sorted(c["calculation_id"] for c in calculations),
        inputs_last_updated=max(inputs),
        builder_version=BUILDER_VERSION,
        created_at=now,
        last_updated=now,
    )


def _grouped(structures: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Structures by group key."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in structures:
        groups[group_key(doc)].append(doc)
    return groups


def _representative(structures: list[dict[str, Any]], preferred: dict[str, PropertyValue]) -> dict[str, Any]:
    """The structure of the preferred band gap (else of any preferred value, else the first by id)."""
    ordered = sorted(structures, key=lambda s: s["structure_id"])
    for prop in ("band_gap", *sorted(preferred)):
        if prop in preferred:
            return next(s for s in ordered if s["structure_id"] == preferred[prop].structure_id)
    return ordered[0]


class MaterialsBuilder(IncrementalBuilder):
    """Keeps ``materials`` in sync with ``structures`` and ``calculations`` (see module docstring)."""

    name = "materials"
    version = BUILDER_VERSION

    def __init__(self, structures: Store, calculations: Store, materials: Store, full: bool = False, **kwargs: Any):
        self.structures = structures
        self.calculations = calculations
        self.materials = materials
        super().__init__(sources=[structures, calculations], targets=[materials], full=full, **kwargs)

    def plan(self) -> BuildPlan:
        """Groups whose structures, calculations or their timestamps differ from the stored material.

        With ``since`` (a completed earlier run), only the groups of structures and calculations
        written since then, added, or removed are compared; else every group is.
        """
        if self.full or self.since is None:
            return self._plan_all()
        touched = self._touched_structures(self.since)
        if not touched:
            return BuildPlan(total=self.materials.count())
        ids = sorted(touched)
        current = list(self.structures.query({"structure_id": {"$in": ids}}, properties=_STRUCTURE_FIELDS))
        stored = {m["material_id"]: m for m in self.materials.query({"structure_ids": {"$in": ids}}, properties=_STORED)}
        keys = {group_key(doc) for doc in current} | {m["group_key"] for m in stored.values()}
        self._read_stored(stored, {material_id(key) for key in keys})
        # the other members of those groups did not change: they are where their material says
        others = {sid for m in stored.values() for sid in m["structure_ids"]} - touched
        members = current + list(self.structures.query({"structure_id": {"$in": sorted(others)}}, _STRUCTURE_FIELDS))
        groups = _grouped(members)
        self._read_stored(stored, {material_id(key) for key in groups})
        calcs = self.calculations.query({"structure_id": {"$in": sorted(touched | others)}}, properties=_CALC_FIELDS)
        plan = self._compare(groups, calcs, stored)
        plan.total = self.materials.count() + plan.reasons.get("new", 0) - len(plan.remove)
        return plan

    def _plan_all(self) -> BuildPlan:
        """Compare every group with its stored material."""
        groups = _grouped(self.structures.query({}, properties=_STRUCTURE_FIELDS))
        stored = {d["material_id"]: d for d in self.materials.query({}, properties=_STORED)}
        return self._compare(groups, self.calculations.query({}, properties=_CALC_FIELDS), stored)

    def _touched_structures(self, since: datetime) -> set[str]:
        """Structures written since ``since``, added or removed since the materials were built, or
        whose calculations were (the calculations' ids are compared with those the materials list)."""
        structure_ids = set(self.structures.distinct("structure_id"))
        touched = structure_ids ^ set(self.materials.distinct("structure_ids"))
        written = {"last_updated": {"$gte": since}}
        touched.update(d["structure_id"] for d in self.structures.query(written, properties=["structure_id"]))
        calculation_ids = set(self.calculations.distinct("calculation_id"))
        listed = set(self.materials.distinct("calculation_ids"))
        changed = {"$or": [written, {"calculation_id": {"$in": sorted(calculation_ids - listed)}}]}
        touched.update(c["structure_id"] for c in self.calculations.query(changed, properties=["structure_id"]))
        gone = sorted(listed - calculation_ids)
        if gone:
            for material in self.materials.query({"calculation_ids": {"$in": gone}}, properties=["structure_ids"]):
                touched.update(material["structure_ids"])
        return touched

    def _read_stored(self, stored: dict[str, dict[str, Any]], ids: set[str]) -> None:
        """Add the stored materials of ``ids`` not yet in ``stored``."""
        missing = sorted(ids - set(stored))
        if missing:
            found = self.materials.query({"material_id": {"$in": missing}}, properties=_STORED)
            stored.update((m["material_id"], m) for m in found)

    def _compare(
        self,
        groups: dict[str, list[dict[str, Any]]],
        calcs: Iterable[dict[str, Any]],
        stored: dict[str, dict[str, Any]],
    ) -> BuildPlan:
        """The plan for ``groups`` against their ``stored`` materials (those of no group are removed)."""
        calcs_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for calc in calcs:
            calcs_of[calc["structure_id"]].append(calc)
        plan = BuildPlan(total=len(groups))
        reasons: Counter[str] = Counter()
        for key, members in groups.items():
            ids = sorted(m["structure_id"] for m in members)
            calc_list = [c for sid in ids for c in calcs_of.get(sid, [])]
            newest = max([m["last_updated"] for m in members] + [c["last_updated"] for c in calc_list])
            old = stored.get(material_id(key))
            if self.full:
                reason = "full rebuild"
            elif old is None:
                reason = "new"
            elif old["structure_ids"] != ids or old["calculation_ids"] != sorted(c["calculation_id"] for c in calc_list):
                reason = "inputs added or removed"
            elif naive_utc(old["inputs_last_updated"]) < naive_utc(newest):
                reason = "inputs changed"
            else:
                continue
            reasons[reason] += 1
            plan.build.append(ids)
        plan.remove = sorted(set(stored) - {material_id(key) for key in groups})
        plan.reasons = dict(reasons)
        return plan

    def items_for(self, keys: list[Any], batch: int = 200) -> Iterator[dict[str, Any]]:
        """The structures and calculations of each planned group, read in batches of groups.

        A large plan is read in at most four batches (of up to 2 000 groups): on backends without
        indexes each batch is a scan of the whole collection, so a fixed batch size made a full build
        quadratic in the number of structures.
        """
        batch = max(batch, min(2000, -(-len(keys) // 4)))
        for group_batch in chunks(keys, batch):
            ids = [sid for group in group_batch for sid in group]
            found = self.structures.query({"structure_id": {"$in": ids}}, properties=_MEMBER_FIELDS)
            structures = {d["structure_id"]: d for d in found}
            calcs_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for calc in self.calculations.query({"structure_id": {"$in": ids}}):
                calcs_of[calc["structure_id"]].append(calc)
            for group in group_batch:
                yield {
                    "structures": [structures[sid] for sid in group if sid in structures],
                    "calculations": [c for sid in group for c in calcs_of.get(sid, [])],
                }

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """Build one material document (no database access)."""
        return build_material(item["structures"], item["calculations"], utcnow()).to_store()

    def update_targets(self, items: list[dict[str, Any]]) -> None:
        """Upsert; a material whose content did not change keeps its ``last_updated``."""
        if not items:
            return
        ids = [item["material_id"] for item in items]
        stored = {d["material_id"]: d for d in self.materials.query({"material_id": {"$in": ids}})}
        writes = []
        for item in items:
            self.changed += keep_timestamps(item, stored.get(item["material_id"]), MaterialDoc)
            writes.append(item)
        self.materials.update(writes, key="material_id")

    def remove_targets(self, keys: list[str]) -> int:
        """Delete materials whose structures are all gone."""
        self.materials.remove_docs({"material_id": {"$in": keys}})
        return len(keys)

