"""``perovdb serve``: the HTTP API, OPTIMADE endpoints and the web page."""

from __future__ import annotations

from typing import Annotated

import typer

from perovdb.cli.common import UriOption, app, console, fail, open_db
from perovdb.config import get_settings
from perovdb.db import redact_uri


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    uri: UriOption = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (one line each; costs about 10% of the server's CPU time per request).")
    ] = False,
) -> None:
    """Serve the HTTP API, OPTIMADE (/optimade/v1) and the web page (/). Read-only unless PEROVDB_API_KEY is set.
    Errors are always logged; each request only with --access-log."""
    try:
        import uvicorn

        from perovdb.api import create_app
    except ImportError:
        fail(RuntimeError("the API needs the api extra: pip install 'perovdb[api]'"), code=2)
    settings = get_settings()
    with open_db(uri) as db:
        console.print(
            f"perovdb API on http://{host}:{port}/ over {redact_uri(db.uri)} ({db.backend}); "
            f"writes {'enabled' if settings.api_key else 'disabled'}"
        )
        uvicorn.run(create_app(db, settings), host=host, port=port, log_level="info", access_log=access_log)
