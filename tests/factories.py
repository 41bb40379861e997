"""Small readable factories for payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from torch import grid

# Fixes are placed an hour before the test run, comfortably inside the limits.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def at(t: float) -> datetime:
    return BASE + timedelta(seconds=t)


def fix(t: float = 0, lat: float = 51.75, lon: float = -0.34, **extra: Any) -> dict[str, Any]:
    """A fix payload `t` seconds after BASE."""
    return {"ts": at(t).isoformat(), "lat": lat, "lon": lon, "acc": 8.0, **extra}


def grid_fix(t: datetime, x: float, y: float, acc: float = 5.0) -> dict[str, Any]:
    """A fix payload at time t, placed by British National Grid easting x and northing y."""
    lon, lat = grid.point_from_grid(x, y)
    return {"ts": t.isoformat(), "lat": lat, "lon": lon, "acc": acc}


def fixes_topic(serial: str = "T1") -> str:
    return f"tags/{serial}/fixes"
