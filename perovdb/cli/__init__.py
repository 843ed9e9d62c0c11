"""``perovdb`` command line: thin over the Python API (perovdb.ingest, perovdb.query, …)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from perovdb.cli.common import (
    DEFAULT_FIELDS,
    REPO_DATA,
    DocumentFormat,
    DocumentFormatOption,
    FormatOption,
    TableFormat,
    UriOption,
    app,
    console,
    err_console,
    print_documents,
    progress_bar,
)
from perovdb.cli.common import _cell
from perovdb.cli.common import fail as _fail
from perovdb.cli.common import open_db as _open
from perovdb.config import OUTPUT_DIR
from perovdb.db import redact_uri
from perovdb.errors import PerovdbError

@app.command()
def init(uri: UriOption = None) -> None:
    """Create indexes (and JSON Schema validators on a MongoDB server)."""
    with _open(uri) as db:
        indexes = db.ensure_indexes()
        validated = db.install_validators()
        console.print(f"database {redact_uri(db.uri)} ({db.backend})")
        for name, fields in indexes.items():
            console.print(f"  {name}: {len(fields)} indexes" + (", $jsonSchema validator" if name in validated else ""))
        if db.backend != "mongodb":
            console.print("  (this backend has no server-side validation; perovdb validates every document itself)")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    kind: Annotated[str, typer.Option(help="auto, composition-table, multifidelity, id-prop, structures.")] = "auto",
    property_name: Annotated[str | None, typer.Option("--property", help="Property of id_prop.csv values.")] = None,
    level: Annotated[str | None, typer.Option(help="Level of theory (PBE, HSE06, OptB88vdW, …).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data-set name (default: from the path).")] = None,
    origin: Annotated[str | None, typer.Option(help="relaxed, generated, experimental or unknown.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed placing alloy species in generated cells.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes parsing records (default PEROVDB_NUM_WORKERS; 0 = all cores).")
    ] = None,
    uri: UriOption = None,
) -> None:
    """Ingest structures and results; prints read/new/updated/unchanged/rejected. Exit 1 if any record was rejected."""
    from perovdb.ingest import count_records
    from perovdb.ingest import ingest as run_ingest
    from perovdb.ingest.writer import IngestReport

    total = IngestReport()
    with _open(uri) as db:
        for path in paths:
            try:
                with progress_bar() as progress:
                    task = progress.add_task(path.name, total=count_records(path, kind))  # type: ignore[arg-type]
                    report = run_ingest(
                        db,
                        path,
                        kind=kind,  # type: ignore[arg-type]
                        property_name=property_name,
                        level=level,
                        dataset=dataset,
                        origin=origin,  # type: ignore[arg-type]
                        seed=seed,
                        workers=workers,
                        on_progress=lambda n, t=task: progress.advance(t, n),
                    )
            except PerovdbError as error:
                _fail(error, code=2)
            print_report(path.name, report)
            total.merge(report)
    if len(paths) > 1:
        print_report("total", total)
    if not total.ok:
        raise typer.Exit(1)


def print_report(name: str, report: Any) -> None:
    """One summary line per collection and the rejected records."""
    table = Table(title=f"ingest {name}: {report.read} records read, {report.skipped_unchanged} skipped unchanged")
    for column in ("collection", "new", "updated", "unchanged"):
        table.add_column(column)
    for collection in ("structures", "calculations"):
        counts = getattr(report, collection)
        table.add_row(collection, str(counts.new), str(counts.updated), str(counts.unchanged))
    console.print(table)
    console.print(f"rejected: {len(report.rejected)}")
    for error in report.rejected[:50]:
        console.print(f"  [red]✗[/red] {escape(str(error))}")
    if len(report.rejected) > 50:
        console.print(f"  … and {len(report.rejected) - 50} more")


@app.command()
def query(
    collection: Annotated[str, typer.Argument(help="structures, calculations, materials, models, predictions, …")],
    formula: Annotated[str | None, typer.Option(help="Formula, e.g. CsPbI3 or MAPbI3.")] = None,
    elements: Annotated[str | None, typer.Option(help="Comma-separated elements that must all be present.")] = None,
    filter_json: Annotated[str | None, typer.Option("--filter", help="MongoDB-style filter as JSON.")] = None,
    fields: Annotated[str | None, typer.Option(help="Comma-separated fields (dotted paths allowed).")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many documents (0 = all).")] = 20,
    fmt: FormatOption = TableFormat.table,
    uri: UriOption = None,
) -> None:
    """Query a collection."""
    from perovdb.query import find, structure_criteria

    try:
        extra = json.loads(filter_json) if filter_json else None
    except json.JSONDecodeError as error:
        _fail(PerovdbError(f"--filter is not valid JSON: {error}"), code=2)
    element_list = [e.strip() for e in elements.split(",")] if elements else None
    try:
        if collection == "structures":
            criteria = structure_criteria(formula, element_list, extra)
        else:
            criteria = dict(extra or {})
            if element_list or formula:
                ids = _structure_ids(formula, element_list, uri)
                criteria = {"$and": [criteria, {"structure_id": {"$in": ids}}]} if criteria else {"structure_id": {"$in": ids}}
        if fields:
            from perovdb.api.fields import parse_fields  # the API's check: unknown fields are errors, not blanks

            field_list = parse_fields(collection, fields) or []
        else:
            field_list = DEFAULT_FIELDS.get(collection, [])
        with _open(uri) as db:
            docs = find(db, collection, criteria, fields=None if fmt == "json" and not fields else field_list, limit=limit)
    except PerovdbError as error:
        _fail(error)
    print_documents(docs, field_list, fmt, title=f"{collection}: {len(docs)} shown")


def _structure_ids(formula: str | None, elements: list[str] | None, uri: str | None) -> list[str]:
    from perovdb.query import find, structure_criteria

    with _open(uri) as db:
        return [d["structure_id"] for d in find(db, "structures", structure_criteria(formula, elements), ["structure_id"])]


@app.command()
def show(
    structure_id: Annotated[str, typer.Argument(help="A structure_id.")],
    fmt: DocumentFormatOption = DocumentFormat.table,
    uri: UriOption = None,
) -> None:
    """A structure with its calculations and current predictions."""
    from perovdb.query import show as show_structure

    try:
        with _open(uri) as db:
            doc = show_structure(db, structure_id)
    except PerovdbError as error:
        _fail(error)
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    summary = {k: doc.get(k) for k in ("structure_id", "formula", "reduced_formula", "nsites", "origin", "phase")}
    summary["space_group"] = doc.get("space_group_symbol")
    summary["perovskite"] = (doc.get("perovskite") or {}).get("formula")
    summary["mixing_type"] = (doc.get("perovskite") or {}).get("mixing_type")
    summary["sources"] = "; ".join(f"{s['dataset']} #{s.get('record')}" for s in doc["sources"])
    for key, value in summary.items():
        console.print(f"[bold]{key}[/bold]: {escape(_cell(value))}")
    print_documents(doc["calculations"], ["level_of_theory", "properties", "source.dataset"], "table", "calculations")
    if doc["predictions"]:
        print_documents(doc["predictions"], ["model_id", "property", "value", "unit"], "table", "predictions")


@app.command()
def stats(fmt: FormatOption = TableFormat.table, uri: UriOption = None) -> None:
    """Counts per collection, per level of theory and per mixing type."""
    from perovdb.query import stats as collect_stats

    with _open(uri) as db:
        numbers = collect_stats(db)
    print_stats(numbers, fmt)


def print_stats(numbers: dict[str, Any], fmt: str = "table") -> None:
    """Print ``perovdb.query.stats`` output as tables, JSON or CSV (section, name, count)."""
    if fmt == "json":
        sys.stdout.write(json.dumps(numbers, indent=2) + "\n")
        return
    if fmt == "csv":
        rows = [(section, name, count) for section, counts in numbers.items() for name, count in counts.items()]
        print_documents([dict(zip(("section", "name", "count"), row)) for row in rows], ["section", "name", "count"], "csv")
        return
    for section, counts in numbers.items():
        table = Table(title=section.replace("_", " "))
        table.add_column("name")
        table.add_column("count", justify="right")
        for name, count in counts.items():
            table.add_row(str(name), str(count))
        console.print(table)


@app.command()
def schemas(
    write: Annotated[Path | None, typer.Option(help="Write schemas/*.json into this folder.")] = None,
    check: Annotated[Path | None, typer.Option(help="Exit 1 if the files in this folder differ.")] = None,
) -> None:
    """Export the collections' JSON Schemas (generated from perovdb.documents)."""
    from perovdb.schemas import all_schemas, write_schemas

    if write:
        for path in write_schemas(write):
            console.print(f"wrote {path}")
    if check:
        stale = [
            name
            for name, schema in all_schemas().items()
            if not (check / f"{name}.json").is_file()
            or json.loads((check / f"{name}.json").read_text()) != json.loads(json.dumps(schema))
        ]
        if stale:
            err_console.print(f"schemas out of date: {', '.join(stale)} (run perovdb schemas --write {check})")
            raise typer.Exit(1)
        console.print("schemas up to date")
    if not write and not check:
        sys.stdout.write(json.dumps(all_schemas(), indent=2) + "\n")


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Folder of the shipped data.")] = REPO_DATA,
    spec: Annotated[Path, typer.Option(help="Workflow spec to run.")] = REPO_DATA.parent / "workflows" / "hse_gap.yaml",
    out: Annotated[Path, typer.Option(help="Folder for the figures.")] = OUTPUT_DIR,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start from an empty database (embedded/memory only).")] = False,
    uri: UriOption = None,
) -> None:
    """The main job: ingest the shipped real data, train and evaluate the HSE06-gap model, show provenance."""
    from perovdb.ingest import count_records
    from perovdb.mainjob import run_main_job
    from perovdb.provenance import to_tree, walk

    if fresh:
        _start_fresh(uri)
    with _open(uri) as db:
        console.print(f"[bold]perovdb main job[/bold] on {redact_uri(db.uri)} ({db.backend})")
        progress = progress_bar()
        tasks: dict[str, Any] = {}

        def on_ingest(path: Path) -> Any:
            tasks[path.name] = progress.add_task(f"ingest {path.name}", total=count_records(path))
            return lambda n, t=tasks[path.name]: progress.advance(t, n)

        with progress:
            result = run_main_job(db, data=data, spec_path=spec, out=out, on_ingest=on_ingest)
        for name, report in result.ingest.items():
            print_report(name, report)
        if result.flow is not None:
            from perovdb.cli.workflows import _print_state

            _print_state(result.flow)
        from perovdb.cli.workflows import print_builds

        print_builds(result.builds)
        from perovdb.query import stats as collect_stats

        print_stats(collect_stats(db))
        if result.evaluations:
            table = Table(title=f"evaluation of {result.model_id}")
            for column in ("model", "property", "reference", "subset", "n", "MAE", "RMSE", "R²"):
                table.add_column(column)
            for e in result.evaluations:
                table.add_row(
                    e["model_id"][:14], e["property"], e["reference_level_of_theory"], e["subset"], str(e["n"]),
                    *(f"{e[k]:.3f}" if e.get(k) is not None else "-" for k in ("mae", "rmse", "r2")),
                )
            console.print(table)
        console.print(f"parity plot: {result.parity_png}")
        console.print(f"learning curve: {result.learning_curve_png}")
        if result.prediction_id:
            console.print(f"[bold]provenance of prediction {result.prediction_id}[/bold]")
            console.print(to_tree(walk(db, result.prediction_id)))
        timing = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        console.print(f"done ({timing})")
    if result.flow is not None and not result.flow.finished:
        raise typer.Exit(1)


def _start_fresh(uri: str | None) -> None:
    """Remove the embedded store (never a server database: drop it yourself)."""
    import shutil

    with _open(uri) as db:
        path = db.embedded_path
        if db.backend == "mongodb":
            _fail(PerovdbError("--fresh does not drop server databases; drop it with mongosh if you mean it"))
    if path is not None and path.exists():
        shutil.rmtree(path)
        console.print(f"removed {path}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


from perovdb.cli import accuracy as _accuracy  # noqa: E402,F401  (registers evaluate)
from perovdb.cli import serve as _serve  # noqa: E402,F401  (registers serve)
from perovdb.cli import workflows as _workflows  # noqa: E402,F401  (registers build, flow, provenance, model)
