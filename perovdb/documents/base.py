"""Shared pieces of every document: timestamps, sources, identifiers and content hashes."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    """Current time in UTC, truncated to milliseconds (what BSON stores)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def naive_utc(value: datetime) -> datetime:
    """A datetime as naive UTC: how every backend hands stored dates back (and what mongomock can compare)."""
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value


def content_hash(payload: Any, length: int = 20) -> str:
    """Stable hex digest of a JSON-able payload (keys sorted, floats as Python prints them)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


#: stands in for a leading '$' in stored keys (MongoDB filters kept as data, e.g. a job's query)
ESCAPED_DOLLAR = "\uff04"


def escape_keys(value: Any) -> Any:
    """Copy of ``value`` whose dict keys starting with '$' start with a full-width '＄' instead (storable)."""
    if isinstance(value, dict):
        return {(ESCAPED_DOLLAR + k[1:] if isinstance(k, str) and k.startswith("$") else k): escape_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_keys(v) for v in value]
    return value


def unescape_keys(value: Any) -> Any:
    """Inverse of ``escape_keys``."""
    if isinstance(value, dict):
        return {("$" + k[1:] if isinstance(k, str) and k.startswith(ESCAPED_DOLLAR) else k): unescape_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape_keys(v) for v in value]
    return value


class PerovdbDocument(BaseModel):
    """Base of every stored document: strict fields, UTC timestamps."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True)

    created_at: datetime = Field(default_factory=utcnow, description="When the document was first stored (UTC).")
    last_updated: datetime = Field(
        default_factory=utcnow, description="When the document's content last changed (UTC)."
    )

    @field_validator("created_at", "last_updated", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        # embedded stores hand back naive datetimes; they were written as UTC
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    def to_store(self) -> dict[str, Any]:
        """The document as stored (BSON-friendly: datetimes stay datetimes)."""
        return self.model_dump(mode="python")

    #: fields another field already digests: ``content_digest`` covers that digest instead of them
    digested_fields: ClassVar[frozenset[str]] = frozenset()

    def content_digest(self) -> str:
        """Hash of the content, timestamps excluded: equal digests mean nothing changed."""
        return content_hash(self.model_dump(mode="json", exclude={"created_at", "last_updated", *self.digested_fields}))


class Source(BaseModel):
    """Where a record came from, precise enough to find the original line again."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Data set name, e.g. 'mannodi_halide_perovskites/PBE_data.csv'.")
    file: str | None = Field(default=None, description="File the record was read from, relative when possible.")
    record: str | None = Field(default=None, description="Row number (1-based, data rows), or the file's path inside the ingested folder.")
    label: str | None = Field(default=None, description="The record's own name in the source, e.g. its formula.")
    reference: str | None = Field(default=None, description="Citation: DOI or repository of the source data.")

    def key(self) -> tuple[str, str | None]:
        """What identifies this source among others: data set and record (``file`` is where it was read, which
        depends on the working directory, so the same record read from elsewhere is the same source)."""
        return (self.dataset, self.record)
