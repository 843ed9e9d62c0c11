"""Paged reads for the API: the same checked filters as ``perovdb.query.find``, plus skip and a time limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote_plus

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from perovdb.db import Database
from perovdb.documents import COLLECTIONS
from perovdb.errors import InvalidRecord
from perovdb.query import check_filter

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """API limits; each can be set on ``Settings`` as ``api_<name>`` (``PEROVDB_API_<NAME>``)."""

    max_limit: int = 1000
    default_limit: int = 100
    max_body_bytes: int = 5 * 1024 * 1024
    max_time_ms: int = 10_000

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """Defaults, overridden by ``settings.api_max_limit`` etc. where the settings have them."""
        values = {name: getattr(settings, f"api_{name}", None) for name in cls.__dataclass_fields__}
        return cls(**{k: int(v) for k, v in values.items() if v is not None})


def _default(value: Any) -> Any:
    """What orjson cannot encode itself (BSON types such as ``Decimal128``): their text."""
    return str(value)


#: naive datetimes (how the stores hand back their UTC times) as ISO-8601 UTC with a ``Z``
_ORJSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson (datetimes as ISO-8601, naive ones as UTC). JSON has no NaN or infinity:
    such a float (a failed prediction's value, say) is rendered as ``null``."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=_ORJSON_OPTIONS)


#: what stays as written in a next link's query (RFC 3986 sub-delims, ":@/?" and "%" of existing escapes)
_QUERY_SAFE = "!$&'()*+,;=:@/?~%"
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9\-._" + re.escape(_QUERY_SAFE) + "]")


def next_page_url(request: Request, page: dict[str, int]) -> str:
    """The request's URL with the paging parameters in ``page`` set; the rest of its query string is kept
    as the client wrote it (characters a URL query cannot hold percent-encoded, escapes kept), so the next
    page is the same query."""
    parts = request.scope["query_string"].decode("latin-1").split("&")  # latin-1: each byte one character
    kept = [quote(part, safe=_QUERY_SAFE, encoding="latin-1") if _NEEDS_QUOTING.search(part) else part
            for part in parts if part and unquote_plus(part.partition("=")[0]) not in page]  # fmt: skip
    kept += [f"{name}={value}" for name, value in page.items()]
    # a raw "#" in the query string makes starlette's URL of the request end in a fragment: drop it
    return str(request.url.replace(query="&".join(kept), fragment=""))


async def in_database(db: Database, work: Callable[[], T]) -> T:
    """Run a request's database work where it belongs.

    On MongoDB, in the thread pool: pymongo waits on the network while other requests go on. On the
    in-process backends (embedded, memory), on the event loop itself: their work is Python holding the
    GIL, so a thread would only add hand-over latency, and montydb's SQLite storage must not be used from
    two threads at once; so requests take turns there.
    """
    if db.backend == "mongodb":
        return await run_in_threadpool(work)
    return work()


def query_page(
    db: Database,
    collection: str,
    criteria: dict[str, Any],
    *,
    fields: list[str] | None = None,
    sort: dict[str, int] | None = None,
    skip: int = 0,
    limit: int = 100,
    max_time_ms: int | None = None,
    count: bool = True,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of documents (without ``_id``) and the total count of matches.

    ``max_time_ms`` is passed to the server on MongoDB; the embedded and in-memory backends have no
    query timeout (they scan a laptop-sized collection).
    """
    if collection not in COLLECTIONS:
        raise InvalidRecord(f"unknown collection {collection!r}")
    check_filter(criteria)
    store = db.store(collection)
    key = COLLECTIONS[collection][1]
    sort = dict(sort or {})
    sort.setdefault(key, 1)  # a stable order, so pages never overlap
    properties = None
    if fields is not None:
        properties = list(dict.fromkeys([*fields, key]))
    extra: dict[str, Any] = {}
    if db.backend == "mongodb" and max_time_ms:
        extra["max_time_ms"] = max_time_ms
    docs = list(store.query(criteria, properties=properties, sort=sort, skip=skip, limit=limit, **extra))
    for doc in docs:  # each backend hands out new dicts: drop _id in place rather than copy every document
        doc.pop("_id", None)
    total: int | None = None
    if count:
        if len(docs) < limit and (docs or not skip):  # the page ends the matches: nothing left to count
            total = skip + len(docs)
        elif db.backend == "mongodb" and max_time_ms:
            total = store._collection.count_documents(criteria, maxTimeMS=max_time_ms)  # type: ignore[attr-defined]
        else:
            total = store.count(criteria)
    return docs, total
