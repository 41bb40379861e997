"""Closest approaches of many subjects at once, from their track tiles.

The crime-scene query needs, for every subject whose track covers the window,
the closest approach to the scene (torch.proximity). Reading every fix of two
thousand subjects for a day is too slow, so the tiles keep each hour's fixes
packed twice: exactly (float8) and as a sketch (float4 eastings and northings).
A window is read as

- its edge hours (those within `max_gap` of its ends, or all of it when it is
  short) exactly, with times, because the track is clipped there;
- its interior hours from the six-hour blocks' sketches, which need no times:
  every fix in them lies inside the window.

Joined in time order they give each subject's whole track in the window. The
sketch bounds each piece's distance to within a few centimetres, which picks
the few pieces that can be nearest; only those are measured exactly, from
their hours' exact tiles, with the very arithmetic `torch.proximity.assess`
uses, so both give the same answer.

Everything here is arithmetic on arrays; the reads are torch.store.proximity's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from torch.proximity import Pieces, nearest_on, piece_shapes

HOUR = 3600.0
BLOCK = 6 * HOUR
EPOCH_BLOCK = 946684800.0  # 2000-01-01T00:00:00Z: blocks start at 00, 06, 12 and 18 UTC
# Beyond this many pieces that may be nearest, a subject is assessed from the fixes.
MAX_CANDIDATES = 256


@dataclass(frozen=True, slots=True)
class Plan:
    """Which hours of a window are read exactly and which from the sketches.

    Hours are Unix times of their start. The interior is [inner_from, inner_to):
    whole hours inside the window and more than max_gap from its ends' hours;
    the edge hours are the others from `first_hour` to `last_hour` inclusive.
    """

    start: float
    end: float
    max_gap_s: float
    first_hour: float
    last_hour: float
    inner_from: float
    inner_to: float

    @property
    def has_interior(self) -> bool:
        return self.inner_from < self.inner_to

    def edge_ranges(self) -> list[tuple[float, float]]:
        """The edge hours as [from, to] ranges of hour starts, inclusive."""
        if not self.has_interior:
            return [(self.first_hour, self.last_hour)]
        return [(self.first_hour, self.inner_from - HOUR), (self.inner_to, self.last_hour)]

    def blocks(self) -> tuple[float, float]:
        """The starts of the first and last block with hours in the window, inclusive."""
        first = EPOCH_BLOCK + math.floor((self.first_hour - EPOCH_BLOCK) / BLOCK) * BLOCK
        return first, self.last_hour


def plan(start: float, end: float, max_gap_s: float) -> Plan:
    first_hour = math.floor((start - max_gap_s) / HOUR) * HOUR
    last_hour = math.floor((end + max_gap_s) / HOUR) * HOUR
    inner_from = math.ceil(start / HOUR) * HOUR
    inner_to = math.floor(end / HOUR) * HOUR
    return Plan(start, end, max_gap_s, first_hour, last_hour, inner_from, inner_to)


class Hours(NamedTuple):
    """Hour summaries from the blocks, in (subject, hour) order."""

    subject: np.ndarray  # dense subject index
    hour: np.ndarray
    n: np.ndarray
    first_t: np.ndarray
    last_t: np.ndarray
    longest_s: np.ndarray


class Edge(NamedTuple):
    """The exact fixes of the edge hours, in (subject, time) order."""

    subject: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray  # NaN where the fix had none


class Sketch(NamedTuple):
    """The interior hours' fixes, in (subject, time) order, as float4."""

    subject: np.ndarray
    x: np.ndarray
    y: np.ndarray


def hours_of(subjects: Sequence[int], packed: Sequence[bytes]) -> Hours:
    """Hour summaries from the blocks' `hours` columns (float8 big-endian: hour, n,
    first fix time, last fix time, longest interval), one block per subject index."""
    counts = np.fromiter((len(b) // 40 for b in packed), np.int64, len(packed))
    a = np.frombuffer(b"".join(packed), ">f8").reshape(-1, 5).astype(np.float64)
    subject = np.repeat(np.asarray(subjects, np.int64), counts)
    return Hours(subject, a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])


def edge_of(subjects: Sequence[int], packed: Sequence[bytes]) -> Edge:
    """Exact fixes from tiles' `track` columns (float8 big-endian: t, x, y, acc)."""
    counts = np.fromiter((len(b) // 32 for b in packed), np.int64, len(packed))
    a = np.frombuffer(b"".join(packed), ">f8").reshape(-1, 4).astype(np.float64)
    subject = np.repeat(np.asarray(subjects, np.int64), counts)
    return Edge(subject, a[:, 0], a[:, 1], a[:, 2], a[:, 3])


def sketch_of(subjects: Sequence[int], packed: Sequence[bytes]) -> Sketch:
    counts = np.fromiter((len(b) // 8 for b in packed), np.int64, len(packed))
    a = np.frombuffer(b"".join(packed), ">f4").reshape(-1, 2).astype(np.float32)
    subject = np.repeat(np.asarray(subjects, np.int64), counts)
    return Sketch(subject, a[:, 0], a[:, 1])


def whole(hours: Hours, p: Plan, count: int) -> np.ndarray:
    """Per subject index: does the track cover the window with no interval longer than
    max_gap, from a fix at or before its start to one at or after its end?

    Judged on the hours within max_gap of the window whose fixes reach it; an
    interval is counted where it lies in such an hour or joins two of them.
    """
    near = (
        (hours.hour >= p.first_hour)
        & (hours.hour <= p.last_hour)
        & (hours.last_t >= p.start - p.max_gap_s)
        & (hours.first_t <= p.end + p.max_gap_s)
    )
    h = Hours(*(a[near] for a in hours))
    ok = np.ones(count, bool)
    seen = np.zeros(count, bool)
    seen[h.subject] = True
    ok &= seen
    bad = h.longest_s > p.max_gap_s
    same = h.subject[1:] == h.subject[:-1]
    link = same & (h.first_t[1:] - h.last_t[:-1] > p.max_gap_s)
    ok[h.subject[bad]] = False
    ok[h.subject[1:][link]] = False
    first = np.full(count, np.inf)
    np.minimum.at(first, h.subject, h.first_t)
    last = np.full(count, -np.inf)
    np.maximum.at(last, h.subject, h.last_t)
    return ok & (first <= p.start) & (last >= p.end)


class Nearest(NamedTuple):
    """A subject's closest approach, exact."""

    subject: int
    distance: float
    t: float
    x: float
    y: float
    acc_a: float  # the accuracies of the fixes around it (NaN where none)
    acc_b: float


@dataclass(frozen=True, slots=True)
class Track:
    """Every fix of the whole subjects in the window, in (subject, time) order: exact
    fixes of the edge hours carry their index in `edge` (t is their time); sketch
    fixes of the interior carry -1 - their index in the sketch (t is NaN)."""

    subject: np.ndarray
    x: np.ndarray  # float4
    y: np.ndarray
    t: np.ndarray
    ref: np.ndarray


def join(edge: Edge, sketch: Sketch, p: Plan, keep: np.ndarray) -> Track:
    """The subjects in `keep`'s tracks: each one's edge fixes before the interior, the
    interior's sketch, then the edge fixes after it."""
    e = np.flatnonzero(keep[edge.subject])
    s = np.flatnonzero(keep[sketch.subject])
    es, ss = edge.subject[e], sketch.subject[s]
    after = edge.t[e] >= p.inner_to if p.has_interior else np.zeros(len(e), bool)
    at = np.where(after, np.searchsorted(ss, es, "right"), np.searchsorted(ss, es, "left"))
    return Track(
        np.insert(ss, at, es),
        np.insert(sketch.x[s], at, edge.x[e].astype(np.float32)),
        np.insert(sketch.y[s], at, edge.y[e].astype(np.float32)),
        np.insert(np.full(len(s), np.nan), at, edge.t[e]),
        np.insert(-1 - s, at, e),
    )


def _bounds(track: Track, geometry: BaseGeometry) -> tuple[np.ndarray, float]:
    """Each piece's distance to the scene's centre, in float4, and the scene's radius
    about that centre (0 for a point): a piece is between d - r and d + r away."""
    c = geometry.centroid if geometry.geom_type == "Point" else geometry.envelope.centroid
    cx, cy = float(c.x), float(c.y)
    r = float(shapely.distance(shapely.points(shapely.get_coordinates(geometry)), c).max())
    r = 0.0 if geometry.geom_type == "Point" else r
    x = track.x - np.float32(cx)
    y = track.y - np.float32(cy)
    ax, ay, dx, dy = x[:-1], y[:-1], x[1:] - x[:-1], y[1:] - y[:-1]
    l2 = dx * dx + dy * dy
    k = -(ax * dx + ay * dy) / np.where(l2 == 0, np.float32(1), l2)
    np.clip(k, 0, 1, out=k)
    px, py = ax + k * dx, ay + k * dy
    return np.sqrt(px * px + py * py), r


def candidates(track: Track, p: Plan, geometry: BaseGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The pieces (by the index of their first fix) that may be nearest the scene, and
    the subjects with too many such pieces to measure here."""
    if len(track.subject) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ta, tb = track.t[:-1], track.t[1:]
    same = track.subject[1:] == track.subject[:-1]
    valid = same & ~(tb < p.start) & ~(ta > p.end)  # NaN: an interior fix, inside
    inside = valid & ~(ta < p.start) & ~(tb > p.end)
    d, r = _bounds(track, geometry)
    # float4 positions are within 0.07 m of the exact ones; allow for it, and its arithmetic
    slack = (0.25 + 4e-6 * d).astype(np.float32)
    high = np.where(inside, d + r + slack, np.inf)
    sub = track.subject[:-1]
    starts = np.flatnonzero(np.r_[True, sub[1:] != sub[:-1]])
    limit = np.minimum.reduceat(high, starts)
    bound = np.repeat(limit, np.diff(np.r_[starts, len(sub)]))
    chosen = np.flatnonzero(valid & (d - r - slack <= bound))
    per = np.bincount(sub[chosen], minlength=int(track.subject.max()) + 1)
    crowded = np.flatnonzero(per > MAX_CANDIDATES)
    if len(crowded):
        chosen = chosen[per[sub[chosen]] <= MAX_CANDIDATES]
    return chosen, crowded


Exact = Mapping[tuple[int, float], np.ndarray]  # (subject, hour) -> float8 rows t, x, y, acc


def interior_keys(hours: Hours, p: Plan) -> tuple[np.ndarray, np.ndarray]:
    """For the sketch's fixes in order: the hour summaries they come from (their
    index in `hours`) and the count of sketch fixes before each such hour."""
    rows = np.flatnonzero((hours.hour >= p.inner_from) & (hours.hour < p.inner_to) & (hours.n > 0))
    counts = hours.n[rows].astype(np.int64)
    return rows, np.r_[0, np.cumsum(counts)]


def settle(
    track: Track,
    chosen: np.ndarray,
    edge: Edge,
    sketch_hours: tuple[np.ndarray, np.ndarray],
    hours: Hours,
    exact: Exact,
    p: Plan,
    geometry: BaseGeometry,
) -> list[Nearest]:
    """Measure the chosen pieces exactly and keep each subject's nearest: the least
    distance, and of equal ones the earliest, as `torch.proximity` does."""
    if len(chosen) == 0:
        return []
    rows, before = sketch_hours
    fixes = np.empty((2 * len(chosen), 4))
    for j, ref in enumerate(np.concatenate([track.ref[chosen], track.ref[chosen + 1]])):
        if ref >= 0:
            fixes[j] = (edge.t[ref], edge.x[ref], edge.y[ref], edge.acc[ref])
        else:
            i = -1 - int(ref)
            k = int(np.searchsorted(before, i, "right")) - 1
            row = rows[k]
            tile = exact[(int(hours.subject[row]), float(hours.hour[row]))]
            fixes[j] = tile[i - before[k]]
    a, b = fixes[: len(chosen)], fixes[len(chosen) :]
    t0, t1 = np.maximum(a[:, 0], p.start), np.minimum(b[:, 0], p.end)
    pieces = Pieces(a[:, 0], a[:, 1], a[:, 2], b[:, 0], b[:, 1], b[:, 2], t0, t1)
    shapes = piece_shapes(pieces)
    d = shapely.distance(shapes, geometry)
    sub = track.subject[chosen]
    order = np.lexsort((a[:, 0], d, sub))
    firsts = order[np.r_[True, sub[order][1:] != sub[order][:-1]]]
    x, y, t = nearest_on(shapes[firsts], t0[firsts], t1[firsts], geometry)
    return [
        Nearest(
            int(sub[i]),
            float(d[i]),
            float(t[n]),
            float(x[n]),
            float(y[n]),
            float(a[i, 3]),
            float(b[i, 3]),
        )
        for n, i in enumerate(firsts)
    ]


def sketch_hours_needed(
    track: Track, chosen: np.ndarray, sketch_hours: tuple[np.ndarray, np.ndarray], hours: Hours
) -> set[tuple[int, float]]:
    """The (subject, hour) tiles whose exact fixes the chosen pieces need."""
    rows, before = sketch_hours
    refs = np.concatenate([track.ref[chosen], track.ref[chosen + 1]])
    inner = -1 - refs[refs < 0]
    k = rows[np.searchsorted(before, inner, "right") - 1]
    return {(int(s), float(h)) for s, h in zip(hours.subject[k], hours.hour[k], strict=True)}
