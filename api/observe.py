"""What the API tells its operators: a request id on every request and log line, one log
line per request, Prometheus metrics, and the health checks.

Requests are logged and measured by route template (`/v1/subjects/{subject_id}`), never by
the path or query string a caller sent: those can hold references to people.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import internal_error, problem
from torch import logs
from torch.observe import metrics_refusal, readiness
from torch.settings import Settings

log = logging.getLogger("torch.api")

# A caller's X-Request-ID is kept only when it is short and plain; otherwise one is made.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
QUIET = {"/healthz", "/readyz", "/metrics"}  # measured, but logged only at debug level
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "torch_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "torch_http_request_seconds",
            "time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def route_of(scope: Scope) -> str:
    """The template of the route that answered, or `unmatched` (a 404 names no route)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    return "unmatched"


class Observe:
    """ASGI middleware: the request id (the caller's X-Request-ID when it is plain, else a new
    one) is set for every log line written while the request is served and returned in the
    response's X-Request-ID; then one log line and one latency observation."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = logs.request_id.set(rid)
        status = 500
        started = time.perf_counter()

        started_answer = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_answer
            if message["type"] == "http.response.start":
                status, started_answer = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # answered here, where the request id is known, as problem details; an error
            # after the answer began can only end the connection
            log.exception("%s %s failed", scope["method"], route_of(scope))
            if started_answer:
                raise
            await internal_error()(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            self.metrics.observe(scope["method"], route, status, seconds)
            log.log(
                logging.DEBUG if route in QUIET else logging.INFO,
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            logs.request_id.reset(token)


async def broker_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready: the database answers a query and the broker accepts a connection."""
    settings: Settings = request.app.state.settings
    checks: dict[str, Any] = {}
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
        checks["database"] = "ok"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        checks["database"] = f"unavailable ({type(err).__name__})"
    ok = await broker_reachable(settings.mqtt_host, settings.mqtt_port)
    checks["broker"] = "ok" if ok else "unreachable"
    status, body = readiness(checks)
    return JSONResponse(body, status)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    refused = metrics_refusal(request.app.state.settings, request.headers.get("authorization"))
    if refused is not None:
        status, reason = refused
        return problem(status, "Unauthorized" if status == 401 else "Forbidden", reason)
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
