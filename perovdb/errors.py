"""Exceptions that name what was wrong, so a user can find the bad record and field."""

from __future__ import annotations


class PerovdbError(Exception):
    """Base class of perovdb's own errors."""


class InvalidRecord(PerovdbError, ValueError):
    """A record (file, row, document) that cannot be accepted.

    ``field`` names the offending field or column; ``record`` names the file/row once known
    (readers raise without it, the ingest loop fills it in).
    """

    def __init__(self, message: str, *, field: str | None = None, record: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.record = record

    def __str__(self) -> str:
        where = f"{self.record}: " if self.record else ""
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}{what}{self.message}"


class UnsafeQuery(PerovdbError, ValueError):
    """A user filter that uses an operator perovdb refuses (server-side JavaScript and the like)."""


class ConfigurationError(PerovdbError, ValueError):
    """A URI or setting perovdb cannot use."""
