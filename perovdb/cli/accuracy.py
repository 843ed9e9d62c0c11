"""``perovdb evaluate``: how good the models are, measured on the group's real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perovdb.cli.common import app, console, err_console, fail
from perovdb.config import ACCURACY_GRAPH_CACHE, ACCURACY_OUTPUT_DIR


@app.command()
def evaluate(
    preset: Annotated[
        str, typer.Option(help="quick (CI: real subset, tiny model, ~1 min) or full (all data, 5 folds, ~1 h on 2 cores).")
    ] = "quick",
    out: Annotated[
        Path,
        typer.Option(help="Folder for accuracy.md, its PNGs and the out-of-fold predictions (the committed report: "
                     "--preset full --out reports)."),
    ] = ACCURACY_OUTPUT_DIR,
    cache: Annotated[
        Path, typer.Option(help="Graph cache (directory artifact store), reused by reruns.")
    ] = ACCURACY_GRAPH_CACHE,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting as FIELD=JSON, e.g. --set epochs=30.")
    ] = None,
) -> None:
    """Grouped k-fold accuracy of mean, random forest and ALIGNN (HSE06-only, PBE→HSE06) on the group's real data."""
    from perovdb.accuracy.__main__ import parse_overrides, run_report
    from perovdb.accuracy.crossval import PRESETS

    if preset not in PRESETS:
        fail(ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}"), code=2)
    try:
        settings = PRESETS[preset](**parse_overrides(overrides or []))
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        fail(error, code=2)
    command = f"perovdb evaluate --preset {preset} --out {out}" + "".join(f" --set '{o}'" for o in overrides or [])
    path = run_report(settings, out, cache, command=command, log=err_console.print)
    console.print(f"report: {path}")
