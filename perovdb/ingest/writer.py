"""The ingest writer: parses the records readers yield (in worker processes for big batches), then
dedups, merges and upserts their documents here.

Per batch of raw records: records whose raw digest is in the ingest ledger (and whose documents
still exist) are skipped unparsed; the others are parsed, merged with what is stored (rules below),
validated, and written structures first, calculations second. A record is stored whole or not at
all; a rejected record changes nothing.

Merge rules (order-independent, so re-ingest changes nothing):
- structures: the same ``structure_id`` gains the new source; a generated structure takes the
  geometry of the preferred lattice-constant level (PBE over HSE06), whatever the ingest order;
- calculations: the same ``calculation_id`` with equal values keeps its first source (a duplicate
  row); different values from the same source row replace it (the file changed); different values
  from another row of the same data set are a conflict and that record is rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from maggma.core import Store
from typing_extensions import Self

from perovdb.db import Database, chunks
from perovdb.documents import CalculationDoc, StructureDoc, utcnow
from perovdb.documents.structure import DIGEST_CHECKED
from perovdb.errors import InvalidRecord
from perovdb.gc_passes import fewer_gc_passes
from perovdb.ingest.readers.composition_tables import LATTICE_LEVEL_PRIORITY
from perovdb.ingest.records import RawRecord, ReadResult, Record, parse_record, rejected
from perovdb.parallel import process_pool, resolve_workers

LEDGER = "ingest_ledger"
#: below this many records to parse in a batch, starting worker processes costs more than it saves
PARALLEL_THRESHOLD = 64


@dataclass
class Counts:
    """Documents of one collection by outcome."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class IngestReport:
    """What one ingest did: records read and rejected, documents new/updated/unchanged per collection."""

    read: int = 0
    skipped_unchanged: int = 0
    rejected: list[InvalidRecord] = field(default_factory=list)
    structures: Counts = field(default_factory=Counts)
    calculations: Counts = field(default_factory=Counts)

    @property
    def new(self) -> int:
        """New documents in all collections."""
        return self.structures.new + self.calculations.new

    @property
    def updated(self) -> int:
        """Updated documents in all collections."""
        return self.structures.updated + self.calculations.updated

    @property
    def ok(self) -> bool:
        """True when no record was rejected."""
        return not self.rejected

    def merge(self, other: IngestReport) -> None:
        """Add another report's numbers to this one."""
        self.read += other.read
        self.skipped_unchanged += other.skipped_unchanged
        self.rejected += other.rejected
        for name in ("structures", "calculations"):
            mine, theirs = getattr(self, name), getattr(other, name)
            mine.new += theirs.new
            mine.updated += theirs.updated
            mine.unchanged += theirs.unchanged


def merge_structure(current: StructureDoc | None, incoming: StructureDoc) -> StructureDoc:
    """``current`` with ``incoming``'s sources added (and its geometry, if of a preferred level).

    Never edits a document's ``structure``: the writer keeps the ``geometry_digest`` of what it merged."""
    if current is None:
        return incoming
    known = {source.key() for source in current.sources}
    sources = current.sources + [s for s in incoming.sources if s.key() not in known]
    base = current
    if _lattice_rank(incoming) < _lattice_rank(current):
        base = incoming.model_copy(update={"created_at": current.created_at})
    return base.model_copy(update={"sources": sources})


def _lattice_rank(doc: StructureDoc) -> int:
    if doc.generation is None:
        return len(LATTICE_LEVEL_PRIORITY)
    level = doc.generation.lattice_constant_level
    return LATTICE_LEVEL_PRIORITY.index(level) if level in LATTICE_LEVEL_PRIORITY else len(LATTICE_LEVEL_PRIORITY)


def merge_calculation(current: CalculationDoc | None, incoming: CalculationDoc) -> CalculationDoc:
    """The calculation to keep; raise ``InvalidRecord`` when two rows disagree (see module doc)."""
    if current is None or current.source.key() == incoming.source.key():
        return incoming
    if current.properties == incoming.properties:
        return current
    raise InvalidRecord(
        f"conflicts with record {current.source.record} of {current.source.dataset}: same structure and level "
        f"of theory but different values ({current.properties.present()} vs {incoming.properties.present()})",
        field="properties",
    )


class IngestWriter:
    """Writes reader output into a ``Database``; see the module docstring for the rules.

    The records of a batch are parsed in ``workers`` processes (default ``Settings.num_workers``, 0 = all
    cores) when there are enough of them; everything else happens here, batch after batch, in the order
    a one-process ingest does it, so the outcome is the same.
    """

    def __init__(self, db: Database, batch_size: int | None = None, workers: int | None = None) -> None:
        self.db = db
        self.batch_size = batch_size or db.settings.ingest_batch_size
        self.workers = resolve_workers(workers, db.settings.num_workers)
        self.ledger: Store = db.store(LEDGER, key="ledger_key")

    def write(
        self, results: Iterable[ReadResult], on_progress: Callable[[int], None] | None = None
    ) -> IngestReport:
        """Ingest every result; ``on_progress(n)`` is called after each batch of ``n`` records."""
        report = IngestReport()
        counted: dict[str, str] = {}  # id → new/updated/unchanged: each document counted once per ingest
        with fewer_gc_passes(self.db.settings.bulk_gc_threshold), RecordParser(self.workers) as parser:
            for batch in chunks(results, self.batch_size):
                self._write_batch(batch, report, parser, counted)
                if on_progress:
                    on_progress(len(batch))
        return report

    # -- one batch --------------------------------------------------------------------------
    def _write_batch(
        self, batch: list[ReadResult], report: IngestReport, parser: RecordParser, counted: dict[str, str]
    ) -> None:
        report.read += len(batch)
        raw = [item for item in batch if isinstance(item, RawRecord)]
        report.rejected += [item for item in batch if isinstance(item, InvalidRecord)]
        records: list[tuple[RawRecord, Record]] = []
        for item, outcome in parser.parse(self._changed(raw, report)):
            if isinstance(outcome, InvalidRecord):
                report.rejected.append(outcome)
            else:
                records.append((item, outcome))
        stored_s = self._load(self.db.structures, "structure_id", StructureDoc, records, "structures")
        stored_c = self._load(self.db.calculations, "calculation_id", CalculationDoc, records, "calculations")
        staged_s: dict[str, StructureDoc] = {}
        staged_c: dict[str, CalculationDoc] = {}
        accepted: list[tuple[RawRecord, Record]] = []
        for item, record in records:
            try:
                these_c = {}
                for calc in record.calculations:
                    current = these_c.get(calc.calculation_id) or staged_c.get(calc.calculation_id)
                    these_c[calc.calculation_id] = merge_calculation(
                        current or stored_c.get(calc.calculation_id), calc
                    )
                these_s = {}
                for doc in record.structures:
                    current = these_s.get(doc.structure_id) or staged_s.get(doc.structure_id)
                    these_s[doc.structure_id] = merge_structure(current or stored_s.get(doc.structure_id), doc)
            except InvalidRecord as error:
                report.rejected.append(rejected(error, record.name))
                continue
            staged_s.update(these_s)
            staged_c.update(these_c)
            accepted.append((item, record))
        self._upsert(self.db.structures, "structure_id", staged_s, stored_s, report.structures, counted)
        self._upsert(self.db.calculations, "calculation_id", staged_c, stored_c, report.calculations, counted)
        self._record_ledger(accepted)

    def _changed(self, raw: list[RawRecord], report: IngestReport) -> list[RawRecord]:
        """The records that must be parsed: not in the ledger, changed, or whose documents are gone."""
        if not raw:
            return []
        entries = {
            entry["ledger_key"]: entry
            for entry in self.ledger.query({"ledger_key": {"$in": [item.ledger_key for item in raw]}})
        }
        candidates = [item for item in raw if entries.get(item.ledger_key, {}).get("digest") == item.digest]
        wanted_s = {sid for item in candidates for sid in entries[item.ledger_key]["structure_ids"]}
        wanted_c = {cid for item in candidates for cid in entries[item.ledger_key]["calculation_ids"]}
        have_s = _existing(self.db.structures, "structure_id", wanted_s)
        have_c = _existing(self.db.calculations, "calculation_id", wanted_c)
        skip = set()
        for item in candidates:
            entry = entries[item.ledger_key]
            if set(entry["structure_ids"]) <= have_s and set(entry["calculation_ids"]) <= have_c:
                skip.add(item.ledger_key)
        report.skipped_unchanged += len(skip)
        return [item for item in raw if item.ledger_key not in skip]

    def _load(
        self,
        store: Store,
        key: str,
        document: type[Any],
        records: list[tuple[RawRecord, Record]],
        attribute: str,
    ) -> dict[str, Any]:
        ids = list({getattr(doc, key) for _, record in records for doc in getattr(record, attribute)})
        if not ids:
            return {}
        found = {}
        for stored in store.query({key: {"$in": ids}}):
            stored.pop("_id", None)
            found[stored[key]] = document.model_validate(stored)
        return found

    def _upsert(
        self, store: Store, key: str, staged: dict[str, Any], stored: dict[str, Any], counts: Counts,
        counted: dict[str, str],
    ) -> None:
        """Write what changed. Each document is counted once per ingest, against the store as it was before:
        new, updated (changed by any batch) or unchanged."""
        now = utcnow()
        writes = []
        for doc_id, doc in staged.items():
            old = stored.get(doc_id)
            if old is None:
                doc = doc.model_copy(update={"created_at": now, "last_updated": now})
                status = "new"
            elif old.content_digest() == doc.content_digest():
                status = "unchanged"
            else:
                doc = doc.model_copy(update={"created_at": old.created_at, "last_updated": now})
                status = "updated"
            before = counted.get(doc_id)
            if before is None or (before == "unchanged" and status == "updated"):
                if before is not None:
                    counts.unchanged -= 1
                setattr(counts, status, getattr(counts, status) + 1)
                counted[doc_id] = status
            if status == "unchanged":
                continue
            # re-validate what we write; merges never change a structure, so its digest stands
            writes.append(type(doc).model_validate(doc.model_dump(), context={DIGEST_CHECKED: True}).to_store())
        if writes:
            store.update(writes, key=key)

    def _record_ledger(self, accepted: list[tuple[RawRecord, Record]]) -> None:
        entries = [
            {
                "ledger_key": item.ledger_key,
                "dataset": item.dataset,
                "record": item.key,
                "digest": item.digest,
                "structure_ids": sorted({doc.structure_id for doc in record.structures}),
                "calculation_ids": sorted({calc.calculation_id for calc in record.calculations}),
                "last_updated": utcnow(),
            }
            for item, record in accepted
        ]
        if entries:
            self.ledger.update(entries, key="ledger_key")


class RecordParser:
    """Parses raw records, in this process or, for ``PARALLEL_THRESHOLD`` records or more, in a pool of
    ``workers`` processes that starts with the first such batch (a re-ingest that skips everything never
    starts one) and stops on leaving the ``with`` block."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def parse(self, items: list[RawRecord]) -> list[tuple[RawRecord, Record | InvalidRecord]]:
        """Each item with its parsed ``Record``, or the ``InvalidRecord`` that rejects it, in order."""
        if self.workers <= 1 or len(items) < PARALLEL_THRESHOLD:
            return [(item, parse_record(item)) for item in items]
        if self._pool is None:
            self._pool = process_pool(self.workers)
        chunksize = max(1, len(items) // (self.workers * 4))
        return list(zip(items, self._pool.map(parse_record, items, chunksize=chunksize), strict=True))


def _existing(store: Store, key: str, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return {doc[key] for doc in store.query({key: {"$in": sorted(ids)}}, properties=[key])}
