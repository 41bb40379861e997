"""Associations: which pairs of subjects were within a distance of each other, and when.

Pure computation on tracks in British National Grid metres, by the proximity method's
rules (torch.proximity): between two fixes at most `max_gap_s` apart a subject moves in a
straight line at constant speed; in a longer interval (a gap) the subject is nowhere.

Two subjects are **together** at a moment when both have a position then and the two are
at most `distance_m` apart. Between consecutive fix times of the pair both move linearly, so
their separation is the square root of a quadratic in time: the together-intervals are
solved exactly, not sampled. Intervals less than `bridge_s` apart (GPS scatter across the
distance) make one **episode**; an episode counts when it lasts at least `min_s`. With an
area, only the moments when the pair's midpoint is inside it count.

Screening first: each subject's track is boxed per `bin_s` of the window, and only the
pairs whose boxes, widened by the distance, meet in some bin are solved, over those bins.
A pair together at some moment meets in the bin of that moment, so nothing is missed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg
import numpy as np
import shapely
import shapely.prepared
from shapely.geometry.base import BaseGeometry

from torch.approach import fix_rows
from torch.proximity import TrackFix
from torch.store import proximity as store

BIN_S = 300.0
KEY = 4.0e6  # a subject's times (seconds from the window's start) fit in [-KEY/2, KEY/2)


@dataclass(frozen=True, slots=True)
class Track:
    subject_id: int
    t: np.ndarray  # Unix seconds, increasing
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray  # NaN where the fix had none

    @classmethod
    def of(cls, subject_id: int, fixes: Sequence[TrackFix]) -> Track:
        """A subject's track from their fixes as the store reads them, in time order."""
        return cls(
            subject_id,
            np.array([f.t for f in fixes], np.float64),
            np.array([f.x for f in fixes], np.float64),
            np.array([f.y for f in fixes], np.float64),
            np.array([np.nan if f.acc is None else f.acc for f in fixes], np.float64),
        )


@dataclass(frozen=True, slots=True)
class Rules:
    distance_m: float
    min_s: float
    max_gap_s: float = 300.0
    bridge_s: float = 120.0
    default_acc_m: float = 20.0


@dataclass(frozen=True, slots=True)
class Episode:
    a: int  # subject ids, a < b
    b: int
    start: float
    end: float
    closest_m: float
    closest_at: float
    where: tuple[float, float]  # the pair's midpoint at the closest moment
    accuracy_m: float  # both subjects' accuracy at that moment, added


class Fleet:
    """Every track in one set of arrays, ordered by subject index and time. `key` orders
    them all: subject index * KEY + seconds from the window's start, so that one sorted
    search finds any subject's fix at any time."""

    def __init__(self, tracks: Sequence[Track], start: float) -> None:
        self.ids = np.array([tr.subject_id for tr in tracks], np.int64)
        counts = np.array([len(tr.t) for tr in tracks], np.int64)
        self.first = np.concatenate([[0], np.cumsum(counts)])
        self.who = np.repeat(np.arange(len(tracks)), counts)
        self.t = _joined(tracks, "t") - start
        self.x = _joined(tracks, "x")
        self.y = _joined(tracks, "y")
        self.acc = _joined(tracks, "acc")
        self.key = self.who * KEY + self.t
        self.start = start

    def segment(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index of the last fix of subject s at or before t (-1: none)."""
        i = np.searchsorted(self.key, s * KEY + t, side="right") - 1
        found: np.ndarray = np.where((i >= 0) & (self.who[np.maximum(i, 0)] == s), i, -1)
        return found

    def at(
        self, s: np.ndarray, t: np.ndarray, max_gap_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions of subjects s at times t, and whether each has one (on a fix, or
        between two at most max_gap_s apart)."""
        i = self.segment(s, t)
        i0 = np.maximum(i, 0)
        i1 = np.minimum(i0 + 1, len(self.t) - 1)
        same = (i >= 0) & (self.who[i1] == s) & (i1 > i0)
        on = same & (self.t[i1] - self.t[i0] <= max_gap_s)
        exact = (i >= 0) & (self.t[i0] == t)
        span = np.where(on, self.t[i1] - self.t[i0], 1.0)
        u = np.where(on, (t - self.t[i0]) / span, 0.0)
        x = self.x[i0] + u * (self.x[i1] - self.x[i0])
        y = self.y[i0] + u * (self.y[i1] - self.y[i0])
        return x, y, on | exact


def _joined(tracks: Sequence[Track], name: str) -> np.ndarray:
    if not tracks:
        return np.zeros(0)
    return np.concatenate([getattr(tr, name) for tr in tracks]).astype(np.float64)


def episodes(
    tracks: Sequence[Track],
    start: float,
    end: float,
    rules: Rules,
    area: BaseGeometry | None = None,
    bin_s: float = BIN_S,
) -> list[Episode]:
    """Every episode of every pair, by pair and time."""
    if end - start >= KEY / 2 - 2 * rules.max_gap_s:
        raise ValueError("window too long for association")
    fleet = Fleet([tr for tr in tracks if len(tr.t)], start)
    nbins = max(1, int(np.ceil((end - start) / bin_s)))
    edges = np.minimum(bin_s * np.arange(nbins + 1), end - start)
    boxes = _boxes(fleet, edges, rules.max_gap_s)
    a, b, k = _candidates(boxes, rules.distance_m)
    pieces = _solve(fleet, edges, a, b, k, rules)
    if area is not None:
        pieces = _within(pieces, area, fleet)
    return _episodes(pieces, fleet, rules)


def _boxes(fleet: Fleet, edges: np.ndarray, max_gap_s: float) -> np.ndarray:
    """(subjects, bins, 4): per subject and bin, the box (x0, y0, x1, y1) of every position
    the track has in the bin (its fixes, and its positions at the bin's edges); NaN: none."""
    n, nbins = len(fleet.ids), len(edges) - 1
    out = np.full((n, nbins, 4), np.nan)
    if not n:
        return out
    # the edges: a position at edge e counts in bins e - 1 and e
    s = np.repeat(np.arange(n), nbins + 1)
    e = np.tile(np.arange(nbins + 1), n)
    ex, ey, ok = fleet.at(s, edges[e], max_gap_s)
    lo_x, lo_y = np.full(n * nbins, np.inf), np.full(n * nbins, np.inf)
    hi_x, hi_y = np.full(n * nbins, -np.inf), np.full(n * nbins, -np.inf)
    for side in (e - 1, e):  # the bin before the edge, the bin after
        keep = ok & (side >= 0) & (side < nbins)
        g = s[keep] * nbins + side[keep]
        np.minimum.at(lo_x, g, ex[keep])
        np.minimum.at(lo_y, g, ey[keep])
        np.maximum.at(hi_x, g, ex[keep])
        np.maximum.at(hi_y, g, ey[keep])
    # the fixes inside the window: sorted by subject and time, so by global bin too
    inside = (fleet.t >= 0) & (fleet.t <= edges[-1])
    k = np.searchsorted(edges, fleet.t[inside], side="right") - 1
    g = fleet.who[inside] * nbins + np.minimum(k, nbins - 1)
    if len(g):
        run = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        at = g[run]
        fx, fy = fleet.x[inside], fleet.y[inside]
        lo_x[at] = np.fmin(lo_x[at], np.minimum.reduceat(fx, run))
        lo_y[at] = np.fmin(lo_y[at], np.minimum.reduceat(fy, run))
        hi_x[at] = np.fmax(hi_x[at], np.maximum.reduceat(fx, run))
        hi_y[at] = np.fmax(hi_y[at], np.maximum.reduceat(fy, run))
    box = np.stack([lo_x, lo_y, hi_x, hi_y], axis=1).reshape(n, nbins, 4)
    box[~np.isfinite(box[:, :, 0])] = np.nan
    return box


def _candidates(boxes: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, bin) with a < b (subject indices) whose boxes in the bin are within d: by
    grid cells of at least 2d, into which every box widened by d/2 is entered, then the
    boxes' own distance."""
    n, nbins, _ = boxes.shape
    s, k = np.nonzero(np.isfinite(boxes[:, :, 0]))
    bx = boxes[s, k]
    cell = max(2 * d, 500.0)
    c0 = np.floor((bx[:, :2] - d / 2) / cell).astype(np.int64)
    c1 = np.floor((bx[:, 2:] + d / 2) / cell).astype(np.int64)
    nx, ny = c1[:, 0] - c0[:, 0] + 1, c1[:, 1] - c0[:, 1] + 1
    many = nx * ny
    entry = np.repeat(np.arange(len(s)), many)
    j = _ranks(many)
    cx = c0[entry, 0] + j % nx[entry]
    cy = c0[entry, 1] + j // nx[entry]
    key = (k[entry] * (1 << 21) + (cx & 0x1FFFFF)) * (1 << 21) + (cy & 0x1FFFFF)
    order = np.argsort(key, kind="stable")
    key, entry = key[order], entry[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    size = np.diff(np.r_[first, len(key)])
    # every entry with each later entry of its cell
    pos = np.arange(len(key))
    later = np.repeat(first + size, size) - pos - 1
    p = np.repeat(pos, later)
    q = p + 1 + _ranks(later)
    ea, eb = entry[p], entry[q]
    sa, sb = s[ea], s[eb]
    keep = sa != sb
    ea, eb = ea[keep], eb[keep]
    lo, hi = np.minimum(s[ea], s[eb]), np.maximum(s[ea], s[eb])
    code = np.unique((lo * n + hi) * nbins + k[ea])
    a, rest = np.divmod(code, n * nbins)
    b, kk = np.divmod(rest, nbins)
    ba, bb = boxes[a, kk], boxes[b, kk]
    gx = np.maximum(0.0, np.maximum(bb[:, 0] - ba[:, 2], ba[:, 0] - bb[:, 2]))
    gy = np.maximum(0.0, np.maximum(bb[:, 1] - ba[:, 3], ba[:, 1] - bb[:, 3]))
    near = gx * gx + gy * gy <= d * d
    return a[near], b[near], kk[near]


def _ranks(count: np.ndarray) -> np.ndarray:
    """0, 1, ..., count[0] - 1, 0, 1, ..., count[1] - 1, ...: each item's rank in its run."""
    ranks: np.ndarray = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return ranks


class Pieces(NamedTuple):
    """Intervals when a pair is together, each within one interval of both tracks."""

    a: np.ndarray  # subject indices
    b: np.ndarray
    start: np.ndarray  # seconds from the window's start
    end: np.ndarray
    closest_m: np.ndarray
    closest_at: np.ndarray
    mx: np.ndarray  # the pair's midpoint at the closest moment
    my: np.ndarray
    # the pair's midpoint at the piece's ends (for the area)
    m0x: np.ndarray
    m0y: np.ndarray
    m1x: np.ndarray
    m1y: np.ndarray


def _solve(
    fleet: Fleet, edges: np.ndarray, a: np.ndarray, b: np.ndarray, k: np.ndarray, rules: Rules
) -> Pieces:
    """The exact together-intervals of each candidate (a, b, bin)."""
    if not len(k):
        return Pieces(*(np.zeros(0) for _ in Pieces._fields))
    # breakpoints of each candidate: the bin's edges and both subjects' fixes in it
    lo, hi = edges[k], edges[k + 1]
    parts = [(np.arange(len(k)), lo), (np.arange(len(k)), hi)]
    for s in (a, b):
        i0 = fleet.segment(s, lo) + 1  # the first fix after the bin starts
        i1 = fleet.segment(s, hi) + 1  # the first fix after the bin ends
        i0 = np.where(i0 <= 0, fleet.first[s], i0)
        i1 = np.where(i1 <= 0, fleet.first[s], i1)
        count = np.maximum(i1 - i0, 0)
        c = np.repeat(np.arange(len(k)), count)
        idx = np.repeat(i0, count) + _ranks(count)
        tt = fleet.t[idx]
        keep = (tt > lo[c]) & (tt < hi[c])
        parts.append((c[keep], tt[keep]))
    c = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    order = np.lexsort((t, c))
    c, t = c[order], t[order]
    fresh = np.r_[True, (c[1:] != c[:-1]) | (t[1:] != t[:-1])]
    c, t = c[fresh], t[fresh]
    step = np.flatnonzero(c[1:] == c[:-1])  # consecutive breakpoints of one candidate
    ci, t0, t1 = c[step], t[step], t[step + 1]
    sa, sb = a[ci], b[ci]
    ok = _within_segment(fleet, sa, t0, t1, rules.max_gap_s)
    ok &= _within_segment(fleet, sb, t0, t1, rules.max_gap_s)
    ci, t0, t1, sa, sb = ci[ok], t0[ok], t1[ok], sa[ok], sb[ok]
    inf = np.inf
    ax0, ay0, _ = fleet.at(sa, t0, inf)
    ax1, ay1, _ = fleet.at(sa, t1, inf)
    bx0, by0, _ = fleet.at(sb, t0, inf)
    bx1, by1, _ = fleet.at(sb, t1, inf)
    dx0, dy0 = ax0 - bx0, ay0 - by0
    vx, vy = (ax1 - bx1) - dx0, (ay1 - by1) - dy0
    qa = vx * vx + vy * vy
    qb = 2 * (dx0 * vx + dy0 * vy)
    qc = dx0 * dx0 + dy0 * dy0 - rules.distance_m**2
    moving = qa > 1e-12
    disc = qb * qb - 4 * qa * qc
    root = np.sqrt(np.maximum(disc, 0.0))
    safe = np.where(moving, qa, 1.0)
    u0 = np.where(moving, (-qb - root) / (2 * safe), 0.0)
    u1 = np.where(moving, (-qb + root) / (2 * safe), 1.0)
    near = np.where(moving, disc >= 0, qc <= 0) & (u1 >= 0.0) & (u0 <= 1.0)
    u0, u1 = np.clip(u0, 0.0, 1.0), np.clip(u1, 0.0, 1.0)
    ub = np.clip(np.where(moving, -qb / (2 * safe), 0.0), u0, u1)
    w = near
    dur = (t1 - t0)[w]
    ub_, u0_, u1_ = ub[w], u0[w], u1[w]
    mid0x, mid0y = (ax0 + bx0)[w] / 2, (ay0 + by0)[w] / 2
    mid1x, mid1y = (ax1 + bx1)[w] / 2, (ay1 + by1)[w] / 2
    return Pieces(
        sa[w],
        sb[w],
        t0[w] + u0_ * dur,
        t0[w] + u1_ * dur,
        np.hypot(dx0[w] + ub_ * vx[w], dy0[w] + ub_ * vy[w]),
        t0[w] + ub_ * dur,
        mid0x + ub_ * (mid1x - mid0x),
        mid0y + ub_ * (mid1y - mid0y),
        mid0x + u0_ * (mid1x - mid0x),
        mid0y + u0_ * (mid1y - mid0y),
        mid0x + u1_ * (mid1x - mid0x),
        mid0y + u1_ * (mid1y - mid0y),
    )


def _within_segment(
    fleet: Fleet, s: np.ndarray, t0: np.ndarray, t1: np.ndarray, max_gap_s: float
) -> np.ndarray:
    """Whether [t0, t1] (between consecutive breakpoints) lies within one interval of the
    track between two fixes at most max_gap_s apart."""
    i = fleet.segment(s, t0)
    i0 = np.maximum(i, 0)
    i1 = np.minimum(i0 + 1, len(fleet.t) - 1)
    ok: np.ndarray = (
        (i >= 0) & (i1 > i0) & (fleet.who[i1] == s) & (fleet.t[i1] >= t1)
        & (fleet.t[i1] - fleet.t[i0] <= max_gap_s)
    )  # fmt: skip
    return ok


def _within(pieces: Pieces, area: BaseGeometry, fleet: Fleet) -> Pieces:
    """The parts of each piece when the pair's midpoint is inside the area (exactly: in a
    piece both move linearly, so their midpoint does too)."""
    keep: dict[str, list[float]] = defaultdict(list)
    prepared = shapely.prepared.prep(area)
    for k in range(len(pieces.a)):
        m0 = (pieces.m0x[k], pieces.m0y[k])
        m1 = (pieces.m1x[k], pieces.m1y[k])
        s, e = pieces.start[k], pieces.end[k]
        spans: list[tuple[float, float]] = []
        if m0 == m1 or e <= s:
            if prepared.covers(shapely.Point(m0)):
                spans.append((s, e))
        else:
            path = shapely.LineString([m0, m1])
            for part in shapely.get_parts(shapely.intersection(path, area)):
                if part.is_empty:
                    continue
                fr = sorted(path.project(shapely.Point(c), normalized=True) for c in part.coords)
                spans.append((s + fr[0] * (e - s), s + fr[-1] * (e - s)))
        for s1, e1 in spans:
            best = min(max(pieces.closest_at[k], s1), e1)  # the separation's minimum, or an end
            frac = 0.0 if e <= s else (best - s) / (e - s)
            keep["a"].append(pieces.a[k])
            keep["b"].append(pieces.b[k])
            keep["start"].append(s1)
            keep["end"].append(e1)
            keep["closest_at"].append(best)
            keep["mx"].append(m0[0] + frac * (m1[0] - m0[0]))
            keep["my"].append(m0[1] + frac * (m1[1] - m0[1]))
    if not keep:
        return Pieces(*(np.zeros(0) for _ in Pieces._fields))
    a = np.array(keep["a"], np.int64)
    b = np.array(keep["b"], np.int64)
    at = np.array(keep["closest_at"])
    ax, ay, _ = fleet.at(a, at, np.inf)
    bx, by, _ = fleet.at(b, at, np.inf)
    nothing = np.zeros(len(a))
    return Pieces(
        a, b, np.array(keep["start"]), np.array(keep["end"]), np.hypot(ax - bx, ay - by), at,
        np.array(keep["mx"]), np.array(keep["my"]), nothing, nothing, nothing, nothing,
    )  # fmt: skip


def _episodes(pieces: Pieces, fleet: Fleet, rules: Rules) -> list[Episode]:
    """Pieces of a pair less than bridge_s apart joined; those lasting min_s or more."""
    order = np.lexsort((pieces.start, pieces.b, pieces.a))
    out: list[Episode] = []
    group: list[int] = []

    def close() -> None:
        if not group:
            return
        g = np.array(group)
        start, end = pieces.start[g[0]], pieces.end[g].max()
        if end - start < rules.min_s:
            return
        best = g[int(np.argmin(pieces.closest_m[g]))]
        a, b = int(pieces.a[best]), int(pieces.b[best])
        at = float(pieces.closest_at[best])
        acc = _acc(fleet, a, at, rules.default_acc_m) + _acc(fleet, b, at, rules.default_acc_m)
        out.append(
            Episode(
                int(fleet.ids[a]),
                int(fleet.ids[b]),
                float(start + fleet.start),
                float(end + fleet.start),
                float(pieces.closest_m[best]),
                at + fleet.start,
                (float(pieces.mx[best]), float(pieces.my[best])),
                acc,
            )
        )

    end = -np.inf
    for k in order:
        same = group and pieces.a[k] == pieces.a[group[-1]] and pieces.b[k] == pieces.b[group[-1]]
        if not same or pieces.start[k] - end > rules.bridge_s:
            close()
            group, end = [], -np.inf
        group.append(int(k))
        end = max(end, pieces.end[k])
    close()
    return out


def _acc(fleet: Fleet, s: int, at: float, default: float) -> float:
    """The larger accuracy of the two fixes of subject s around `at` (seconds from the
    window's start; the default for a fix without one)."""
    i = int(fleet.segment(np.array([s]), np.array([at]))[0])
    around = [j for j in (i, i + 1) if 0 <= j < len(fleet.t) and fleet.who[j] == s]
    values = [default if np.isnan(fleet.acc[j]) else float(fleet.acc[j]) for j in around]
    return max(values, default=default)


async def load(
    conn: asyncpg.Connection, start: datetime, end: datetime, max_gap_s: float
) -> tuple[list[Track], dict[int, str]]:
    """Every subject's track over the window (and max_gap_s either side), with their
    references: from the track tiles where they are up to date, else from the fixes; in one
    snapshot."""
    a, b = start.timestamp() - max_gap_s, end.timestamp() + max_gap_s
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # the hour still running has no tiles: its wearers' tracks come from the fixes
        who = await store.wearers(conn, start, end, max_gap_s, (a, a), math.inf)
        tiled = [w.subject_id for w in who if w.tiled]
        packed = await store.tile_tracks(conn, tiled, a, b)
        rest = await store.tracks(
            conn, start, end, max_gap_s, only=[w.subject_id for w in who if not w.tiled]
        ) if len(tiled) < len(who) else []  # fmt: skip
    tracks = []
    for subject_id, raw in packed.items():
        rows = fix_rows(raw)
        rows = rows[(rows[:, 0] >= a) & (rows[:, 0] <= b)]
        tracks.append(Track(subject_id, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]))
    tracks += [Track.of(st.subject_id, st.fixes) for st in rest]
    return tracks, {w.subject_id: w.ref for w in who}
