"""Errors as JSON, body-size limit, API key check and response headers.

Every error leaves as ``{"error": {"status", "title", "detail"}}``: no stack trace, exception text of
an unexpected error or connection string ever reaches a client (unexpected errors are logged here,
with the API key never in the log).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perovdb.errors import ConfigurationError, InvalidRecord, PerovdbError, UnsafeQuery

logger = logging.getLogger("perovdb.api")

#: security headers on every response; the web page loads nothing from other origins
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


class ApiError(Exception):
    """An error with an HTTP status and a message safe to show."""

    def __init__(self, status: int, detail: str, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase


def error_body(status: int, detail: str, title: str | None = None, optimade: bool = False) -> dict[str, Any]:
    """The JSON of an error (OPTIMADE paths also get the spec's ``errors`` list and ``meta``)."""
    error = {"status": status, "title": title or HTTPStatus(status).phrase, "detail": detail}
    body: dict[str, Any] = {"error": error}
    if optimade:
        from optimade import __api_version__

        body["errors"] = [{"status": str(status), "title": error["title"], "detail": detail}]
        body["meta"] = {"api_version": __api_version__, "more_data_available": False}
    return body


def error_response(request: Request | None, status: int, detail: str, title: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response."""
    optimade = request is not None and request.url.path.startswith("/optimade")
    return JSONResponse(error_body(status, detail, title, optimade), status_code=status, headers=headers)


def validation_detail(errors: Sequence[Any]) -> str:
    """One line naming each invalid parameter (at most five) and what is wrong with it."""
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for HTTP errors, invalid parameters, perovdb errors and OPTIMADE filter errors."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(request, exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, validation_detail(exc.errors()), "Bad Request")

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.detail, exc.title)

    @app.exception_handler(UnsafeQuery)
    async def _unsafe(request: Request, exc: UnsafeQuery) -> JSONResponse:
        return error_response(request, 400, str(exc), "Unsafe query")

    @app.exception_handler(InvalidRecord)
    async def _invalid_record(request: Request, exc: InvalidRecord) -> JSONResponse:
        status = 404 if str(exc.message).startswith("no ") else 400
        return error_response(request, status, str(exc))

    @app.exception_handler(ConfigurationError)
    async def _config(request: Request, exc: ConfigurationError) -> JSONResponse:
        logger.error("configuration error: %s", type(exc).__name__)
        return error_response(request, 500, "the server is misconfigured", "Internal Server Error")

    @app.exception_handler(PerovdbError)
    async def _perovdb(request: Request, exc: PerovdbError) -> JSONResponse:
        return error_response(request, 400, str(exc))

    try:  # OPTIMADE's own errors (BadRequest for unknown fields, …)
        from optimade.exceptions import OptimadeHTTPException

        @app.exception_handler(OptimadeHTTPException)
        async def _optimade(request: Request, exc: OptimadeHTTPException) -> JSONResponse:
            return error_response(request, exc.status_code, str(exc.detail), exc.title)
    except ImportError:  # pragma: no cover - optimade is a dependency of the api extra
        pass


class TooLarge(Exception):
    """The request body passed the size limit."""


class Guard:
    """Outermost ASGI layer: caps request bodies (413), turns unexpected errors into a bare JSON 500
    and adds security headers."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body_bytes
            except ValueError:
                await self._reply(send_with_headers, 400, "invalid Content-Length header", scope)
                return
            if too_large:
                await self._reply(send_with_headers, 413, self._limit_text(), scope)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except TooLarge:
            if not started:
                await self._reply(send_with_headers, 413, self._limit_text(), scope)
        except Exception as exc:  # never leak internals: log the type and trace, answer a bare 500
            logger.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"), scope.get("path"),
                         exc_info=exc)
            if not started:
                await self._reply(send_with_headers, 500, "internal error; see the server log", scope)

    def _limit_text(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes"

    @staticmethod
    async def _reply(send: Callable[[Message], Awaitable[None]], status: int, detail: str, scope: Scope) -> None:
        optimade = str(scope.get("path", "")).startswith("/optimade")
        body = json.dumps(error_body(status, detail, None, optimade)).encode()
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})


def require_api_key(request: Request) -> None:
    """Dependency of write endpoints: 403 when writes are disabled (no key configured), 401 without
    an ``X-API-Key`` header, 403 with a wrong one (constant-time comparison)."""
    expected: str | None = request.app.state.settings.api_key
    if not expected:
        raise HTTPException(403, "write endpoints are disabled: the server has no API key configured")
    given = request.headers.get("x-api-key")
    if not given:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"})
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, "invalid API key")
