"""Domain errors and the one handler that renders every error as ``{"error", "detail"}``."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class NectarError(Exception):
    """An expected failure. Subclasses set ``code`` and ``status``."""

    code = "error"
    status = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(NectarError):
    code = "bad_request"
    status = 400


class Unauthorized(NectarError):
    code = "unauthorized"
    status = 401

    def __init__(self, detail: str = "authentication required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(NectarError):
    code = "forbidden"
    status = 403


class NotFound(NectarError):
    code = "not_found"
    status = 404


class Conflict(NectarError):
    code = "conflict"
    status = 409


class TooManyRequests(NectarError):
    code = "rate_limited"
    status = 429

    def __init__(self, detail: str, retry_after: int, headers: dict[str, str] | None = None):
        super().__init__(
            detail, headers={"Retry-After": str(max(1, retry_after)), **(headers or {})}
        )
        self.retry_after = retry_after


class PayloadTooLarge(NectarError):
    code = "payload_too_large"
    status = 413


class Overloaded(NectarError):
    """No database connection came free in time: every one is busy with other requests."""

    code = "service_unavailable"
    status = 503

    def __init__(self, detail: str = "the service is overloaded; retry shortly") -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


class ErrorResponse(BaseModel):
    error: str
    detail: str


_DESCRIPTIONS = {
    400: "the request breaks a rule (the detail says which)",
    401: "missing, expired or revoked credentials",
    403: "the caller's role may not do this",
    404: "no such resource, or not visible to the caller",
    409: "conflicts with the current state",
    413: "request body too large",
    422: "the request is malformed (the detail names the field)",
    429: "rate limited; see Retry-After",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the error shape for these status codes."""
    return {
        code: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(code, "error")}
        for code in codes
    }


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


# PostgreSQL refuses text it cannot store: NUL characters in text (22021) and \u0000 in JSONB
# (22P05). SQLite stores them. Either way it is the client's input, not a bug.
_UNSTORABLE_TEXT = {"22021", "22P05"}


def nectar_response(exc: NectarError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.detail), status_code=exc.status, headers=exc.headers
    )


def _unstorable() -> JSONResponse:
    return JSONResponse(
        error_body("validation_error", "text must not contain NUL (\\u0000) characters"),
        status_code=422,
    )


def _is_unstorable(exc: BaseException) -> bool:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(cause, "sqlstate", None) in _UNSTORABLE_TEXT


def _pool_exhausted(method: str, path: str) -> JSONResponse:
    log.warning("no database connection free for %s %s", method, path)
    return nectar_response(Overloaded())


def _internal(method: str, path: str, exc: BaseException) -> JSONResponse:
    # A bug. Logged with the path only: request bodies may hold secrets or PII.
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "an unexpected error occurred; it has been logged"),
        status_code=500,
    )


def render(exc: Exception, method: str, path: str) -> JSONResponse:
    """What the handlers below answer for an exception out of an endpoint, for a path that
    runs outside FastAPI's routing (the chat turn's, ``nectar.chat.fastpath``)."""
    if isinstance(exc, NectarError):
        return nectar_response(exc)
    if isinstance(exc, DBAPIError | asyncpg.PostgresError) and _is_unstorable(exc):
        return _unstorable()
    if isinstance(exc, sa_exc.TimeoutError):
        return _pool_exhausted(method, path)
    return _internal(method, path, exc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NectarError)
    async def _nectar(_request: Request, exc: NectarError) -> JSONResponse:
        return nectar_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("validation_error", _describe_validation(list(exc.errors()))),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(
            exc.status_code, "error" if exc.status_code < 500 else "server_error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            error_body(code, detail), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if _is_unstorable(exc):
            return _unstorable()
        raise exc

    # The chat turn talks to PostgreSQL through asyncpg directly (nectar.chat.store).
    @app.exception_handler(asyncpg.PostgresError)
    async def _postgres(request: Request, exc: asyncpg.PostgresError) -> JSONResponse:
        if _is_unstorable(exc):
            return _unstorable()
        raise exc

    @app.exception_handler(sa_exc.TimeoutError)
    async def _timeout(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        return _pool_exhausted(request.method, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request.method, request.url.path, exc)
