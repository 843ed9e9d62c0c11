"""Ingest benchmark (issue: foundation). Prints ratios measured in this one run; no timed assertions.

For a fresh embedded store (monty://) and memory://, ingests the 848 composition-table rows, the 983
multi-fidelity rows and the 50 JARVIS sample structures, and reports:
- records/s end to end;
- the time spent parsing and generating structures alone (the same parsers, no documents);
- the time of a bare ``insert_many`` of the same final documents into a fresh store of the same backend;
- perovdb's own share (validation, dedup, symmetry, bookkeeping) = end-to-end − parsing − bare write,
  target ≤ 30 % of end-to-end;
- re-ingest of unchanged data, target ≥ 5x faster than the first ingest.

Run: ``.venv/bin/python benchmarks/ingest.py``
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

from pymatgen.core import Structure

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from perovdb import connect  # noqa: E402
from perovdb.config import Settings  # noqa: E402
from perovdb.ingest import ingest  # noqa: E402
from perovdb.ingest.readers.composition_tables import COMPOSITION_COLUMNS, PROPERTY_COLUMNS, detect_level  # noqa: E402
from perovdb.perovskite import SiteFractions, generate_supercell, parse_printed_structure, supercell_for_mixing  # noqa: E402

DATA = REPO / "data"
SOURCES = [
    (DATA / "mannodi_halide_perovskites" / "PBE_data.csv", {}),
    (DATA / "mannodi_halide_perovskites" / "HSE_data.csv", {}),
    (DATA / "mannodi_multifidelity_structures" / "Training_PBE_and_HSE_data.csv", {}),
    (DATA / "jarvis_alignn_sample", {"property_name": "band_gap", "level": "OptB88vdW"}),
]


def parse_only() -> int:
    """Parse and generate every structure with the same parsers ingest uses, nothing else."""
    n = 0
    for path in SOURCES[:2]:
        table = path[0]
        level = detect_level(table)
        first = 2 + len(PROPERTY_COLUMNS[level])
        with open(table, newline="") as handle:
            for row in csv.reader(handle):
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
        for row in csv.DictReader(handle):
            parse_printed_structure(row["Structure"])
            n += 1
    with open(SOURCES[3][0] / "id_prop.csv", newline="") as handle:
        for row in csv.reader(handle):
            Structure.from_file(SOURCES[3][0] / row[0])
            n += 1
    return n


def run(uri: str) -> dict[str, float]:
    db = connect(uri, settings=Settings(uri=uri))
    start = time.perf_counter()
    records = 0
    for path, options in SOURCES:
        records += ingest(db, path, **options).read
    first = time.perf_counter() - start

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
    return {"records": records, "first": first, "again": again, "skipped": skipped, "bare": bare}


def main() -> None:
    start = time.perf_counter()
    parsed = parse_only()
    parsing = time.perf_counter() - start
    print(f"parsing + generating alone: {parsed} records in {parsing:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for label, uri in (("embedded (monty)", f"monty://{tmp}/store"), ("memory", "memory://")):
            r = run(uri)
            overhead = r["first"] - parsing - r["bare"]
            print(f"\n{label}")
            print(f"  first ingest      {r['records']} records in {r['first']:.2f} s = {r['records'] / r['first']:.0f} records/s")
            print(f"  bare insert_many  {r['bare']:.2f} s")
            print(f"  perovdb's own     {overhead:.2f} s = {overhead / r['first']:.0%} of end-to-end (target <= 30%)")
            print(f"  re-ingest         {r['again']:.2f} s, {r['skipped']:.0f} skipped unchanged = "
                  f"{r['first'] / r['again']:.1f}x faster than first (target >= 5x)")  # fmt: skip


if __name__ == "__main__":
    main()
