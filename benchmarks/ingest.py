"""Ingest benchmark (issue: foundation). Prints ratios measured in this one run; no timed assertions.

For a fresh embedded store (monty://) and memory://, ingests the 848 composition-table rows, the 983
multi-fidelity rows and the 50 JARVIS sample structures, and reports:
- records/s end to end;
- the time spent parsing and generating structures alone (the same parsers, no documents);
- the time of a bare ``insert_many`` of the same final documents into a fresh store of the same backend;
- perovdb's own share (validation, dedup, symmetry, bookkeeping) = end-to-end − parsing − bare write,
  target ≤ 30 % of end-to-end;
- re-ingest of unchanged data, target ≥ 5x faster than the first ingest;
- the first ingest again into another fresh store with records parsed in worker processes (one per
  core, ``Settings.num_workers``), and its speed-up. The share above is measured on the one-process
  ingest, as the target defines it (parsing alone is measured in one process too).

Run: ``.venv/bin/python benchmarks/ingest.py``
"""

from __future__ import annotations

import csv
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from perovdb import connect  # noqa: E402
from perovdb.config import Settings  # noqa: E402
from perovdb.ingest import ingest  # noqa: E402
from perovdb.ingest.readers.composition_tables import COMPOSITION_COLUMNS, PROPERTY_COLUMNS, detect_level  # noqa: E402
from perovdb.parallel import resolve_workers  # noqa: E402
from perovdb.perovskite import SiteFractions, generate_supercell, parse_printed_structure, supercell_for_mixing  # noqa: E402

DATA = REPO / "data"
SOURCES = [
    (DATA / "mannodi_halide_perovskites" / "PBE_data.csv", {}),
    (DATA / "mannodi_halide_perovskites" / "HSE_data.csv", {}),
    (DATA / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv", {}),
    (DATA / "jarvis_alignn_sample", {"property_name": "band_gap", "level": "OptB88vdW"}),
]


def parse_only(limit: int | None = None) -> int:
    """Parse and generate every structure (or the first ``limit`` of each source) with the same parsers
    ingest uses, nothing else."""
    n = 0
    for path in SOURCES[:2]:
        table = path[0]
        level = detect_level(table)
        first = 2 + len(PROPERTY_COLUMNS[level])
        with open(table, newline="") as handle:
            for row in itertools.islice(csv.reader(handle), limit):
                cells = row[first : first + len(COMPOSITION_COLUMNS)]
                try:
                    if cells[0].strip() == "n/a":
                        fractions = SiteFractions.from_formula(row[0])
                    else:
                        fractions = SiteFractions.from_columns(dict(zip(COMPOSITION_COLUMNS, map(float, cells))))
                    generate_supercell(fractions, float(row[2]), supercell=supercell_for_mixing(row[1]), seed=0)
                except ValueError:
                    pass
                n += 1
    with open(SOURCES[2][0], newline="") as handle:
        for row in itertools.islice(csv.DictReader(handle), limit):
            parse_printed_structure(row["Structure"])
            n += 1
    with open(SOURCES[3][0] / "id_prop.csv", newline="") as handle:
        for row in itertools.islice(csv.reader(handle), limit):
            Structure.from_file(SOURCES[3][0] / row[0])
            n += 1
    return n


def first_ingest(uri: str, workers: int) -> tuple[Any, int, float]:
    """Every source into a fresh database at ``uri``: (database, records read, seconds)."""
    db = connect(uri, settings=Settings(uri=uri))
    start = time.perf_counter()
    records = sum(ingest(db, path, workers=workers, **options).read for path, options in SOURCES)
    return db, records, time.perf_counter() - start


def run(uri: str, parallel_uri: str) -> dict[str, float]:
    db, records, first = first_ingest(uri, workers=1)

    start = time.perf_counter()
    skipped = sum(ingest(db, path, **options).skipped_unchanged for path, options in SOURCES)
    again = time.perf_counter() - start

    final = {
        name: [{k: v for k, v in d.items() if k != "_id"} for d in db.store(name).query({})]
        for name in ("structures", "calculations")
    }
    fresh_uri = uri if uri.startswith("memory") else uri + "-bare"
    fresh = connect(fresh_uri, settings=Settings(uri=fresh_uri), ensure_indexes=False)
    start = time.perf_counter()
    for name, docs in final.items():
        fresh.store(name)._collection.insert_many(docs)  # the bare write, bypassing perovdb entirely
    bare = time.perf_counter() - start
    workers = resolve_workers(None, db.settings.num_workers)
    _, _, parallel = first_ingest(parallel_uri, workers=workers)
    return {"records": records, "first": first, "again": again, "skipped": skipped, "bare": bare,
            "workers": workers, "parallel": parallel}  # fmt: skip


def main() -> None:
    # untimed: the first POSCAR read imports pymatgen.io.vasp (~1.3 s), which would count as parsing;
    # ingest below runs after it and never pays that import
    parse_only(limit=1)
    with tempfile.TemporaryDirectory() as tmp:
        for label, uri, parallel_uri in (
            ("embedded (monty)", f"monty://{tmp}/store", f"monty://{tmp}/parallel"),
            ("memory", "memory://", "memory://"),
        ):
            # parsing alone right before each backend's ingest: this machine's speed drifts within a run
            start = time.perf_counter()
            parsed = parse_only()
            parsing = time.perf_counter() - start
            r = run(uri, parallel_uri)
            overhead = r["first"] - parsing - r["bare"]
            print(f"\n{label}")
            print(f"  parsing + generating alone: {parsed} records in {parsing:.2f} s")
            print(f"  first ingest      {r['records']} records in {r['first']:.2f} s = {r['records'] / r['first']:.0f} records/s"
                  " (one process)")  # fmt: skip
            print(f"  bare insert_many  {r['bare']:.2f} s")
            print(f"  perovdb's own     {overhead:.2f} s = {overhead / r['first']:.0%} of end-to-end (target <= 30%)")
            print(f"  re-ingest         {r['again']:.2f} s, {r['skipped']:.0f} skipped unchanged = "
                  f"{r['first'] / r['again']:.1f}x faster than first (target >= 5x)")  # fmt: skip
            print(f"  first ingest, {r['workers']} parsing processes: {r['parallel']:.2f} s = "
                  f"{r['records'] / r['parallel']:.0f} records/s, {r['first'] / r['parallel']:.2f}x the one-process ingest")  # fmt: skip


if __name__ == "__main__":
    main()
