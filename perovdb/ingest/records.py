"""What readers yield: a ``Record`` (documents of one row or file) or an ``InvalidRecord`` error."""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perovdb.documents import CalculationDoc, Source, StructureDoc
from perovdb.errors import InvalidRecord

#: bump when readers change what they make of the same input, so re-ingest re-parses
READER_VERSION = 1

#: citation of the data sets perovdb ships (see data/README.md)
KNOWN_REFERENCES: dict[str, str] = {
    "mannodi_halide_perovskites": (
        "A. Mannodi-Kanakkithodi, M. K. Y. Chan, Energy Environ. Sci. 15, 1930 (2022), doi:10.1039/D1EE02971A; "
        "repository mannodiarun/halide_perovs_design (commit a4040f3)"
    ),
    "mannodi_multifidelity_structures": (
        "repository maitreyo18/Multi-fidelity-screening-of-perovskite-photocatalysts (commit 58d5a7f)"
    ),
    "jarvis_alignn_sample": "JARVIS-DFT via repository usnistgov/alignn (commit a8be0be), examples/sample_data",
}


@dataclass
class Record:
    """The documents one source record (a table row, a file) yields; stored together or not at all."""

    name: str
    structures: list[StructureDoc] = field(default_factory=list)
    calculations: list[CalculationDoc] = field(default_factory=list)


@dataclass
class RawRecord:
    """A record as read, not yet parsed: cheap to make, so unchanged records can be skipped.

    ``digest`` covers the raw content and every option that shapes the documents; ``parse`` builds
    the documents (and raises ``InvalidRecord`` for bad input).
    """

    name: str
    dataset: str
    key: str
    digest: str
    parse: Callable[[], Record]

    @property
    def ledger_key(self) -> str:
        """Key of this record in the ingest ledger."""
        return f"{self.dataset}::{self.key}"


ReadResult = RawRecord | InvalidRecord
RecordStream = Iterator[ReadResult]


def parse_record(item: RawRecord) -> Record | InvalidRecord:
    """``item.parse()``, or the ``InvalidRecord`` naming it when its input is bad (bugs propagate)."""
    try:
        return item.parse()
    except ValueError as error:  # InvalidRecord, pydantic's ValidationError, parsers' errors
        return rejected(error, item.name)


class ParseMemo(dict[str, Any]):
    """A cache the records of one reader share while parsing (e.g. structures already described).

    It pickles (and copies) empty: records sent to worker processes carry no documents; the records of
    one pickled chunk of work share one fresh memo there.
    """

    def __reduce__(self) -> tuple[type, tuple]:
        return type(self), ()


def csv_lines(path: Path) -> Iterator[str]:
    """The lines of a CSV file (ended by LF, CRLF or a lone CR, as Excel for Mac writes), each decoded as
    UTF-8 when csv asks for it (a leading byte-order mark dropped), so that a byte which is not UTF-8 is
    reported at its own row, not at the start of a chunk."""
    with open(path, "rb") as handle:
        for number, chunk in enumerate(handle):  # split at LF only: CRs inside are split below
            for line in chunk.splitlines(keepends=True):
                yield (line.removeprefix(codecs.BOM_UTF8) if number == 0 else line).decode("utf-8")


def not_utf8(error: UnicodeDecodeError) -> str:
    """What to tell the user of a file that is not UTF-8."""
    return f"not UTF-8 text (byte 0x{error.object[error.start]:02x}); save the file as UTF-8"


def csv_rows(path: Path) -> Iterator[list[str]]:
    """A strict ``csv.reader`` of ``path`` (``csv_lines``): text after a closing quote, or a quote never
    closed, is an error instead of rows silently merged or split."""
    return csv.reader(csv_lines(path), strict=True)


def readable_rows(reader: Iterator[Any], name: str) -> Iterator[Any]:
    """The rows of a ``csv`` reader, one per record, up to the first row csv cannot read (a field over
    its size limit, a broken quote, a byte that is not UTF-8), which comes as an ``InvalidRecord`` naming
    ``name`` and the row; reading stops there, since after it the following rows could not be numbered
    reliably."""
    row_number = 0
    while True:
        row_number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            message = f"unreadable CSV ({error}); the rows after it were not read"
            yield InvalidRecord(message, field="row", record=f"{name} row {row_number}")
            return
        except UnicodeDecodeError as error:
            message = f"{not_utf8(error)}. The rows after it were not read"
            yield InvalidRecord(message, field="encoding", record=f"{name} row {row_number}")
            return
        yield row


def raw_digest(*parts: object) -> str:
    """Digest of raw content (bytes or text) and options."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


def dataset_name(path: Path, dataset: str | None = None) -> str:
    """A stable data-set name: given, or '<folder>/<file>' for a file, '<folder>' for a folder (the path
    resolved first, so it is the same from any working directory)."""
    if dataset:
        return dataset
    path = Path(path).resolve()
    return path.name if path.is_dir() else f"{path.parent.name}/{path.name}"


def make_source(path: Path, dataset: str, record: str | None, label: str | None = None) -> Source:
    """Source of one record, with the known citation of shipped data sets."""
    return Source(
        dataset=dataset,
        file=display_path(path),
        record=record,
        label=label,
        reference=KNOWN_REFERENCES.get(dataset.split("/")[0]),
    )


def display_path(path: Path) -> str:
    """The path relative to the working directory when inside it (no home directories in documents)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def rejected(error: Exception, record: str, field: str | None = None) -> InvalidRecord:
    """An ``InvalidRecord`` naming ``record``, from any exception raised while reading it."""
    if isinstance(error, InvalidRecord):
        error.record = error.record or record
        return error
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        first = error.errors()[0]
        raised = first.get("ctx", {}).get("error")
        if isinstance(raised, InvalidRecord):  # a validator's own error already names its field
            return rejected(raised, record)
        where = ".".join(str(part) for part in first["loc"])
        return InvalidRecord(first["msg"], field=where or field, record=record)
    return InvalidRecord(f"{type(error).__name__}: {error}", field=field, record=record)
