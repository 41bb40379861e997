"""Bulk correlation: many crimes at once, each answered with the subjects present or possible.

Read a CSV of crimes (a bad row is reported by its line number and does not stop
the others), then run each crime through the proximity method.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from shapely import Point

from torch import grid, nearby
from torch.proximity import Params, Scene, Verdict, iso

MAX_CRIMES = 10_000
COLUMNS = "crime_ref, offence, lat and lon (or easting and northing), from, to, radius_m"


@dataclass(frozen=True, slots=True)
class Crime:
    line: int
    crime_ref: str
    offence: str
    x: float
    y: float
    start: datetime
    end: datetime
    radius_m: float


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


def parse(
    text: str, area: tuple[float, float, float, float], max_window: timedelta
) -> tuple[list[Crime], list[RowError]]:
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or [])
    needed = {"crime_ref", "from", "to", "radius_m"}
    if not needed <= header or not ({"lat", "lon"} <= header or {"easting", "northing"} <= header):
        return [], [RowError(1, f"the header must name {COLUMNS}")]
    crimes: list[Crime] = []
    errors: list[RowError] = []
    for row in reader:
        line = reader.line_num
        if len(crimes) + len(errors) >= MAX_CRIMES:
            errors.append(
                RowError(line, f"more than {MAX_CRIMES:,} crimes; the rest were not read")
            )
            break
        try:
            crimes.append(_crime(line, row, area, max_window))
        except ValueError as err:
            errors.append(RowError(line, str(err)))
    return crimes, errors


def _crime(
    line: int, row: dict[str, str], area: tuple[float, float, float, float], max_window: timedelta
) -> Crime:
    ref = (row.get("crime_ref") or "").strip()
    if not ref:
        raise ValueError("crime_ref is empty")
    x, y = _where(row, area)
    start, end = _when(row, "from"), _when(row, "to")
    if end <= start:
        raise ValueError("to must be after from")
    if end - start > max_window:
        raise ValueError(f"the window may be at most {max_window.days} days long")
    radius = _number(row, "radius_m")
    if not 0 <= radius <= 5000:
        raise ValueError(f"radius_m {radius:g} is not between 0 and 5000")
    return Crime(line, ref, (row.get("offence") or "").strip(), x, y, start, end, radius)


def _number(row: dict[str, str], name: str) -> float:
    text = (row.get(name) or "").strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None


def _where(row: dict[str, str], area: tuple[float, float, float, float]) -> tuple[float, float]:
    if (row.get("lat") or "").strip():
        lat, lon = _number(row, "lat"), _number(row, "lon")
        west, south, east, north = area
        if not (west <= lon <= east and south <= lat <= north):
            raise ValueError(f"lat {lat:g}, lon {lon:g} is outside the service area")
        return grid.point_to_grid(lon, lat)
    e, n = _number(row, "easting"), _number(row, "northing")
    if not (0 <= e <= 700_000 and 0 <= n <= 1_300_000):
        raise ValueError(f"easting {e:g}, northing {n:g} is not on the British National Grid")
    return e, n


def _when(row: dict[str, str], name: str) -> datetime:
    text = (row.get(name) or "").strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{name} {text!r} needs an offset, e.g. 2026-11-23T01:00:00Z")
    return value.astimezone(UTC)


Progress = Callable[[int], Awaitable[None]]


async def run(
    conn: asyncpg.Connection, crimes: list[Crime], params: Params, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """For each crime, the subjects found present or possible, nearest first."""
    found: list[dict[str, Any]] = []
    for done, c in enumerate(crimes, 1):
        scene = Scene(Point(c.x, c.y), c.radius_m, c.start.timestamp(), c.end.timestamp())
        for v in await nearby.verdicts(conn, scene, params):
            a = v.assessment
            if a.verdict in (Verdict.PRESENT, Verdict.POSSIBLE):
                found.append(
                    {
                        "line": c.line,
                        "crime_ref": c.crime_ref,
                        "offence": c.offence,
                        "subject_id": v.subject_id,
                        "subject_ref": v.ref,
                        "verdict": a.verdict.value,
                        "closest_m": None if a.closest_m is None else round(a.closest_m, 1),
                        "closest_at": None if a.closest_at is None else iso(a.closest_at),
                    }
                )
        if progress is not None:
            await progress(done)
    return found


RESULT_COLUMNS = (
    "line",
    "crime_ref",
    "offence",
    "subject_id",
    "subject_ref",
    "verdict",
    "closest_m",
    "closest_at",
)


def to_csv(found: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(found)
    return out.getvalue()
