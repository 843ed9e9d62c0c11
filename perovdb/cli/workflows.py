"""``perovdb build``, ``perovdb flow …``, ``perovdb provenance …`` and ``perovdb model …``: thin over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import click
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from perovdb.cli.common import (
    DocumentFormat,
    DocumentFormatOption,
    UriOption,
    app,
    console,
    fail,
    open_db,
    progress_bar,
)
from perovdb.errors import PerovdbError

if TYPE_CHECKING:
    from perovdb.builders.runner import BuildReport


class _ShowByDefault(TyperGroup):
    """``perovdb provenance ID [options]`` is ``perovdb provenance show ID [options]``; ``diff`` is a command.

    (A group's own positional argument would swallow the command name, and a group stops reading its
    options at the first positional, so the id and its options belong to a command.)"""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = self._command_first(ctx, args)
        return super().parse_args(ctx, args)

    def _command_first(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``args`` with the command name first: a name found after only that command's options (and their
        values) is moved to the front (``--uri X diff A B``); otherwise ``show`` is prepended."""
        for name, command in self.commands.items():
            takes_value = {
                option: not param.is_flag and not param.count
                for param in command.get_params(ctx)
                if param.param_type_name == "option"  # typer's own click: no isinstance with click's classes
                for option in (*param.opts, *param.secondary_opts)
            }
            position = 0
            while position < len(args):
                option, inline_value = args[position].partition("=")[::2]
                if option not in takes_value:
                    break
                position += 2 if takes_value[option] and not inline_value else 1
            if position < len(args) and args[position] == name and position > 0:
                return [name, *args[:position], *args[position + 1 :]]
        return ["show", *args]


flow_app = typer.Typer(help="Run, submit, list and resume workflows (jobflow flows from workflows/*.yaml).")
provenance_app = typer.Typer(
    cls=_ShowByDefault,
    help="Where a number came from and what was derived from it: perovdb provenance ID, or provenance diff A B.",
    no_args_is_help=True,
)
model_app = typer.Typer(help="Registered models: list, import upstream ALIGNN checkpoints, activate.")
app.add_typer(flow_app, name="flow")
app.add_typer(provenance_app, name="provenance")
app.add_typer(model_app, name="model")


# -- builders ---------------------------------------------------------------------------------------
@app.command()
def build(
    builders: Annotated[list[str] | None, typer.Argument(help="materials, predictions, evaluations or all.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Rebuild everything, not only what changed.")] = False,
    export: Annotated[
        Path | None, typer.Option(help="Only write each builder as a JSON file into this folder, for maggma's mrun.")
    ] = None,
    uri: UriOption = None,
) -> None:
    """Bring the derived collections up to date (in dependency order, incrementally)."""
    from perovdb.builders import export_builders, run_builders

    with open_db(uri) as db:
        if export is not None:
            try:
                paths = export_builders(db, export, builders or ["all"], full=full)
            except ValueError as error:
                fail(error)
            console.print("run them in order with maggma: " + " && ".join(f"mrun {p}" for p in paths))
            return
        try:
            with progress_bar() as progress:
                tasks: dict[str, int] = {}

                def advance(name: str, done: int, total: int) -> None:
                    if name not in tasks:
                        tasks[name] = progress.add_task(name, total=total)
                    progress.update(tasks[name], completed=done)

                reports = run_builders(db, builders or ["all"], dry_run=dry_run, full=full, on_progress=advance)
        except (PerovdbError, ValueError) as error:
            fail(error)
    print_builds(reports, dry_run=dry_run)


def print_builds(reports: Sequence[BuildReport], dry_run: bool = False) -> None:
    """The table of builder runs: items considered and built, documents changed, why."""
    table = Table(
        title="build (dry run: nothing written)" if dry_run else "builders",
        caption="items: materials; (active model, structure) pairs; (model, property) pairs evaluated. "
        "Removed predictions are marked stale, not deleted.",
    )
    table.add_column("builder", no_wrap=True)
    for column in ("items", "to build" if dry_run else "built", "documents changed", "removed", "seconds", "why"):
        table.add_column(column)
    for r in reports:
        why = "unchanged" if r.unchanged_since else ", ".join(f"{k}: {v}" for k, v in r.reasons.items())
        table.add_row(r.builder, str(r.total), str(r.planned), "-" if dry_run else str(r.changed), str(r.removed),
                      f"{r.seconds:.1f}", escape(why))
    console.print(table)
    for r in reports:
        if r.unchanged_since:
            console.print(f"{r.builder}: unchanged since {r.unchanged_since} (nothing written since then)")


# -- flows ------------------------------------------------------------------------------------------
def _print_state(state) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"flow {state.name} {state.flow_uuid}")
    for column in ("job", "uuid", "status", "started", "finished"):
        table.add_column(column)
    colour = {"completed": "green", "failed": "red", "running": "yellow", "waiting": "dim"}
    for job in state.jobs:
        status = f"[{colour.get(job['status'], 'white')}]{job['status']}[/]"
        table.add_row(job["name"], job["uuid"], status, str(job["started"] or ""), str(job["finished"] or ""))
        if job["error"]:
            table.add_row("", "", f"[red]{escape(job['error'][:200])}[/red]", "", "")
    console.print(table)


@flow_app.command("run")
def flow_run(spec: Annotated[Path, typer.Argument(help="A workflow spec, e.g. workflows/hse_gap.yaml.")], uri: UriOption = None) -> None:
    """Run a workflow here, job by job, with its JobStore in the same database."""
    from perovdb.flows import WorkflowSpec, run_flow

    try:
        workflow = WorkflowSpec.from_file(spec)
    except PerovdbError as error:
        fail(error)
    with open_db(uri) as db:
        flow = workflow.to_flow()
        with console.status(f"running {workflow.name} ({len(flow.jobs)} jobs)…"):
            state = run_flow(db, flow, spec=workflow.model_dump(mode="json"), source=str(spec))
    _print_state(state)
    if not state.finished:
        console.print(f"resume with: perovdb flow rerun {state.flow_uuid}")
        raise typer.Exit(1)


@flow_app.command("submit")
def flow_submit(
    spec: Annotated[Path, typer.Argument(help="A workflow spec.")],
    engine: Annotated[str, typer.Option(help="fireworks or jobflow-remote.")] = "jobflow-remote",
    worker: Annotated[str | None, typer.Option(help="jobflow-remote worker name.")] = None,
    project: Annotated[str | None, typer.Option(help="jobflow-remote project name.")] = None,
    launchpad: Annotated[Path | None, typer.Option(help="FireWorks my_launchpad.yaml (default: auto-load).")] = None,
    uri: UriOption = None,
) -> None:
    """Hand a workflow to a cluster engine; its jobs write to this database (use a mongodb:// URI)."""
    from perovdb.flows import WorkflowSpec, submit_flow

    try:
        workflow = WorkflowSpec.from_file(spec)
        with open_db(uri) as db:
            flow = workflow.to_flow(uri=db.uri)
            engine_id = submit_flow(
                db, flow, engine,  # type: ignore[arg-type]
                launchpad=launchpad, worker=worker, project=project, spec=workflow.model_dump(mode="json"),
            )
    except PerovdbError as error:
        fail(error)
    console.print(f"submitted flow {flow.uuid} to {engine} (id {engine_id}); follow it with: perovdb flow status {flow.uuid}")


@flow_app.command("status")
def flow_status(flow_uuid: Annotated[str | None, typer.Argument(help="A flow uuid (default: recent flows).")] = None, uri: UriOption = None) -> None:
    """List flows and the state of their jobs."""
    from perovdb.flows import flow_state, list_flows

    with open_db(uri) as db:
        try:
            states = [flow_state(db, flow_uuid)] if flow_uuid else list_flows(db)
        except PerovdbError as error:
            fail(error)
    if not states:
        console.print("no flows yet: perovdb flow run workflows/hse_gap.yaml")
    for state in states:
        _print_state(state)


@flow_app.command("rerun")
def flow_rerun(flow_uuid: Annotated[str, typer.Argument(help="The flow to resume.")], uri: UriOption = None) -> None:
    """Resume a flow: finished jobs are not recomputed, no prediction is duplicated."""
    from perovdb.flows import rerun_flow

    with open_db(uri) as db:
        try:
            with console.status("resuming…"):
                state = rerun_flow(db, flow_uuid)
        except PerovdbError as error:
            fail(error)
    _print_state(state)
    if not state.finished:
        raise typer.Exit(1)


# -- provenance -------------------------------------------------------------------------------------
@provenance_app.command("show")
def provenance(
    identifier: Annotated[str, typer.Argument(help="A prediction, model, evaluation, material, structure or job id.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the lineage as JSON here.")] = None,
    picture: Annotated[Path | None, typer.Option("--picture", help="Also draw it: .dot, .svg or .png (Graphviz).")] = None,
    uri: UriOption = None,
) -> None:
    """Walk from a document back to its source files and forward to everything derived from it (the default)."""
    from perovdb.provenance import render, to_json, to_tree, walk

    with open_db(uri) as db:
        try:
            lineage = walk(db, identifier)
        except KeyError as error:
            fail(PerovdbError(f"not found: {error}"))
    console.print(to_tree(lineage))
    if json_out:
        to_json(lineage, json_out)
        console.print(f"lineage JSON written to {json_out}")
    if picture:
        try:
            render(lineage, picture)
            console.print(f"lineage picture written to {picture}")
        except RuntimeError as error:
            fail(error)


@provenance_app.command("diff")
def provenance_diff(
    first: Annotated[str, typer.Argument(help="A model id.")],
    second: Annotated[str, typer.Argument(help="Another model id.")],
    fmt: DocumentFormatOption = DocumentFormat.table,
    uri: UriOption = None,
) -> None:
    """What differs between two models: data, settings, code."""
    from perovdb.provenance import diff_models

    with open_db(uri) as db:
        try:
            changes = diff_models(db, first, second)
        except KeyError as error:
            fail(PerovdbError(str(error)))
    if fmt == "json":
        sys.stdout.write(json.dumps(changes, indent=2, default=str) + "\n")
        return
    for category, items in changes.items():
        table = Table(title=f"{category}: {len(items)} difference(s)")
        for column in ("field", first[:14], second[:14]):
            table.add_column(column)
        for item in items:
            first_value = item["first"] if "only_first" not in item else f"{item['first']} ({item['only_first']} only here)"
            second_value = item["second"] if "only_second" not in item else f"{item['second']} ({item['only_second']} only here)"
            table.add_row(escape(item["field"]), escape(str(first_value)), escape(str(second_value)))
        console.print(table)


# -- models -----------------------------------------------------------------------------------------
@model_app.command("list")
def model_list(uri: UriOption = None) -> None:
    """Registered models with their metrics."""
    with open_db(uri) as db:
        models = list(db.models.query({}, sort={"created_at": 1}))
    table = Table(title="models")
    for column in ("model_id", "name", "v", "property", "level", "origin", "active", "test MAE"):
        table.add_column(column)
    for m in models:
        mae = m.get("metrics", {}).get("test_mae")
        table.add_row(m["model_id"], escape(m["name"]), str(m["version"]), m["target_property"], str(m.get("target_level_of_theory")),
                      m["origin"], "yes" if m.get("active") else "", f"{mae:.3f}" if mae is not None else "")
    console.print(table)


@model_app.command("import")
def model_import(
    checkpoint: Annotated[Path, typer.Argument(help="Upstream ALIGNN checkpoint: a zip or folder with config.json.")],
    name: Annotated[str, typer.Option(help="Model name.")],
    property_name: Annotated[str, typer.Option("--property", help="Property it predicts.")],
    level: Annotated[str | None, typer.Option(help="Level of theory of its training targets.")] = None,
    activate: Annotated[bool, typer.Option(help="Make it active (builders keep its predictions current).")] = False,
    uri: UriOption = None,
) -> None:
    """Register an upstream ALIGNN checkpoint (classic or ALIGNN 2.0) as a model."""
    from perovdb.ml.registry import activate as activate_model
    from perovdb.ml.registry import import_upstream

    with open_db(uri) as db:
        known = {d["model_id"] for d in db.models.query({"name": name}, properties=["model_id"])}
        try:
            doc = import_upstream(db, checkpoint, name, property_name, level)
            if activate:
                activate_model(db, doc.model_id)
        except (OSError, ValueError, KeyError, PerovdbError) as error:
            fail(PerovdbError(f"{checkpoint}: {error}"))
    said = "already registered as" if doc.model_id in known else "registered"
    console.print(f"{said} {doc.model_id} ({escape(doc.name)} v{doc.version}, {doc.architecture})")


@model_app.command("activate")
def model_activate(model_id: Annotated[str, typer.Argument()], uri: UriOption = None) -> None:
    """Make a model active and retire the other versions of its name."""
    from perovdb.ml.registry import activate as activate_model

    with open_db(uri) as db:
        try:
            doc = activate_model(db, model_id)
        except KeyError as error:
            fail(PerovdbError(str(error)))
    console.print(f"{doc.model_id} ({escape(doc.name)} v{doc.version}) is active; run perovdb build to update predictions")
