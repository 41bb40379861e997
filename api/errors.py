"""One place that turns errors into RFC 9457 problem details."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from torch import logs
from torch.errors import InvalidInput, TooManyRequests, TorchError

PROBLEM = "application/problem+json"
log = logging.getLogger("torch.api")

# The errors every route behind a token may answer, as /docs shows them: problem details.
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what is wrong, and what to do"},
        "errors": {
            "type": "array",
            "description": "with 422: each field and what is wrong with it",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "request_id": {"type": "string", "description": "to quote to the operators"},
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}}}
    for status, what in [
        (401, "no valid bearer token"),
        (403, "the user's role may not use the route"),
        (404, "no such thing, or none the user may see"),
        (422, "invalid input: `errors` names each field and what is wrong with it"),
        (429, "too many failed sign-ins from this address (Retry-After)"),
        (500, "a fault of the service's own: quote `request_id` to the operators"),
        (503, "the database cannot be reached just now: try again after Retry-After seconds"),
    ]
}

# The database cannot be reached, or is starting or stopping: the request was not at
# fault, and the same request will do once it is back.
UNREACHABLE = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)
RETRY_AFTER_S = 5


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    rid = logs.request_id.get()
    if rid is not None:
        body["request_id"] = rid  # what to quote when asking the operators about it
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _error(e: Any) -> dict[str, str]:
    """A validation error as field and message; a body that is not JSON at all is
    reported as the body's, with where its parser stopped (FastAPI's `loc` holds the
    character offset there, not a field)."""
    if e["type"] == "json_invalid":
        at = e["loc"][-1]
        why = e.get("ctx", {}).get("error", "")
        return {"field": "body", "message": f"the body is not valid JSON: {why} at character {at}"}
    return {"field": _field(tuple(e["loc"])), "message": e["msg"]}


def install(app: FastAPI) -> None:
    @app.exception_handler(TorchError)
    async def torch_error(_: Request, err: TorchError) -> JSONResponse:
        extra: dict[str, Any] = {}
        headers = None
        if isinstance(err, InvalidInput) and err.field:
            extra["errors"] = [{"field": err.field, "message": str(err)}]
        if isinstance(err, TooManyRequests):
            headers = {"Retry-After": str(err.retry_after_s)}
        return problem(err.status, err.title, str(err), headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = [_error(e) for e in err.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid input", detail, errors=errors)

    @app.exception_handler(asyncpg.DataError)
    async def unstorable(request: Request, err: asyncpg.DataError) -> JSONResponse:
        # The last line of defence: api.params refuses such values, naming the field, before
        # any route runs; one it missed is still the request's fault, and still a 422. The
        # log has the error's name and code only: its text may quote the value, which may be
        # a reference.
        log.warning(
            "%s %s: the database refused a value (%s, SQLSTATE %s)",
            request.method,
            request.url.path,
            type(err).__name__,
            getattr(err, "sqlstate", None),
        )
        return problem(
            422,
            "Invalid input",
            f"a value in the request cannot be stored or compared: {str(err).splitlines()[0]}",
        )

    async def unreachable(request: Request, err: Exception) -> JSONResponse:
        log.warning(
            "%s %s: the database cannot be reached (%s)",
            request.method,
            request.url.path,
            type(err).__name__,
        )
        return problem(
            503,
            "Service unavailable",
            "the database cannot be reached just now: send the request "
            f"again in {RETRY_AFTER_S} seconds",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    for kind in UNREACHABLE:  # looked up by class, subclasses included
        app.add_exception_handler(kind, unreachable)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        # with its headers: a 405 says what is allowed (Allow), as HTTP requires
        return problem(err.status_code, str(err.detail), str(err.detail), dict(err.headers or {}))


def internal_error() -> JSONResponse:
    """The answer to a request that failed on an error of the service's own: nothing of the
    error, only the request id to quote (api.observe logs the error under it)."""
    return problem(
        500,
        "Internal error",
        "the request failed on an error of the service's own; the operators can find it in"
        " the log under the request id",
    )
