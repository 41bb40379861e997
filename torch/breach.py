"""Breaches of zones, fix by fix: caught when real, quiet when the GPS drifts at an edge.

Pure computation in grid metres. For one subject and one zone, a `Watch` takes the
subject's fixes in time order and reports breach episodes as they open and close:

- A fix is on the wrong side only when clearly so: inside an exclusion zone by more than its
  accuracy, or outside an inclusion zone by more than its accuracy. It is on the right side
  when clearly so the other way. A fix within its accuracy of the edge is neither, and breaks
  a run of either.
- An episode opens after `open_after` consecutive wrong-side fixes (entered at the first), or
  when the straight track between two fixes at most `max_gap_s` apart spends more than
  `inside_s` on the wrong side of the zone drawn in by the accuracy of those fixes.
- A segment that crosses an exclusion zone (drawn in by the accuracy) between two fixes
  neither of which is clearly inside is a transit breach: an episode that opens and closes
  with the crossing.
- A transit is raised as soon as its segment's second fix arrives. When the fix after that
  shows the second fix to be a spike (torch.spikes: a likely GPS outlier), the transit is
  marked with that doubt, and the segment back from the spike is not checked at all.
- An episode closes after `close_after` consecutive right-side fixes (left at the first), or
  at the first fix when the zone no longer applies (outside its schedule or validity).
- A fix is checked against the zone version that was current at its time; an episode keeps
  the version that opened it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

from shapely import LineString, Point, prepared
from shapely.geometry.base import BaseGeometry

from torch import spikes
from torch.zones import Kind, ZoneVersion


class Detection(StrEnum):
    LIVE = "live"
    LATE = "late"


class EpisodeKind(StrEnum):
    EXCLUSION = "exclusion"
    INCLUSION = "inclusion"
    TRANSIT = "transit"


@dataclass(frozen=True, slots=True)
class Rules:
    open_after: int = 2
    close_after: int = 2
    inside_s: float = 120.0
    max_gap_s: float = 300.0
    default_acc_m: float = 20.0
    max_speed_ms: float = 40.0  # faster in and out of a fix, it is a spike (torch.spikes)


@dataclass(frozen=True, slots=True)
class Fix:
    t: float  # Unix seconds
    x: float
    y: float
    acc: float | None


@dataclass(slots=True)
class Episode:
    zone_id: int
    version: int
    kind: EpisodeKind
    entered: float
    left: float | None
    deepest_m: float
    fixes_inside: int
    detection: Detection
    doubt: str | None = None  # why it may not be real (a transit to a spike)


@dataclass(frozen=True, slots=True)
class Event:
    """An episode opened (closed False) or closed; `episode` is its state after the event.
    `doubted`: a transit already raised found since to rest on a spike (its `doubt`)."""

    episode: Episode
    closed: bool
    doubted: bool = False


class Shape:
    """A zone version's area, prepared for repeated tests, with its edges drawn in or out
    by an accuracy (cached by whole metres, rounded up so as to be cautious)."""

    def __init__(self, area: BaseGeometry) -> None:
        self.area = area
        self.boundary = area.boundary
        self.fast = prepared.prep(area)
        self.box = tuple(float(b) for b in area.bounds)

    def outside_box(self, x: float, y: float) -> float:
        """How far the point is outside the area's bounding box (0 inside it): a lower
        bound of its distance from the area, in arithmetic only."""
        minx, miny, maxx, maxy = self.box
        dx = max(minx - x, 0.0, x - maxx)
        dy = max(miny - y, 0.0, y - maxy)
        return math.hypot(dx, dy)

    def misses_box(self, a: Fix, b: Fix) -> bool:
        """Whether the segment a-b stays clear of the area's bounding box."""
        minx, miny, maxx, maxy = self.box
        return (
            max(a.x, b.x) < minx or min(a.x, b.x) > maxx or max(a.y, b.y) < miny
            or min(a.y, b.y) > maxy
        )  # fmt: skip

    def depth(self, x: float, y: float) -> float:
        """How far inside the area the point is; negative outside."""
        p = Point(x, y)
        d = float(self.boundary.distance(p))
        return d if self.fast.contains(p) else -d

    def drawn(self, by: float) -> BaseGeometry:
        return _drawn(self.area, math.ceil(by))


@lru_cache(maxsize=4096)
def _drawn(area: BaseGeometry, by: int) -> BaseGeometry:
    return area.buffer(by, quad_segs=8)


def shape_of(version: ZoneVersion) -> Shape:
    return _shape(version.zone_id, version.version, version.area)


@lru_cache(maxsize=65536)
def _shape(zone_id: int, version: int, area: BaseGeometry) -> Shape:
    return Shape(area)


Versions = Callable[[float], ZoneVersion | None]  # the version current at a time


@dataclass(slots=True)
class Watch:
    """One subject against one zone, fed fixes in time order."""

    rules: Rules
    detection: Detection = Detection.LIVE
    last: Fix | None = None
    before: Fix | None = None  # the fix before `last`
    transits: list[Episode] = field(default_factory=list)  # raised on the way into `last`
    wrong: list[Fix] = field(default_factory=list)  # the current run of wrong-side fixes
    right: list[Fix] = field(default_factory=list)  # the run of right-side fixes, when open
    open: Episode | None = None

    def step(self, fix: Fix, version: ZoneVersion | None) -> list[Event]:
        """Take the next fix; `version` is the zone's version current at its time."""
        when = datetime.fromtimestamp(fix.t, UTC)
        previous, before = self.last, self.before
        self.before, self.last = previous, fix
        # whether `previous` is a spike is asked only where it matters: it seldom does
        events: list[Event] = []
        if self.transits:
            raised, self.transits = self.transits, []
            events = self._doubt(raised, self._spike(before, previous, fix))
        if version is None or not version.applies(when):
            self.wrong.clear()
            self.right.clear()
            if self.open is not None:
                events.append(self._close(fix.t))
            return events
        shape = shape_of(version)
        acc = fix.acc if fix.acc is not None else self.rules.default_acc_m
        far = shape.outside_box(fix.x, fix.y)
        if far > acc and version.kind is Kind.EXCLUSION:
            into = -far  # clearly outside, whatever the exact distance: no geometry needed
        else:
            depth = shape.depth(fix.x, fix.y)
            into = depth if version.kind is Kind.EXCLUSION else -depth  # how far on the wrong side
        wrong = into > acc
        if previous is not None and self.open is None:
            was_wrong = bool(self.wrong) and self.wrong[-1] is previous
            found = self._segment(previous, fix, version, shape, was_wrong or wrong)
            if found and self._spike(before, previous, fix) is not None:
                found = []  # the way back from a spike crossed nothing
            opened = [e.episode for e in found if not e.closed]
            self.transits = [e for e in opened if e.kind is EpisodeKind.TRANSIT]
            events += found
        if wrong:
            self.right.clear()
            self.wrong.append(fix)
            if self.open is not None:
                self.open.fixes_inside += 1
                self.open.deepest_m = max(self.open.deepest_m, into)
            elif len(self.wrong) >= self.rules.open_after:
                events.append(self._open(version, self.wrong[0].t, self.wrong))
        elif into < -acc:
            self.wrong.clear()
            if self.open is not None:
                self.right.append(fix)
                if len(self.right) >= self.rules.close_after:
                    events.append(self._close(self.right[0].t))
        else:  # within its accuracy of the edge: neither
            self.wrong.clear()
            self.right.clear()
        return events

    def _spike(self, a: Fix | None, b: Fix | None, c: Fix) -> tuple[float, spikes.Speeds] | None:
        """b's time and the speeds that make it a spike between a and c, or None."""
        if a is None or b is None:
            return None
        r = self.rules
        pa, pb, pc = self._point(a), self._point(b), self._point(c)
        found = spikes.spike(pa, pb, pc, r.max_gap_s, r.max_speed_ms)
        return None if found is None else (b.t, found)

    @staticmethod
    def _doubt(raised: list[Episode], spike: tuple[float, spikes.Speeds] | None) -> list[Event]:
        """The transits raised on the way into a fix that has turned out a spike, doubted."""
        if spike is None:
            return []
        t, speeds = spike
        doubt = spikes.describe(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), speeds)
        for e in raised:
            e.doubt = doubt
        return [Event(e, closed=True, doubted=True) for e in raised]

    def _point(self, f: Fix) -> spikes.Point:
        return spikes.Point(f.t, f.x, f.y, self.rules.default_acc_m if f.acc is None else f.acc)

    def _segment(
        self, a: Fix, b: Fix, version: ZoneVersion, shape: Shape, an_end_inside: bool
    ) -> list[Event]:
        """The straight track from a to b: time on the wrong side, and transits."""
        dt = b.t - a.t
        if dt > self.rules.max_gap_s or dt <= 0 or (a.x, a.y) == (b.x, b.y):
            return []  # a gap is no track; standing still, the fixes themselves decide
        u = max(
            a.acc if a.acc is not None else self.rules.default_acc_m,
            b.acc if b.acc is not None else self.rules.default_acc_m,
        )
        if version.kind is Kind.EXCLUSION and shape.misses_box(a, b):
            return []
        line = LineString([(a.x, a.y), (b.x, b.y)])
        if version.kind is Kind.EXCLUSION:
            if not shape.fast.intersects(line):
                return []
            part = line.intersection(shape.drawn(-u))
        else:
            if shape.fast.contains(line):
                return []
            part = line.difference(shape.drawn(u))
        ends = [line.project(Point(p)) / line.length for p in _points(part)]
        if not ends:
            return []
        entered, left = a.t + dt * min(ends), a.t + dt * max(ends)
        if part.length / line.length * dt > self.rules.inside_s:
            start = self.wrong[0].t if self.wrong else entered
            return [self._open(version, start, list(self.wrong))]
        if version.kind is Kind.EXCLUSION and not an_end_inside:
            depth = max(shape.depth(x, y) for x, y in _along(part))
            transit = Episode(
                version.zone_id,
                version.version,
                EpisodeKind.TRANSIT,
                entered,
                left,
                max(depth, 0.0),
                0,
                self.detection,
            )
            return [Event(transit, closed=False), Event(transit, closed=True)]
        return []

    def _open(self, version: ZoneVersion, entered: float, fixes: list[Fix]) -> Event:
        shape = shape_of(version)
        deepest = 0.0
        for f in fixes:
            d = shape.depth(f.x, f.y)
            deepest = max(deepest, d if version.kind is Kind.EXCLUSION else -d)
        self.open = Episode(
            version.zone_id,
            version.version,
            EpisodeKind(version.kind.value),
            entered,
            None,
            deepest,
            len(fixes),
            self.detection,
        )
        self.right.clear()
        return Event(self.open, closed=False)

    def _close(self, left: float) -> Event:
        assert self.open is not None
        self.open.left = left
        done, self.open = self.open, None
        self.wrong.clear()
        self.right.clear()
        return Event(done, closed=True)


def _along(part: BaseGeometry, steps: int = 32) -> list[tuple[float, float]]:
    """Points along the lines of part, at `steps` intervals each: where to look for the
    deepest point of a crossing."""
    lines = [part] if part.geom_type == "LineString" else list(getattr(part, "geoms", []))
    out = []
    for line in lines:
        if line.geom_type == "LineString":
            for i in range(steps + 1):
                p = line.interpolate(i / steps, normalized=True)
                out.append((float(p.x), float(p.y)))
    return out or _points(part)


def _points(part: BaseGeometry) -> list[tuple[float, float]]:
    if part.geom_type in ("LineString", "Point"):
        return [(float(x), float(y)) for x, y in part.coords]
    return [(float(x), float(y)) for g in getattr(part, "geoms", []) for x, y in g.coords]
