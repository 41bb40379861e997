"""Zones a licence sets: keep out of an area (exclusion) or stay in one (inclusion, such as a
curfew at home), with weekly schedules in Europe/London local time.

Pure: parsing and checking what probation staff send, and whether a zone version is in force
at a moment. Geometry is kept on the British National Grid, in metres.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from shapely import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from torch import scene
from torch.errors import InvalidInput

LONDON = ZoneInfo("Europe/London")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_RADIUS_M = 5000.0
MIN_AREA_M2 = 1.0


class Kind(StrEnum):
    EXCLUSION = "exclusion"  # keep out
    INCLUSION = "inclusion"  # stay in


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly window: on each of `days` from `start` to `end`, local time. An end at or
    before the start runs past midnight into the next day; start == end is 24 hours."""

    days: frozenset[int]  # 0 = Monday
    start: time
    end: time

    def spans(self, day: datetime) -> tuple[datetime, datetime]:
        """The window that opens on this local date, as UTC instants (daylight saving
        included: a 19:00-07:00 curfew lasts 11 hours in March and 13 in October)."""
        opens = datetime.combine(day.date(), self.start, tzinfo=LONDON)
        closes_on = day.date() if self.end > self.start else day.date() + timedelta(days=1)
        closes = datetime.combine(closes_on, self.end, tzinfo=LONDON)
        return opens.astimezone(UTC), closes.astimezone(UTC)

    def covers(self, t: datetime) -> bool:
        local = t.astimezone(LONDON)
        for back in (0, 1):
            day = local - timedelta(days=back)
            if day.weekday() in self.days:
                opens, closes = self.spans(day)
                if opens <= t < closes:
                    return True
        return False

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }


Schedule = tuple[Window, ...] | None  # None: always


def in_schedule(schedule: Schedule, t: datetime) -> bool:
    return schedule is None or any(w.covers(t) for w in schedule)


def parse_schedule(raw: Any, field: str = "schedule") -> Schedule:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            f"{field} must be null (always) or a list of weekly windows such as "
            '{"days": ["mon", "tue"], "start": "19:00", "end": "07:00"}',
            field,
        )
    return tuple(_window(w, f"{field}[{i}]") for i, w in enumerate(raw))


def _window(raw: Any, field: str) -> Window:
    if not isinstance(raw, dict) or set(raw) != {"days", "start", "end"}:
        raise InvalidInput(f"{field} needs exactly days, start and end", field)
    days = raw["days"]
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise InvalidInput(f"{field}.days must list days from {', '.join(DAYS)}", f"{field}.days")
    return Window(
        frozenset(DAYS.index(d) for d in days),
        _clock(raw["start"], f"{field}.start"),
        _clock(raw["end"], f"{field}.end"),
    )


def _clock(raw: Any, field: str) -> time:
    match = CLOCK.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise InvalidInput(f"{field} must be a 24-hour local time such as 19:00", field)
    return time(int(match[1]), int(match[2]))


def parse_geometry(
    geojson: Any, radius_m: float | None, area: tuple[float, float, float, float]
) -> BaseGeometry:
    """The zone's area on the grid: a polygon or multipolygon, or a circle of radius_m
    around a point. InvalidInput says what is wrong."""
    kind = geojson.get("type") if isinstance(geojson, dict) else None
    if kind == "Point":
        if radius_m is None or not 0 < radius_m <= MAX_RADIUS_M:
            raise InvalidInput(
                f"a Point zone needs radius_m, more than 0 and at most {MAX_RADIUS_M:.0f} m",
                "radius_m",
            )
        centre = scene.to_grid(geojson, area, "geometry")
        assert isinstance(centre, Point)
        return centre.buffer(radius_m, quad_segs=32)
    if kind not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(
            "geometry must be a GeoJSON Polygon or MultiPolygon, or a Point with radius_m",
            "geometry",
        )
    if radius_m is not None:
        raise InvalidInput("radius_m goes only with a Point geometry", "radius_m")
    shape = scene.to_grid(geojson, area, "geometry")
    assert isinstance(shape, Polygon | MultiPolygon)
    if shape.area < MIN_AREA_M2:
        raise InvalidInput("geometry encloses no area", "geometry")
    return shape


@dataclass(frozen=True, slots=True)
class ZoneVersion:
    """One version of a zone. It was the zone's definition from `since` until `until`
    (when the next version replaced it, or the zone was deleted); the licence condition
    it states applies from valid_from to valid_until, within its schedule."""

    zone_id: int
    version: int
    subject_id: int
    kind: Kind
    label: str
    area: BaseGeometry  # grid metres
    schedule: Schedule
    valid_from: datetime
    valid_until: datetime | None
    since: datetime
    until: datetime | None

    def current_at(self, t: datetime) -> bool:
        """Whether this was the zone's definition at t."""
        return self.since <= t and (self.until is None or t < self.until)

    def applies(self, t: datetime) -> bool:
        """Whether the condition binds at t: valid then and inside its schedule."""
        if t < self.valid_from or (self.valid_until is not None and t >= self.valid_until):
            return False
        return in_schedule(self.schedule, t)
