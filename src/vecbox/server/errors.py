"""Every failure as JSON ``{"error": {"type", "message"}}`` with the status that says whose fault it is.

vecbox's own exceptions keep their class name and message (they already say what was wrong and
what to do); shape errors of a request body are worded field by field; anything unexpected is a
500 whose body says only that - its traceback goes to the server's log, never to the client.

>>> status_of(DuplicateIdError("x")), status_of(InvalidInputError("x")), status_of(CollectionLockedError("x"))
(409, 400, 503)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vecbox.errors import (
    CollectionExistsError,
    CollectionLockedError,
    CollectionNotFoundError,
    CorruptCollectionError,
    DatasetError,
    DuplicateIdError,
    InvalidInputError,
    MissingDependencyError,
    UnknownIdError,
    VecboxError,
)
from vecbox.server.security import AuthError

log = logging.getLogger("vecbox.server")

# Most specific first: DuplicateIdError is an InvalidInputError, but a conflict with stored data.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (CollectionLockedError, 503),
    (CorruptCollectionError, 500),
    (MissingDependencyError, 501),
    (UnknownIdError, 404),
    (CollectionNotFoundError, 404),
    (CollectionExistsError, 409),
    (DuplicateIdError, 409),
    (InvalidInputError, 400),
    (DatasetError, 400),
    (VecboxError, 400),
)
RETRY_AFTER_S = "1"  # a locked collection: writers usually finish within a second
_STATUS_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 413: "RequestTooLarge", 415: "UnsupportedMediaType"}


class RequestTooLarge(HTTPException):
    """A request body above the server's limit (an HTTPException, so that FastAPI's body reader lets it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than this server's limit of {limit:,} bytes; send "
                              "smaller batches (or start the server with a larger --max-body-mb)")


class PartialIngest(Exception):
    """A streamed ingest stopped at ``line``: the batches before it are committed, as the error body says."""

    def __init__(self, cause: BaseException, line: int, rows: int, batches: int, version: int | None,
                 resume_line: int) -> None:
        super().__init__(str(cause))
        self.cause, self.line, self.rows, self.batches, self.version = cause, line, rows, batches, version
        self.resume_line = resume_line  # the first line not stored


def status_of(exc: BaseException) -> int:
    """The HTTP status of a vecbox exception."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    """The one error body: ``{"error": {"type": kind, "message": message, **extra}}``."""
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status, headers=headers)


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else "the request body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[int, str, str]:
    """``(status, type, message)`` for pydantic / FastAPI request errors: bad JSON is 400, a bad shape 422.

    >>> validation_message([{"type": "int_type", "loc": ("body", "k"), "msg": "Input should be a valid integer"}])
    (422, 'InvalidRequest', 'k: Input should be a valid integer')
    """
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            where = f" at position {err['loc'][-1]}" if len(err.get("loc", ())) > 1 else ""
            return 400, "MalformedJSON", (f"the request body is not valid JSON ({ctx.get('error', 'cannot parse')}"
                                          f"{where}); send one JSON object with Content-Type: application/json")
    if any(tuple(err.get("loc", ())) == ("body",) for err in errors):  # no body, a list, or not sent as JSON
        return 422, "InvalidRequest", ("the request body must be one JSON object, sent with Content-Type: "
                                       "application/json (see /docs for its fields)")
    shown = []
    for err in errors[:10]:
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (check its spelling in /docs)"
        elif err.get("type") == "missing":
            msg = "required field is missing"
        shown.append(f"{_field(err.get('loc', ()))}: {msg}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return 422, "InvalidRequest", "; ".join(shown) + more


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the JSON error body."""

    @app.exception_handler(VecboxError)
    async def _vecbox(request: Request, exc: VecboxError) -> JSONResponse:
        status = status_of(exc)
        headers = {"Retry-After": RETRY_AFTER_S} if isinstance(exc, CollectionLockedError) else None
        if status >= 500:
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(status, type(exc).__name__, str(exc), headers)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, kind, message = validation_message(list(exc.errors()))
        return error_response(status, kind, message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}; see /docs for the API"
        return error_response(exc.status_code, _STATUS_TYPES.get(exc.status_code, "HTTPError"), message,
                              getattr(exc, "headers", None))

    @app.exception_handler(PartialIngest)
    async def _partial(request: Request, exc: PartialIngest) -> JSONResponse:
        cause = exc.cause
        if isinstance(cause, HTTPException):
            status, kind, text = cause.status_code, _STATUS_TYPES.get(cause.status_code, "HTTPError"), cause.detail
        elif isinstance(cause, VecboxError):
            status, kind, text = status_of(cause), type(cause).__name__, str(cause)
        else:  # a bug or a broken stream: its details stay in the log
            log.error("ingest into %s stopped at line %d", request.url.path, exc.line, exc_info=cause)
            status, kind, text = 500, "InternalError", "the server failed unexpectedly (the details are in its log)"
        stored = (f"the {exc.batches} batch(es) before it ({exc.rows:,} rows, up to version {exc.version}) are "
                  f"stored; resend the lines from line {exc.resume_line} on" if exc.batches else "nothing was stored")
        return error_response(status, kind, f"line {exc.line}: {text}; {stored}", committed_rows=exc.rows,
                              committed_batches=exc.batches, line=exc.line, version=exc.version,
                              resume_line=exc.resume_line)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "InternalError", "the server failed unexpectedly; the details are in its log")


__all__ = ["PartialIngest", "RequestTooLarge", "error_response", "install", "status_of", "validation_message"]
