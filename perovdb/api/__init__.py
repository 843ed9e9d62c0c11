"""HTTP API and web page: ``create_app(db, settings)`` (FastAPI), with OPTIMADE at ``/optimade/v1``."""

from __future__ import annotations

from perovdb.api.app import create_app
from perovdb.api.store import Limits

__all__ = ["Limits", "create_app"]
