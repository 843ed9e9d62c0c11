"""The CLI on the embedded store: ingest summary and exit codes, query formats, show, stats."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

from typer.testing import CliRunner

from conftest import FIXTURES, JARVIS
from perovdb.cli import app

runner = CliRunner()


def test_ingest_query_show_stats(tmp_path):
    uri = f"monty://{tmp_path / 'store'}"
    args = ["ingest", str(JARVIS), "--property", "band_gap", "--level", "OptB88vdW", "--uri", uri]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rejected: 0" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "50 skipped unchanged" in again.output

    out = runner.invoke(app, ["query", "structures", "--elements", "Si", "--format", "json", "--uri", uri])
    docs = json.loads(out.stdout)
    assert docs and all("Si" in d["elements"] for d in docs)

    out = runner.invoke(app, ["query", "calculations", "--fields", "structure_id,properties.band_gap",
                              "--limit", "0", "--format", "csv", "--uri", uri])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 50 and all(float(r["properties.band_gap"]) >= 0 for r in rows)

    out = runner.invoke(app, ["query", "structures", "--fields", "structure_id,sources.file", "--format", "csv",
                              "--limit", "3", "--uri", uri])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 3 and all(r["sources.file"].endswith(".vasp") for r in rows)  # a path through a list
    unknown = runner.invoke(app, ["query", "structures", "--fields", "structure_id,no_such", "--uri", uri])
    assert unknown.exit_code == 3 and "no field 'no_such'" in unknown.output

    shown = runner.invoke(app, ["show", docs[0]["structure_id"], "--uri", uri])
    assert shown.exit_code == 0 and "OptB88vdW" in shown.output

    stats = runner.invoke(app, ["stats", "--format", "json", "--uri", uri])
    assert json.loads(stats.stdout)["collections"]["calculations"] == 50
    stats_csv = runner.invoke(app, ["stats", "--format", "csv", "--uri", uri])
    rows = list(csv.DictReader(io.StringIO(stats_csv.stdout)))
    assert {"section": "collections", "name": "calculations", "count": "50"} in rows
    built = runner.invoke(app, ["build", "materials", "--uri", uri])
    assert built.exit_code == 0 and "documents" in built.output
    again = runner.invoke(app, ["build", "materials", "--uri", uri])
    assert again.exit_code == 0 and "materials: unchanged since run-" in again.output  # the README's promise
    for command in (["show", docs[0]["structure_id"], "--format", "csv"], ["stats", "--format", "xml"]):
        refused = runner.invoke(app, [*command, "--uri", uri])
        assert refused.exit_code == 2 and "is not one of" in refused.output  # was ignored: a table printed


def test_rejections_give_exit_code_1_and_name_the_record(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(JARVIS / "POSCAR-JVASP-10.vasp", folder / "ok.vasp")
    (folder / "bad.cif").write_text("not a cif at all")
    result = runner.invoke(app, ["ingest", str(folder), "--uri", f"monty://{tmp_path / 's'}"])
    assert result.exit_code == 1
    assert "bad.cif" in result.output and "rejected: 1" in result.output


def test_unsafe_filter_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["query", "structures", "--filter", '{"$where": "1"}', "--uri", "memory://"])
    assert result.exit_code == 3
    assert "$where" in result.output
    malformed = runner.invoke(app, ["query", "structures", "--filter", '{"nsites": {"$not": 5}}', "--uri", "memory://"])
    assert malformed.exit_code == 3 and "$not (on nsites)" in malformed.output and "Traceback" not in malformed.output
    negative = runner.invoke(app, ["query", "structures", "--limit", "-1", "--uri", "memory://"])
    assert negative.exit_code == 2
    bracketed = runner.invoke(app, ["query", "structures", "--fields", "nsites,x[y]", "--uri", "memory://"])
    assert bracketed.exit_code == 3 and "field 'x[y]'" in bracketed.output  # printed as is, not read as markup


def test_a_backend_error_without_a_message_is_still_one_line(monkeypatch):
    from pymongo.errors import AutoReconnect

    def broken(db):
        raise AutoReconnect()

    monkeypatch.setattr("perovdb.query.stats", broken)
    result = runner.invoke(app, ["stats", "--uri", "memory://"])
    assert result.exit_code == 3 and "the database failed: AutoReconnect" in result.output


def test_an_unreachable_server_is_a_one_line_error():
    uri = "mongodb://user:secret@127.0.0.1:1/perovdb?serverSelectionTimeoutMS=300"
    result = runner.invoke(app, ["stats", "--uri", uri])
    assert result.exit_code == 3 and "the database failed: ServerSelectionTimeoutError" in result.output
    assert "secret" not in result.output and "Traceback" not in result.output


def test_serve_logs_each_request_only_when_asked(tmp_path, monkeypatch):
    """``perovdb serve`` hands uvicorn the app with the access log off, unless ``--access-log``."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app_, **kwargs: calls.append((app_, kwargs)))
    uri = f"monty://{tmp_path / 'store'}"
    for extra, logged in (([], False), (["--access-log"], True)):
        result = runner.invoke(app, ["serve", "--uri", uri, "--port", "8765", *extra])
        assert result.exit_code == 0, result.output
        served, kwargs = calls[-1]
        assert kwargs["access_log"] is logged and kwargs["port"] == 8765
        assert any(getattr(route, "path", None) == "/structures" for route in served.routes)


def test_provenance_reads_the_id_with_options_on_either_side_and_diffs_two_models(tmp_path):
    uri = f"monty://{tmp_path / 'store'}"
    models = []
    for name in ("alignn2_pure_tiny", "alignn_classic_tiny"):
        result = runner.invoke(app, ["model", "import", str(FIXTURES / "upstream_alignn" / f"{name}.zip"),
                                     "--name", name, "--property", "band_gap", "--uri", uri])  # fmt: skip
        assert result.exit_code == 0, result.output
        models.append(re.search(r"registered (model-[0-9a-f]+)", result.stdout).group(1))
    again = runner.invoke(app, ["model", "import", str(FIXTURES / "upstream_alignn" / "alignn2_pure_tiny.zip"),
                                "--name", "alignn2_pure_tiny", "--property", "band_gap", "--uri", uri])  # fmt: skip
    assert again.exit_code == 0 and f"already registered as {models[0]}" in again.output.replace("\n", " ")
    other_level = runner.invoke(app, ["model", "import", str(FIXTURES / "upstream_alignn" / "alignn2_pure_tiny.zip"),
                                      "--name", "alignn2_pure_tiny", "--property", "band_gap", "--level", "HSE06",
                                      "--uri", uri])  # fmt: skip
    assert other_level.exit_code == 0 and "v2" in other_level.output  # other training targets: a new version

    after = runner.invoke(app, ["provenance", models[0], "--json", str(tmp_path / "a.json"), "--uri", uri])
    assert after.exit_code == 0, after.output
    before = runner.invoke(app, ["provenance", "--json", str(tmp_path / "b.json"), "--uri", uri, models[0]])
    assert before.exit_code == 0, before.output
    lineage = json.loads((tmp_path / "a.json").read_text())
    assert lineage == json.loads((tmp_path / "b.json").read_text())
    assert models[0] in json.dumps(lineage) and "alignn2_pure_tiny.zip" in after.output

    diff = runner.invoke(app, ["provenance", "diff", *models, "--format", "json", "--uri", uri])
    assert diff.exit_code == 0, diff.output
    changes = json.loads(diff.stdout)
    assert any(item["field"] == "dataset.source" for item in changes["data"])
    for options_first in (["--uri", uri, "-F", "json"], [f"--uri={uri}", "--format=json"]):
        moved = runner.invoke(app, ["provenance", *options_first, "diff", *models])
        assert moved.exit_code == 0, moved.output
        assert json.loads(moved.stdout) == changes

    missing = runner.invoke(app, ["provenance", "model-nonexistent", "--uri", uri])
    assert missing.exit_code == 3 and "not found" in missing.output
