"""Waiting for the servers the benchmarks start."""

from __future__ import annotations

import time

import httpx


def up(port: int) -> None:
    """Wait until a server on this machine answers on `port` (up to about ten seconds)."""
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"no server came up on port {port}")
