"""What every perovdb command shares: the app, consoles, options, opening the database, printing."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from typer.core import TyperGroup

from perovdb.config import get_settings
from perovdb.db import Database, backend_errors, connect


class _DatabaseErrorsAsMessages(TyperGroup):
    """Any command: a database that cannot be reached or refuses an operation is a one-line error (exit 3),
    not a traceback. (URIs in pymongo's messages are host lists, never credentials.)"""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except backend_errors() as error:
            lines = str(error).split(", Topology Description")[0].splitlines()  # pymongo's is long
            message = f": {lines[0][:300]}" if lines else ""
            fail(RuntimeError(f"the database failed: {type(error).__name__}{message}"))


app = typer.Typer(
    cls=_DatabaseErrorsAsMessages,
    help="perovdb: halide perovskite structures, DFT results, ALIGNN models and predictions.",
)
console = Console()
err_console = Console(stderr=True)

UriOption = Annotated[
    str | None, typer.Option("--uri", help="Database URI (default: $PEROVDB_URI, else monty://.perovdb).")
]
class TableFormat(str, Enum):
    """How lists of documents are printed."""

    table = "table"
    json = "json"
    csv = "csv"


class DocumentFormat(str, Enum):
    """How one document (or a comparison) is printed."""

    table = "table"
    json = "json"


FormatOption = Annotated[TableFormat, typer.Option("--format", "-F", help="table, json or csv.")]
DocumentFormatOption = Annotated[DocumentFormat, typer.Option("--format", "-F", help="table or json.")]

DEFAULT_FIELDS = {
    "structures": ["structure_id", "formula", "reduced_formula", "nsites", "origin", "phase", "space_group_symbol"],
    "calculations": ["calculation_id", "structure_id", "level_of_theory", "properties", "source.dataset"],
    "materials": ["material_id", "reduced_formula", "preferred"],
    "models": ["model_id", "name", "version", "target_property", "active", "metrics"],
    "predictions": ["prediction_id", "model_id", "structure_id", "property", "value", "stale"],
    "evaluations": ["evaluation_id", "model_id", "property", "reference_level_of_theory", "subset", "n", "mae"],
}
REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def open_db(uri: str | None) -> Database:
    return connect(uri, settings=get_settings())


def fail(error: Exception, code: int = 3) -> None:
    err_console.print(f"[red]error:[/red] {escape(str(error))}")
    raise typer.Exit(code)


def _get(doc: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path; through a list, the values of its elements (``sources.file``)."""
    value: Any = doc
    for part in dotted.split("."):
        if isinstance(value, list):
            value = [item.get(part) for item in value if isinstance(item, dict)]
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return "" if value is None else str(value)


def print_documents(docs: list[dict[str, Any]], fields: list[str], fmt: str, title: str | None = None) -> None:
    """Print documents as a rich table, JSON lines-free JSON, or CSV."""
    if fmt == "json":
        sys.stdout.write(json.dumps(docs, indent=2, default=str) + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(fields)
        for doc in docs:
            writer.writerow([_cell(_get(doc, f)) for f in fields])
        sys.stdout.write(buffer.getvalue())
    elif fmt == "table":
        table = Table(title=title)
        for field in fields:
            table.add_column(field)
        for doc in docs:
            table.add_row(*(escape(_cell(_get(doc, f))) for f in fields))
        console.print(table)
    else:
        raise typer.BadParameter(f"unknown format {fmt!r}: use table, json or csv")




def progress_bar() -> Progress:
    """A progress bar on stderr for long steps (hidden when not a terminal)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
