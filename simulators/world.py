"""The simulated world: Hertfordshire's towns on the British National Grid, a
synthetic street grid, and trips along it that never outrun their mode of travel.

Everything is in grid metres (EPSG:27700), so distances and speeds are exact.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources

from torch import grid

BLOCK_M = 100.0  # street spacing of the synthetic grid


class Mode(StrEnum):
    STAY = "stay"
    WALK = "walk"
    BICYCLE = "bicycle"
    CAR = "car"


# Cruising speeds, m/s. A car does TOWN on the street grid and ROAD between towns.
SPEED = {Mode.WALK: 1.4, Mode.BICYCLE: 4.5, Mode.CAR: 13.0}
ROAD_SPEED = 29.0
# The most each mode may ever reach: what plausibility checks hold tracks to.
SPEED_LIMIT = {Mode.STAY: 0.0, Mode.WALK: 2.0, Mode.BICYCLE: 8.0, Mode.CAR: 31.0}


@dataclass(frozen=True, slots=True)
class Point:
    x: float  # easting, m
    y: float  # northing, m

    def dist(self, other: Point) -> float:
        return math.hypot(self.x - other.x, self.y - other.y)

    def towards(self, other: Point, fraction: float) -> Point:
        return Point(self.x + (other.x - self.x) * fraction, self.y + (other.y - self.y) * fraction)

    def lonlat(self) -> tuple[float, float]:
        return grid.point_from_grid(self.x, self.y)

    @staticmethod
    def of(lat: float, lon: float) -> Point:
        x, y = grid.point_to_grid(lon, lat)
        return Point(x, y)


@dataclass(frozen=True, slots=True)
class Town:
    district: str
    name: str
    centre: Point


@cache
def towns() -> tuple[Town, ...]:
    text = resources.files("simulators").joinpath("data/hertfordshire-towns.csv").read_text()
    return tuple(
        Town(row["district"], row["town"], Point.of(float(row["lat"]), float(row["lon"])))
        for row in csv.DictReader(text.splitlines())
    )


def snap(p: Point) -> Point:
    """The nearest street corner."""
    return Point(round(p.x / BLOCK_M) * BLOCK_M, round(p.y / BLOCK_M) * BLOCK_M)


@dataclass(frozen=True, slots=True)
class Leg:
    """Straight, even movement from a to b between t0 and t1 (Unix seconds)."""

    t0: float
    t1: float
    a: Point
    b: Point
    mode: Mode
    indoor: bool = False
    place: str = ""

    @property
    def speed(self) -> float:
        return self.a.dist(self.b) / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0

    def at(self, t: float) -> Point:
        if self.t1 <= self.t0:
            return self.b
        return self.a.towards(self.b, min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0))))


@dataclass(slots=True)
class Timeline:
    """A subject's true movements: legs end to end in time."""

    legs: list[Leg] = field(default_factory=list)
    _starts: list[float] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.legs[-1].t1

    @property
    def here(self) -> Point:
        return self.legs[-1].b

    def stay(self, until: float, indoor: bool = True, place: str = "") -> None:
        self._add(Leg(self.end, until, self.here, self.here, Mode.STAY, indoor, place))

    def go(self, path: list[tuple[Point, float]], mode: Mode) -> None:
        """Travel through the points of path, each reached at the given speed."""
        for target, speed in path:
            d = self.here.dist(target)
            if d > 0:
                self._add(Leg(self.end, self.end + d / speed, self.here, target, mode))

    def _add(self, leg: Leg) -> None:
        self.legs.append(leg)
        self._starts.append(leg.t0)

    def leg_at(self, t: float) -> Leg:
        i = max(0, bisect.bisect_right(self._starts, t) - 1)
        return self.legs[i]

    def at(self, t: float) -> Point:
        return self.leg_at(t).at(t)


def start(at: float, p: Point, place: str = "home") -> Timeline:
    tl = Timeline()
    tl._add(Leg(at, at, p, p, Mode.STAY, True, place))
    return tl


def street_path(a: Point, b: Point, speed: float) -> list[tuple[Point, float]]:
    """Along the street grid: to the nearest corner, east-west, north-south, to the door."""
    ca, cb = snap(a), snap(b)
    return [(ca, speed), (Point(cb.x, ca.y), speed), (cb, speed), (b, speed)]


def route(
    a: Point, b: Point, mode: Mode, via: tuple[Point, Point] | None = None
) -> list[tuple[Point, float]]:
    """A plausible path from a to b; a car between towns takes the main road between centres."""
    if mode is Mode.CAR and via is not None:
        leave, arrive = via
        return [
            *street_path(a, leave, SPEED[Mode.CAR]),
            (arrive, ROAD_SPEED),
            *street_path(arrive, b, SPEED[Mode.CAR]),
        ]
    return street_path(a, b, SPEED[mode])
