"""Ingest of the group's real data on every backend: readers, dedup, idempotency, bad input."""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from pymatgen.core import Structure

from conftest import HSE_TABLE, JARVIS, MULTIFIDELITY, PBE_TABLE
from perovdb.errors import InvalidRecord
from perovdb.locks import LockTimeout
from perovdb.ingest import detect_kind, ingest, read
from perovdb.ingest.records import ParseMemo, RawRecord, Record, parse_record
from perovdb.ingest.writer import IngestWriter
from perovdb.query import find


def snapshot(db) -> dict[str, dict]:
    """Every stored structure and calculation, for 'nothing changed' assertions."""
    return {
        name: {d[key]: d for d in find(db, name, {})}
        for name, key in (("structures", "structure_id"), ("calculations", "calculation_id"))
    }


def test_detect_kind_of_shipped_data():
    assert detect_kind(MULTIFIDELITY) == "multifidelity"
    assert detect_kind(PBE_TABLE) == "composition-table"
    assert detect_kind(HSE_TABLE) == "composition-table"
    assert detect_kind(JARVIS) == "id-prop"
    assert detect_kind(JARVIS / "POSCAR-JVASP-10.vasp") == "structures"


def test_jarvis_id_prop_folder(db):
    report = ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW")
    assert report.ok and report.read == 50
    assert (report.structures.new, report.calculations.new) == (50, 50)
    calcs = find(db, "calculations", {})
    assert {c["level_of_theory"] for c in calcs} == {"OptB88vdW"}
    with open(JARVIS / "id_prop.csv") as handle:
        expected = {row[0]: float(row[1]) for row in csv.reader(handle)}
    stored = {c["source"]["record"]: c["properties"]["band_gap"] for c in calcs}
    assert stored == expected
    # the POSCAR geometry survives the round trip
    doc = find(db, "structures", {"sources.record": "POSCAR-JVASP-10.vasp"})
    original = Structure.from_file(JARVIS / "POSCAR-JVASP-10.vasp")
    assert Structure.from_dict(doc[0]["structure"]).matches(original)


def test_ingest_runs_with_fewer_collector_passes_and_restores_them(db):
    """While ingest writes, the cyclic collector runs after the configured number of allocations
    (``bulk_gc_threshold``), not CPython's 700; afterwards the previous thresholds are back."""
    import gc

    before = gc.get_threshold()
    during = []
    ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW", on_progress=lambda n: during.append(gc.get_threshold()))
    assert during and all(t[0] == max(db.settings.bulk_gc_threshold, before[0]) for t in during)
    assert gc.get_threshold() == before
    db.settings.bulk_gc_threshold = 0  # 0 leaves the collector alone
    during.clear()
    ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW", on_progress=lambda n: during.append(gc.get_threshold()))
    assert during and set(during) == {before}


def test_rows_of_one_geometry_each_keep_their_own_structure(db, tmp_path):
    """The multi-fidelity reader describes a structure once per file, but only reuses that description
    for the very same structure: a row whose geometry differs below the id's rounding (same structure_id)
    after a rejected row stores its own coordinates, as it would have alone."""
    from perovdb.documents.structure import geometry_id, structure_dict
    from perovdb.perovskite import parse_printed_structure

    with open(MULTIFIDELITY, newline="") as handle:
        reader = csv.DictReader(handle)
        header, row = reader.fieldnames, next(reader)
    rejected, nudged = dict(row), dict(row)
    rejected["Band Gap"] = "nan"
    nudged["Structure"] = row["Structure"].replace(" 0.483549 ", " 0.4835491 ", 1)
    assert nudged["Structure"] != row["Structure"]
    mine = parse_printed_structure(nudged["Structure"])
    assert geometry_id(mine) == geometry_id(parse_printed_structure(row["Structure"]))
    path = tmp_path / "two_rows.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows([rejected, nudged])
    report = ingest(db, path, kind="multifidelity")
    assert len(report.rejected) == 1 and report.structures.new == 1
    (stored,) = find(db, "structures", {})
    assert stored["structure"] == structure_dict(mine)


def test_id_prop_needs_property_and_level(db):
    with pytest.raises(InvalidRecord, match="property"):
        ingest(db, JARVIS)
    with pytest.raises(InvalidRecord, match="unknown property"):
        ingest(db, JARVIS, property_name="colour", level="PBE")


@pytest.mark.slow
def test_multifidelity_set(db):
    report = ingest(db, MULTIFIDELITY)
    assert report.ok, report.rejected[:3]
    assert report.read == 983
    # 977 distinct texts but 620 distinct geometries: 362 HSE06 rows were computed on the PBE-relaxed
    # geometry of a PBE row (their texts differ only in how coordinates near 0/1 are wrapped and in the
    # sign of zero magmoms), and rows 40 and 623 are the same PBE calculation twice (one calculation,
    # two sources)
    assert report.structures.new == 620
    assert report.calculations.new == 982
    # into an empty store everything is new: a structure a later batch adds a source to is not "updated"
    assert (report.structures.updated, report.calculations.updated) == (0, 0)
    structures = find(db, "structures", {}, fields=["nsites", "origin", "phase", "perovskite", "sources"])
    sizes = [s["nsites"] for s in structures]
    assert (min(sizes), max(sizes)) == (10, 288)
    assert {s["origin"] for s in structures} == {"relaxed"}
    with open(MULTIFIDELITY, newline="") as handle:
        phase_of_row = {str(i): row["Crystal Structure"] for i, row in enumerate(csv.DictReader(handle), start=1)}
    # one geometry, two phase labels: row 623 (the set's only 'Monoclinic', named MASn0.25Pb0.875I3, whose
    # fractions do not sum) repeats row 40's geometry and values (MA1Sn0.12Pb0.88I3, Cubic); the first label stays
    mismatched = {src["record"] for s in structures for src in s["sources"] if s["phase"] != phase_of_row[src["record"]]}
    assert mismatched == {"623"}
    assert all(s["perovskite"] is not None for s in structures)
    levels = Counter(c["level_of_theory"] for c in find(db, "calculations", {}))
    assert levels == {"PBE": 612, "HSE06": 370}
    twice = [s for s in structures if len(s["sources"]) == 2]
    assert len(twice) == 363
    # the same data again: nothing new, nothing parsed
    again = ingest(db, MULTIFIDELITY)
    assert (again.new, again.updated, again.skipped_unchanged) == (0, 0, 983)


@pytest.mark.slow
def test_composition_tables_merge_per_composition(db):
    pbe = ingest(db, PBE_TABLE)
    # row 512 names Sr in its formula but its composition columns say Ca, like row 511: rejected, not merged
    assert [(e.record, e.field) for e in pbe.rejected] == [("PBE_data.csv row 512", "formula")]
    assert (pbe.structures.new, pbe.calculations.new) == (549, 549)
    hse = ingest(db, HSE_TABLE)
    assert hse.ok
    assert (hse.structures.new, hse.calculations.new) == (0, 298)  # every HSE06 composition is also in PBE
    structures = find(db, "structures", {})
    assert len(structures) == 549 and {s["origin"] for s in structures} == {"generated"}
    per_structure = Counter(c["structure_id"] for c in find(db, "calculations", {}))
    assert Counter(per_structure.values()) == {2: 298, 1: 251}
    # the geometry follows the PBE lattice constant whatever the ingest order
    shared = next(s for s in structures if len(s["sources"]) == 2)
    assert shared["generation"]["lattice_constant_level"] == "PBE"
    # supercell sizes follow the mixing type, and the stored formula is the generated cell's
    sizes = Counter(s["generation"]["supercell"] for s in structures)
    assert sizes[3] == 5 and sizes[4] == 9 and sizes[2] == 535
    big = find(db, "structures", {"sources.label": "MA_27Pb_26_BaI_81"})[0]
    counts = Structure.from_dict(big["structure"]).composition.get_el_amt_dict()
    assert (counts["Pb"], counts["Ba"], counts["I"], counts["C"], counts["N"], counts["H"]) == (26, 1, 81, 27, 27, 162)
    # not computed is None, never zero: 36 PBE rows have no dielectric constant
    pbe_calcs = find(db, "calculations", {"level_of_theory": "PBE", "properties.dielectric_constant": None})
    assert len(pbe_calcs) == 36


def test_hse_before_pbe_gives_the_same_structures(tmp_path):
    """Order independence of the merge: same final geometries either way (subset for speed)."""
    from conftest import make_database

    first, second = make_database("memory", tmp_path), make_database("memory", tmp_path)
    pbe_rows, hse_rows = _rows(PBE_TABLE)[:90], _rows(HSE_TABLE)[:90]
    pbe_file, hse_file = tmp_path / "PBE_data.csv", tmp_path / "HSE_data.csv"
    _write_rows(pbe_file, pbe_rows)
    _write_rows(hse_file, hse_rows)
    for db, order in ((first, (pbe_file, hse_file)), (second, (hse_file, pbe_file))):
        for path in order:
            assert ingest(db, path, dataset=f"tables/{path.name}").ok
    def content(db) -> dict[str, dict]:
        return {
            name: {key: (doc.get("structure"), doc.get("properties")) for key, doc in docs.items()}
            for name, docs in snapshot(db).items()
        }

    assert content(first) == content(second)
    assert len(content(first)["calculations"]) == 180


def _outcome(db, report) -> tuple:
    """What an ingest did and left stored (documents and ledger), without the times it happened at."""
    stamps = {"created_at", "last_updated"}
    stored = {
        name: {key: {k: v for k, v in doc.items() if k not in stamps} for key, doc in docs.items()}
        for name, docs in snapshot(db).items()
    }
    ledger = sorted(
        ({k: v for k, v in entry.items() if k not in stamps | {"_id"}} for entry in db.store("ingest_ledger").query({})),
        key=lambda entry: entry["ledger_key"],
    )
    counts = (report.read, report.skipped_unchanged, vars(report.structures), vars(report.calculations))
    return counts, [str(error) for error in report.rejected], stored, ledger


def _parse_noting_process(folder: Path, item: RawRecord) -> Record | InvalidRecord:
    (folder / str(os.getpid())).touch()
    return parse_record(item)


def test_parallel_parsing_gives_the_serial_outcome(tmp_path, monkeypatch):
    """Records parsed in worker processes store what parsing them here stores (documents and which
    record gave which, in the ledger), with the same rejections: 130 PBE table rows (one rejected) and
    130 multi-fidelity rows, in batches of 65 (each big enough for the workers)."""
    from conftest import make_database

    from perovdb.ingest import writer

    table = tmp_path / "PBE_data.csv"
    _write_rows(table, _rows(PBE_TABLE)[420:550])  # original row 512 (rejected) is row 92 here
    multifidelity = tmp_path / "Training_PBE_and_HSE_data.csv"
    _write_rows(multifidelity, _rows(MULTIFIDELITY)[:131])  # header + 130 rows
    edited = tmp_path / "edited" / "PBE_data.csv"  # every band gap changed: all 130 rows parsed again
    edited.parent.mkdir()
    _write_rows(edited, [[*row[:3], f"{float(row[3]) + 0.01:.4f}", *row[4:]] for row in _rows(table)])
    outcomes, processes = [], []
    for workers in (1, 2):
        folder = tmp_path / f"parsed-by-{workers}"
        folder.mkdir()
        monkeypatch.setattr(writer, "parse_record", partial(_parse_noting_process, folder))
        db = make_database("memory", tmp_path)
        reports = [ingest(db, path, dataset=path.name, batch_size=65, workers=workers) for path in (table, multifidelity)]
        outcomes.append([_outcome(db, report) for report in reports])
        # again, after the table changed and some stored documents were deleted (re-parsed, restored)
        gone = [doc["structure_id"] for doc in find(db, "structures", {})][::7]
        db.structures.remove_docs({"structure_id": {"$in": gone}})
        for path in (edited, multifidelity):
            report = ingest(db, path, dataset=path.name, batch_size=65, workers=workers)
            outcomes[-1].append(_outcome(db, report))
        processes.append({int(path.name) for path in folder.iterdir()})
    assert processes[0] == {os.getpid()}
    assert processes[1] - {os.getpid()}  # workers parsed (batches with fewer than 64 to parse stay here)
    serial, parallel = outcomes
    assert serial[0][1] and serial[0][1][0].startswith("PBE_data.csv row 92: field 'formula'")
    assert serial[1][0][0] == 130 and serial[1][1] == [] and len(serial[1][3]) == 129 + 130  # the ledger of both files
    assert serial[2][0][3]["updated"] == 129  # every band gap changed
    assert serial[3][0][1] > 0 and serial[3][0][2]["new"] > 0  # some skipped, deleted ones restored
    assert parallel == serial


def _parse_fails_on(bad: int, number: int) -> Record:
    if number == bad:
        raise RuntimeError("a bug, not bad input")
    if number % 10 == 0:
        raise InvalidRecord("bad input", field="value")
    return Record(name=f"row {number}")


def test_a_bug_in_a_worker_propagates_and_its_batch_writes_nothing(db):
    """Bad input is a rejection, but any other exception in a worker process is a bug: it reaches the
    caller; the batch before it is stored, the batch it happened in writes nothing."""
    records = [
        RawRecord(name=f"row {n}", dataset="t", key=str(n), digest=str(n), parse=partial(_parse_fails_on, 110, n))
        for n in range(1, 141)
    ]
    with pytest.raises(RuntimeError, match="a bug, not bad input"):
        IngestWriter(db, batch_size=70, workers=2).write(records)
    stored = {entry["record"] for entry in db.store("ingest_ledger").query({})}
    assert stored == {str(n) for n in range(1, 71) if n % 10}


def test_parse_memo_travels_to_workers_empty():
    """A reader's memo of described structures is not shipped with each record to the workers."""
    import pickle

    memo = ParseMemo(known="a described structure")
    records = pickle.loads(pickle.dumps([partial(len, memo), partial(len, memo)]))
    assert records[0].args[0] == {} and records[0].args[0] is records[1].args[0]


def test_worker_counts():
    from perovdb.parallel import resolve_workers

    assert resolve_workers(3, configured=5) == 3
    assert resolve_workers(None, configured=5) == 5
    assert resolve_workers(0, configured=5) == resolve_workers(None, configured=0) >= 1  # 0: one per core
    with pytest.raises(ValueError, match="one per core"):
        resolve_workers(-1)


def _ingest_in_daemon(path: str) -> tuple[int, int]:
    from conftest import make_database

    db = make_database("memory", Path(path))
    report = ingest(db, Path(path) / "HSE_data.csv", dataset="t", batch_size=70, workers=2)
    return report.read, report.calculations.new


def test_ingest_inside_a_daemonic_process_parses_in_that_process(tmp_path):
    """A multiprocessing.Pool task may not start processes: ingest there parses in the task's process."""
    import multiprocessing

    _write_rows(tmp_path / "HSE_data.csv", _rows(HSE_TABLE)[:70])
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_ingest_in_daemon, (str(tmp_path),)) == (70, 70)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc (Linux)")
@pytest.mark.parametrize("check_seconds", [60.0, 0.2])
def test_workers_of_a_killed_ingest_do_not_keep_its_lock(tmp_path, check_seconds):
    """Forked workers let go of their copies of the parent's lock files, and exit once orphaned: an
    ingest killed outright (OOM, a CI timeout) leaves neither a locked embedded store nor idle workers.
    With a 60 s orphan check the worker is still there when the lock is tried, so the lock is free because
    the worker let go of its copy; with a 0.2 s check the worker is gone soon after."""
    import signal
    import subprocess
    import sys
    import time

    from perovdb.locks import file_lock

    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from perovdb import parallel\n"
        "from perovdb.locks import file_lock\n"
        "parallel.PARENT_CHECK_SECONDS = float(sys.argv[2])\n"
        "with file_lock(Path(sys.argv[1]), 'ingest', timeout=5):\n"
        "    pool = parallel.process_pool(1)\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(60)\n"
    )
    command = [sys.executable, "-c", script, str(tmp_path), str(check_seconds)]
    # its own process group: the cleanup kills what is left of it, never a process that reused a pid
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    worker = int(holder.stdout.readline())
    try:
        with pytest.raises(LockTimeout), file_lock(tmp_path, "ingest", timeout=0.3):  # held while its holder lives
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with file_lock(tmp_path, "ingest", timeout=0.5):
            pass
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline and check_seconds < 1:
            time.sleep(0.1)
        assert _running(worker) == (check_seconds > 1)
    finally:
        holder.stdout.close()
        try:
            os.killpg(holder.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        holder.wait(10)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait for a reaper that never comes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_unreadable_csv_row_is_rejected_and_reading_stops_there(db, tmp_path):
    rows = [list(r) for r in _rows(HSE_TABLE)[:12]]
    rows[6][0] = "x" * 200_000  # over csv's default field size limit (a process-wide setting: pinned here)
    _write_rows(tmp_path / "HSE_data.csv", rows)
    limit = csv.field_size_limit(131_072)
    try:
        report = ingest(db, tmp_path / "HSE_data.csv", dataset="t")
    finally:
        csv.field_size_limit(limit)
    assert [(e.record, e.field) for e in report.rejected] == [("HSE_data.csv row 7", "row")]
    assert "field larger than field limit" in str(report.rejected[0])
    assert "rows after it were not read" in str(report.rejected[0])
    assert report.calculations.new == 6  # rows 1-6: stored; after row 7 the numbering is not trusted


def test_a_file_listed_twice_in_id_prop_is_rejected(db, tmp_path):
    folder = tmp_path / "gaps"
    folder.mkdir()
    for name in ("POSCAR-JVASP-10.vasp", "POSCAR-JVASP-107772.vasp"):
        shutil.copy(JARVIS / name, folder / name)
    (folder / "id_prop.csv").write_text("POSCAR-JVASP-10.vasp,1.0\nPOSCAR-JVASP-107772.vasp,0.5\nPOSCAR-JVASP-10.vasp,2.0\n")
    for _ in range(2):  # the same on re-ingest: nothing flips
        report = ingest(db, folder, property_name="band_gap", level="HSE06")
        assert [(e.record, e.field) for e in report.rejected] == [("id_prop.csv row 3 (POSCAR-JVASP-10.vasp)", "file")]
        assert "listed again (first on row 1)" in str(report.rejected[0])
        gaps = {c["source"]["record"]: c["properties"]["band_gap"] for c in find(db, "calculations", {})}
        assert gaps == {"POSCAR-JVASP-10.vasp": 1.0, "POSCAR-JVASP-107772.vasp": 0.5}
        assert report.updated == 0


def test_id_prop_reads_only_files_of_its_own_folder(db, tmp_path):
    folder = tmp_path / "gaps"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(JARVIS / "POSCAR-JVASP-10.vasp", tmp_path / "outside.vasp")
    shutil.copy(JARVIS / "POSCAR-JVASP-107772.vasp", folder / "sub" / "inside.vasp")
    (folder / "id_prop.csv").write_text(f"../outside.vasp,1.0\n{tmp_path / 'outside.vasp'},1.5\nsub/inside.vasp,0.5\n")
    report = ingest(db, folder, property_name="band_gap", level="HSE06")
    assert [(e.record, e.field) for e in report.rejected] == [
        ("id_prop.csv row 1 (../outside.vasp)", "file"), (f"id_prop.csv row 2 ({tmp_path / 'outside.vasp'})", "file")
    ]
    assert "outside the folder gaps" in str(report.rejected[0])
    assert [c["source"]["record"] for c in find(db, "calculations", {})] == ["sub/inside.vasp"]


def test_id_prop_follows_symlinks_inside_its_folder(db, tmp_path):
    """A structure file linked into the folder from a shared pool is the folder's file (as in a plain folder)."""
    (tmp_path / "pool").mkdir()
    shutil.copy(JARVIS / "POSCAR-JVASP-10.vasp", tmp_path / "pool" / "a.vasp")
    folder = tmp_path / "gaps"
    folder.mkdir()
    (folder / "a.vasp").symlink_to(tmp_path / "pool" / "a.vasp")
    (folder / "id_prop.csv").write_text("a.vasp,1.0\n")
    report = ingest(db, folder, property_name="band_gap", level="HSE06")
    assert report.ok and report.calculations.new == 1


def test_reingest_is_idempotent_even_when_reparsed(db):
    ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW")
    before = snapshot(db)
    db.store("ingest_ledger").remove_docs({})  # forget the ledger: every record is parsed again
    again = ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW")
    assert (again.new, again.updated, again.skipped_unchanged) == (0, 0, 0)
    assert again.structures.unchanged == 50
    assert snapshot(db) == before


def test_same_structure_from_two_sources_is_one_document(db, tmp_path):
    """A CIF and a POSCAR of the same cell (site order shuffled, one atom re-wrapped) share an id."""
    ingest(db, JARVIS, property_name="band_gap", level="OptB88vdW")
    original = Structure.from_file(JARVIS / "POSCAR-JVASP-10.vasp")
    shuffled = Structure.from_sites(list(reversed(original.sites)))
    shuffled.translate_sites([0], [1.0, 0.0, 0.0], frac_coords=True, to_unit_cell=False)
    folder = tmp_path / "mine"
    folder.mkdir()
    shuffled.to(filename=str(folder / "same.cif"))
    report = ingest(db, folder, dataset="my_cifs")
    assert report.ok and report.structures.new == 0 and report.structures.updated == 1
    doc = find(db, "structures", {"sources.dataset": "my_cifs"})
    assert len(doc) == 1 and {s["dataset"] for s in doc[0]["sources"]} == {"jarvis_alignn_sample", "my_cifs"}


# -- bad input ------------------------------------------------------------------------------


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_bad_table_rows_are_rejected_by_name_and_field(db, tmp_path):
    rows = _rows(HSE_TABLE)[:12]
    good = [list(r) for r in rows]
    _write_rows(tmp_path / "HSE_data.csv", good[:6])
    assert ingest(db, tmp_path / "HSE_data.csv", dataset="t").ok
    before = snapshot(db)

    bad = [list(r) for r in rows]
    bad[0][3] = "-0.5"  # negative band gap (row 1 was stored before: must stay as it was)
    bad[6] = bad[6][:30]  # wrong column count
    bad[7][3] = "nan"  # NaN band gap
    bad[8][6 + 10] = "1.5"  # Pb fraction (columns K Rb Cs MA FA Ca Sr Ba Ge Sn Pb …): B site no longer sums to 1
    bad[9][2] = "0"  # lattice constant out of range
    _write_rows(tmp_path / "HSE_data.csv", bad)
    report = ingest(db, tmp_path / "HSE_data.csv", dataset="t")
    rejected = {e.record: e.field for e in report.rejected}
    assert rejected == {
        "HSE_data.csv row 1": "band_gap",
        "HSE_data.csv row 7": "columns",
        "HSE_data.csv row 8": "band_gap",
        "HSE_data.csv row 9": "fractions.B",
        "HSE_data.csv row 10": "lattice_constant",
    }
    assert report.calculations.new == 2  # rows 11 and 12
    after = snapshot(db)
    for name in before:
        for key, doc in before[name].items():
            assert after[name][key] == doc  # nothing stored before changed
    assert len(after["calculations"]) == 8


def test_bad_structure_files(db, tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    shutil.copy(JARVIS / "POSCAR-JVASP-10.vasp", folder / "good.vasp")
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 5\nthis is not a cif\n")
    overlapping = Structure(
        [[5, 0, 0], [0, 5, 0], [0, 0, 5]], ["Cs", "Pb", "I"], [[0, 0, 0], [0.01, 0, 0], [0.5, 0.5, 0.5]]
    )
    overlapping.to(filename=str(folder / "overlap.cif"))
    unknown = (JARVIS / "POSCAR-JVASP-10.vasp").read_text().splitlines()
    unknown[5] = " ".join("Xx" for _ in unknown[5].split())  # species line of a VASP 5 POSCAR
    (folder / "unknown.vasp").write_text("\n".join(unknown) + "\n")
    report = ingest(db, folder, dataset="mine")
    rejected = {e.record: e.field for e in report.rejected}
    assert set(rejected) == {"broken.cif", "overlap.cif", "unknown.vasp"}
    assert rejected["overlap.cif"] == "structure"
    assert report.structures.new == 1
    assert all(str(e).startswith(e.record) for e in report.rejected)


def test_degenerate_cells_are_rejected_before_any_neighbour_search(db, tmp_path):
    """NaN, flat, collapsed or absurdly large cells once crashed spglib or the neighbour search (a segfault, a
    hang, a MemoryError): each is now a rejection naming its file and field, and the good file is stored."""
    folder = tmp_path / "cells"
    folder.mkdir()
    lines = (JARVIS / "POSCAR-JVASP-10.vasp").read_text().splitlines()  # scale, 3 lattice rows, species, counts
    shutil.copy(JARVIS / "POSCAR-JVASP-10.vasp", folder / "good.vasp")

    def variant(name: str, row: int, text: str) -> None:
        changed = list(lines)
        changed[row] = text
        (folder / name).write_text("\n".join(changed) + "\n")

    first_site = lines.index(next(line for line in lines if line.strip().lower() in {"direct", "cartesian"})) + 1
    variant("nan_position.vasp", first_site, "nan 0.5 0.5")
    variant("nan_lattice.vasp", 2, "nan 0 0")
    variant("zero_lattice.vasp", 4, "0 0 0")
    variant("flat_cell.vasp", 4, lines[2])  # the third vector repeats the first
    variant("huge_lattice.vasp", 2, "1e12 0 0")
    variant("far_atom.vasp", first_site, "1e300 0.5 0.5")
    Structure([[0.2, 0, 0], [0, 0.2, 0], [0, 0, 0.2]], ["Cs"], [[0, 0, 0]]).to(filename=str(folder / "tiny.vasp"))
    Structure([[0.4, 0, 0], [0, 9, 0], [0, 0, 9]], ["Cs"], [[0, 0, 0]]).to(filename=str(folder / "self_overlap.vasp"))
    report = ingest(db, folder, dataset="cells")
    fields = {e.record: e.field for e in report.rejected}
    assert fields == {
        "nan_position.vasp": "structure", "nan_lattice.vasp": "structure", "zero_lattice.vasp": "lattice",
        "flat_cell.vasp": "lattice", "huge_lattice.vasp": "lattice", "far_atom.vasp": "structure",
        "tiny.vasp": "lattice", "self_overlap.vasp": "structure",
    }  # fmt: skip
    assert "periodic image of itself" in str(next(e for e in report.rejected if e.record == "self_overlap.vasp"))
    assert report.structures.new == 1

    rows = _rows(MULTIFIDELITY)[:4]
    header, rows = rows[0], [list(r) for r in rows[1:]]
    column = header.index("Structure")
    rows[1][column] = re.sub(r"angles:[^\n]*", "angles: 180.000000 90.000000 90.000000", rows[1][column])
    _write_rows(tmp_path / "mf.csv", [header, *rows])
    report = ingest(db, tmp_path / "mf.csv", dataset="mf")
    assert [(e.record, e.field) for e in report.rejected] == [("mf.csv row 2", "lattice")]
    assert report.structures.new == 2


def test_non_utf8_bytes_broken_quotes_and_a_bom(db, tmp_path):
    """A byte that is not UTF-8 or a quote never closed is a rejection at its own row, reading stops there
    (the rows after it could not be numbered reliably); a byte-order mark before the header is skipped."""
    rows = [list(r) for r in _rows(PBE_TABLE)[:10]]
    _write_rows(tmp_path / "PBE_data.csv", rows)
    data = (tmp_path / "PBE_data.csv").read_bytes().split(b"\n")
    data[6] = data[6].replace(b"Pb", b"P\xe9", 1)  # row 7
    (tmp_path / "latin1.csv").write_bytes(b"\n".join(data))
    report = ingest(db, tmp_path / "latin1.csv", dataset="latin1", kind="composition-table")
    assert [(e.record, e.field) for e in report.rejected] == [("latin1.csv row 7", "encoding")]
    assert "byte 0xe9" in str(report.rejected[0]) and report.calculations.new == 6
    data[0] = b"\xe9" + data[0]  # in the first row, kind detection cannot read the file
    (tmp_path / "latin1_first.csv").write_bytes(b"\n".join(data))
    with pytest.raises(InvalidRecord, match="byte 0xe9") as refused:
        detect_kind(tmp_path / "latin1_first.csv")
    assert (refused.value.record, refused.value.field) == ("latin1_first.csv", "encoding")

    text = (tmp_path / "PBE_data.csv").read_text().splitlines()
    text[4] = '"' + text[4]  # row 5 opens a quote it never closes: rows 5-10 would vanish into one field
    (tmp_path / "quote.csv").write_text("\n".join(text) + "\n")
    report = ingest(db, tmp_path / "quote.csv", dataset="quote", kind="composition-table")
    assert [(e.record, e.field) for e in report.rejected] == [("quote.csv row 5", "row")]
    assert "rows after it were not read" in str(report.rejected[0])

    mf = [list(r) for r in _rows(MULTIFIDELITY)[:6]]
    _write_rows(tmp_path / "mf.csv", mf)
    raw = (tmp_path / "mf.csv").read_text()
    structure = mf[3][mf[0].index("Structure")]
    broken = raw.replace('"' + structure + '"', '"' + structure, 1)  # row 3 loses its closing quote
    assert broken != raw
    (tmp_path / "mf_quote.csv").write_text(broken)
    report = ingest(db, tmp_path / "mf_quote.csv", dataset="mfq")
    assert [(e.record, e.field) for e in report.rejected] == [("mf_quote.csv row 3", "row")]
    assert report.calculations.new == 2 and report.read == 3

    # lone CR line ends (Excel for Mac) are lines too; a broken first row with --kind is a rejection, not a crash
    (tmp_path / "mac.csv").write_bytes((tmp_path / "PBE_data.csv").read_bytes().replace(b"\r\n", b"\r"))
    assert detect_kind(tmp_path / "mac.csv") == "composition-table"
    assert ingest(db, tmp_path / "mac.csv", dataset="mac").calculations.new == 10
    (tmp_path / "first.csv").write_text('"FA"x,Pure\n' + (tmp_path / "PBE_data.csv").read_text())
    with pytest.raises(InvalidRecord, match="row 1"):
        ingest(db, tmp_path / "first.csv", dataset="first", kind="composition-table")

    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "mf.csv").read_bytes())
    assert detect_kind(tmp_path / "bom.csv") == "multifidelity"
    report = ingest(db, tmp_path / "bom.csv", dataset="bom")
    assert report.ok and report.calculations.new == 5


def test_file_names_and_property_names_the_database_cannot_hold(db, tmp_path):
    """A file name that is not UTF-8, or a site property named '$x' or 'a.b', was a crash in the middle of
    the write (after part of the batch was stored); each is now a rejection of its own file."""
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.copy(JARVIS / "POSCAR-JVASP-10.vasp", folder / "good.vasp")
    shutil.copy(JARVIS / "POSCAR-JVASP-107772.vasp", os.path.join(os.fsencode(folder), b"b_\xff.vasp"))
    structure = Structure.from_file(JARVIS / "POSCAR-JVASP-1372.vasp")
    structure.add_site_property("$charge", [0.0] * len(structure))
    (folder / "props.json").write_text(structure.to_json())
    report = ingest(db, folder, dataset="names")
    assert {(e.record, e.field) for e in report.rejected} == {("b_\\xff.vasp", "file"), ("props.json", "properties")}
    assert report.structures.new == 1


def test_a_repeated_column_is_refused_and_a_field_is_named_once(db, tmp_path):
    rows = [list(r) for r in _rows(MULTIFIDELITY)[:4]]
    header = rows[0]
    gap = header.index("Band Gap")
    _write_rows(tmp_path / "twice.csv", [header + ["Band Gap"]] + [r + ["7.7"] for r in rows[1:]])
    report = ingest(db, tmp_path / "twice.csv", dataset="twice")
    assert [(e.record, e.field) for e in report.rejected] == [("twice.csv", "header")]
    assert "'Band Gap'" in str(report.rejected[0]) and report.calculations.new == 0  # never the last column's 7.7

    rows[1][gap] = "-1.5"
    _write_rows(tmp_path / "negative.csv", rows)
    report = ingest(db, tmp_path / "negative.csv", dataset="negative")
    message = str(report.rejected[0])
    assert report.rejected[0].field == "band_gap" and message.count("band_gap") == 1, message


def test_a_record_is_the_same_source_from_any_working_directory(db, tmp_path, monkeypatch):
    """Sources are told apart by data set and record: an edited row ingested from another directory updates
    its calculation (it was refused as conflicting with itself); same-named files in subfolders stay apart."""
    table = tmp_path / "tables" / "HSE_data.csv"
    table.parent.mkdir()
    rows = [list(r) for r in _rows(HSE_TABLE)[:6]]
    _write_rows(table, rows)
    monkeypatch.chdir(tmp_path)
    assert ingest(db, Path("tables/HSE_data.csv")).ok
    gap = next(i for i, cell in enumerate(rows[2]) if cell and cell.replace(".", "", 1).isdigit() and float(cell) > 0.5)
    rows[2][gap] = f"{float(rows[2][gap]) + 0.25:.4f}"
    _write_rows(table, rows)
    monkeypatch.chdir(tmp_path / "tables")
    again = ingest(db, Path("HSE_data.csv"))  # the default data set name too: tables/HSE_data.csv
    assert again.ok, again.rejected
    assert again.calculations.updated == 1

    folder = tmp_path / "runs"
    for run, poscar in (("a", "POSCAR-JVASP-10.vasp"), ("b", "POSCAR-JVASP-1372.vasp")):
        (folder / run).mkdir(parents=True)
        shutil.copy(JARVIS / poscar, folder / run / "CONTCAR")
    report = ingest(db, folder, dataset="runs")
    assert report.structures.new == 2
    records = {src["record"] for s in find(db, "structures", {"sources.dataset": "runs"}) for src in s["sources"]}
    assert records == {"a/CONTCAR", "b/CONTCAR"}


def test_a_row_without_any_value_is_refused(db, tmp_path):
    rows = [list(r) for r in _rows(MULTIFIDELITY)[:4]]
    for column in ("Band Gap", "Decomposition Energy"):
        rows[2][rows[0].index(column)] = ""
    _write_rows(tmp_path / "empty_values.csv", rows)
    report = ingest(db, tmp_path / "empty_values.csv", dataset="empty")
    assert [(e.record, e.field) for e in report.rejected] == [("empty_values.csv row 2", "properties")]
    assert report.calculations.new == 2
    assert all(any(v is not None for v in c["properties"].values()) for c in find(db, "calculations", {}))


def test_an_unknown_mixing_label_is_refused(db, tmp_path):
    """The mixing label decides the generated supercell; one of no known form was read as 2x2x2."""
    rows = [list(r) for r in _rows(HSE_TABLE)[:4]]
    rows[1][1] = "Q-site mixed"
    rows[2][1] = "New 5x5x5 Supercell Calc"  # a size the shipped tables do not use: 5, not silently 2
    _write_rows(tmp_path / "HSE_data.csv", rows)
    report = ingest(db, tmp_path / "HSE_data.csv", dataset="mixing")
    assert [(e.record, e.field) for e in report.rejected] == [("HSE_data.csv row 2", "mixing")]
    generated = find(db, "structures", {"sources.record": "3"}, fields=["generation"])
    assert [s["generation"]["supercell"] for s in generated] == [5]


def test_blank_lines_of_a_table_are_skipped_and_keep_their_numbers(db, tmp_path):
    rows = [list(r) for r in _rows(HSE_TABLE)[:4]]
    _write_rows(tmp_path / "HSE_data.csv", [rows[0], [], rows[1], rows[2], ["", " "], rows[3], []])
    report = ingest(db, tmp_path / "HSE_data.csv", dataset="blank")
    assert report.ok and report.calculations.new == 4
    numbers = {c["source"]["record"] for c in find(db, "calculations", {"source.dataset": "blank"})}
    assert numbers == {"1", "3", "4", "6"}  # numbered by position, blank lines counted


def test_each_document_is_counted_once_per_ingest(db, tmp_path):
    """Counts are against the store before the run: a structure that existed and is touched by several
    batches is one 'updated' (or 'unchanged'), one created by the run is one 'new'."""
    rows = _rows(MULTIFIDELITY)
    functional = rows[0].index("Functional")
    _write_rows(tmp_path / "pbe.csv", [rows[0], *[r for r in rows[1:] if r[functional] == "PBE"]])
    ingest(db, tmp_path / "pbe.csv", dataset="pbe-first")  # another data set: no record is skipped below
    before = len(find(db, "structures", {}))
    report = IngestWriter(db, batch_size=100).write(read(MULTIFIDELITY))
    counts = report.structures
    assert counts.new == 620 - before
    assert counts.new + counts.updated + counts.unchanged == 620  # every structure once, not once per batch
