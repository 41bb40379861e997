"""The ingest worker's own small HTTP server: /healthz, /readyz and /metrics.

GET only, one request a connection, on the worker's event loop: it answers the way the
worker itself is doing (a worker whose loop is stuck does not answer /healthz, which is the
point of asking). A full web framework would be a heavy dependency for three routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from torch.observe import metrics_refusal, readiness
from torch.settings import Settings

log = logging.getLogger("torch.ingest.health")

Checks = Callable[[], Awaitable[dict[str, str]]]
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}  # fmt: skip


class HealthServer:
    def __init__(self, settings: Settings, checks: Checks, registry: CollectorRegistry) -> None:
        self._settings = settings
        self._checks = checks
        self._registry = registry
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (the one chosen when the setting is 0)."""
        s = self._settings
        self._server = await asyncio.start_server(
            self._serve, s.worker_http_host, s.worker_http_port, limit=16_384
        )
        port = int(self._server.sockets[0].getsockname()[1])
        log.info(
            "health and metrics on http://%s:%d", s.worker_http_host, port, extra={"port": port}
        )
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
                status, ctype, body = await self._answer(request.decode("latin-1"))
            writer.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that sends nothing sane gets nothing
        finally:
            writer.close()

    async def _answer(self, request: str) -> tuple[int, str, bytes]:
        line, *header_lines = request.split("\r\n")
        parts = line.split(" ")
        if len(parts) != 3:
            return _json(400, {"detail": "not an HTTP request line"})
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if method != "GET":
            return _json(405, {"detail": "only GET is served here"})
        if path == "/healthz":
            return _json(200, {"status": "ok"})
        if path == "/readyz":
            return _json(*readiness(await self._checks()))
        if path == "/metrics":
            headers = dict(_header(h) for h in header_lines if ":" in h)
            refused = metrics_refusal(self._settings, headers.get("authorization"))
            if refused is not None:
                return _json(refused[0], {"detail": refused[1]})
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        return _json(404, {"detail": "served here: /healthz, /readyz, /metrics"})


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def _json(status: int, body: dict[str, str]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()
