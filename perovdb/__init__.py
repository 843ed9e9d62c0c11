"""perovdb: structures, DFT results, ALIGNN models and predictions of halide perovskites, with provenance."""

from __future__ import annotations

__version__ = "0.1.0"

from perovdb.config import Settings, get_settings  # noqa: E402
from perovdb.db import Database, connect  # noqa: E402

__all__ = ["Database", "Settings", "__version__", "connect", "get_settings"]
