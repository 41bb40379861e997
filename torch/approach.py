"""Closest approaches of many subjects at once, from their track tiles.

The crime-scene query needs, for every subject whose track covers the window,
the closest approach to the scene (torch.proximity). Reading every fix of two
thousand subjects for a day is too slow, so the tiles keep each hour's fixes
packed twice: exactly (float8) and as a sketch (float4 offsets from the hour's
first fix, exact for positions on torch.grid's lattice). A window is read as

- its edge hours (those within `max_gap` of its ends, the hour not yet over,
  or all of it when it is short) from the hourly tiles, exactly, with times,
  because the track is clipped there: of each, the five-minute spans within
  `max_gap` of the window (`Plan.reach`; all of a tile without marks);
- its interior hours from the six-hour blocks' sketches, which need no times:
  every fix in them lies inside the window.

Together they give each subject's whole track in the window: the pieces within
the sketch, within the edges, and the joints between them. (A window with no
interior hour has its whole track in the edges, exact: around a point, every piece
of it is measured in one compiled loop, `nearest_in_edges`.) Each piece's distance
is bounded to within a few centimetres (torch.bounds: compiled loops, the sketch's
on two threads), which picks the few pieces that can be nearest; those are measured
exactly in float8, and the nearest one's closest point and time found with
`torch.proximity`'s own code, so that both give the same answer.

Everything here is arithmetic on arrays; the reads are torch.store.proximity's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from torch import bounds
from torch.proximity import Pieces, nearest_points, piece_distances

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
    live_hour: float  # the hour still running at the time of the query: not tiled yet

    @property
    def has_interior(self) -> bool:
        return self.inner_from < self.inner_to

    def edge_ranges(self) -> list[tuple[float, float]]:
        """The edge hours as [from, to] ranges of hour starts, inclusive."""
        if not self.has_interior:
            return [(self.first_hour, self.last_hour)]
        return [(self.first_hour, self.inner_from - HOUR), (self.inner_to, self.last_hour)]

    def margins(self, settled_s: float) -> tuple[float | None, float | None]:
        """The edge hours wholly before and after the window, tiled, where the window's
        end there lies at least `settled_s` inside the hour next to them (None where
        not). A track's fixes in a margin count only where it has no fix in that next
        hour between the margin and the window: most tracks have one."""
        before, after = self.first_hour, self.last_hour
        return (
            before
            if self.start - (before + HOUR) >= settled_s and before < self.live_hour
            else None,
            after if after - self.end >= settled_s and after < self.live_hour else None,
        )

    def reach(self) -> tuple[float, float]:
        """From and to when the edges' fixes are read: max_gap either side of the window,
        which holds every piece reaching into it of a track with no gap."""
        return self.start - self.max_gap_s, self.end + self.max_gap_s

    def blocks(self) -> tuple[float, float]:
        """The starts of the first and last block with hours in the window, inclusive."""
        first = EPOCH_BLOCK + math.floor((self.first_hour - EPOCH_BLOCK) / BLOCK) * BLOCK
        return first, self.last_hour


def plan(start: float, end: float, max_gap_s: float, now: float) -> Plan:
    """The hour not yet over at `now`, and any after it, are edge hours, read from their
    fixes: they are tiled only once they are over (torch.store.tiles)."""
    first_hour = math.floor((start - max_gap_s) / HOUR) * HOUR
    last_hour = math.floor((end + max_gap_s) / HOUR) * HOUR
    inner_from = math.ceil(start / HOUR) * HOUR
    inner_to = math.floor(min(end, now) / HOUR) * HOUR
    live_hour = math.floor(now / HOUR) * HOUR if math.isfinite(now) else math.inf
    return Plan(start, end, max_gap_s, first_hour, last_hour, inner_from, inner_to, live_hour)


class Spans(NamedTuple):
    """When each hour of track begins and ends, in (subject, hour) order: what `whole`
    judges coverage by."""

    subject: np.ndarray  # dense subject index
    hour: np.ndarray
    first_t: np.ndarray
    last_t: np.ndarray
    longest_s: np.ndarray


class Hours(NamedTuple):
    """Hour summaries from the blocks, in (subject, hour) order."""

    subject: np.ndarray  # dense subject index
    hour: np.ndarray
    n: np.ndarray
    first_t: np.ndarray
    last_t: np.ndarray
    longest_s: np.ndarray
    first_x: np.ndarray  # the hour's first fix: the origin of its sketch
    first_y: np.ndarray
    exact: np.ndarray  # 1 where the sketch holds every position exactly, else 0

    def spans(self) -> Spans:
        return Spans(self.subject, self.hour, self.first_t, self.last_t, self.longest_s)


class Edge(NamedTuple):
    """The exact fixes of the edge hours that were read (`Plan.reach`), in (subject, time)
    order."""

    subject: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray  # NaN where the fix had none


class Sketch(NamedTuple):
    """The interior hours' fixes, in (subject, time) order: float4 offsets from the
    first fix of their hour (whose subject `Inner` tells), each a contiguous array."""

    dx: np.ndarray
    dy: np.ndarray


HOUR_FIELDS = len(Hours._fields) - 1


def hours_of(subjects: np.ndarray, packed: Sequence[bytes]) -> Hours:
    """Hour summaries from the blocks' `hours` columns (float8 big-endian: hour, n, first
    and last fix time, longest interval, first fix's easting and northing, exactness), one
    block a subject index."""
    subject, a = _unpack(subjects, packed, ">f8", HOUR_FIELDS)
    return Hours(subject, *a.T)


def spans_of(hours: Hours, p: Plan, edge: Spans) -> Spans:
    """The interior hours' spans from the blocks and the edge hours' from their tiles,
    in (subject, hour) order. (The blocks of hours not yet over lag behind.)"""
    inner = (hours.hour >= p.inner_from) & (hours.hour < p.inner_to)
    both = [np.concatenate([a[inner], b]) for a, b in zip(hours.spans(), edge, strict=True)]
    order = np.lexsort((both[1], both[0]))
    return Spans(*(a[order] for a in both))


def edge_of(subjects: np.ndarray, packed: Sequence[bytes]) -> Edge:
    """Exact fixes from tiles' `track` columns (float8 big-endian: t, x, y, acc)."""
    subject, a = _unpack(subjects, packed, ">f8", 4)
    return Edge(subject, *a.T)


def sketch_of(packed: Sequence[bytes]) -> Sketch:
    """Sketch fixes from blocks' `sketch` columns (float4 big-endian: dx, dy)."""
    a = np.frombuffer(b"".join(packed), ">f4").reshape(-1, 2)
    return Sketch(a[:, 0].astype(np.float32), a[:, 1].astype(np.float32))


def fix_rows(packed: bytes) -> np.ndarray:
    """Exact fixes packed as tiles keep them (float8 big-endian t, x, y, acc), as rows."""
    return np.frombuffer(packed, ">f8").reshape(-1, 4).astype(np.float64)


def _unpack(
    subjects: np.ndarray, packed: Sequence[bytes], dtype: str, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Records of `width` numbers of `dtype`, from one packed column per subject index: the
    subject index of each record, and the records as native rows."""
    size = np.dtype(dtype).itemsize * width
    counts = np.fromiter(map(len, packed), np.int64, len(packed)) // size
    a = np.frombuffer(b"".join(packed), dtype).reshape(-1, width)
    return np.repeat(subjects.astype(np.int64), counts), a.astype(dtype.lstrip("><"))


def _starts(sorted_values: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins, in a sorted array."""
    found: np.ndarray = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return found


def whole(hours: Spans, p: Plan, count: int) -> np.ndarray:
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
    subject, first_t, last_t = hours.subject[near], hours.first_t[near], hours.last_t[near]
    ok = np.zeros(count, bool)
    ok[subject] = True
    ok[subject[hours.longest_s[near] > p.max_gap_s]] = False
    link = (subject[1:] == subject[:-1]) & (first_t[1:] - last_t[:-1] > p.max_gap_s)
    ok[subject[1:][link]] = False
    first = np.full(count, np.inf)
    np.minimum.at(first, subject, first_t)
    last = np.full(count, -np.inf)
    np.maximum.at(last, subject, last_t)
    return ok & (first <= p.start) & (last >= p.end)


class Inner(NamedTuple):
    """Where the sketch's fixes come from: the rows of `hours` of the interior hours with
    fixes, in the sketch's order, and how many sketch fixes come before each."""

    rows: np.ndarray
    before: np.ndarray


def inner_of(hours: Hours, p: Plan) -> Inner:
    rows = np.flatnonzero((hours.hour >= p.inner_from) & (hours.hour < p.inner_to) & (hours.n > 0))
    return Inner(rows, np.r_[0, np.cumsum(hours.n[rows].astype(np.int64))])


class Nearest(NamedTuple):
    """Subjects' closest approaches, exact: arrays, one element a subject."""

    subject: np.ndarray  # subject index
    distance: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc_a: np.ndarray  # the accuracies of the fixes around it (NaN where none)
    acc_b: np.ndarray

    def without(self, subjects: np.ndarray) -> Nearest:
        """These closest approaches but those of `subjects`."""
        keep = ~np.isin(self.subject, subjects)
        return Nearest(*(a[keep] for a in self))


NO_NEAREST = Nearest(*(np.zeros(0, dtype) for dtype in (np.int64, *[float] * 6)))


def centre(geometry: BaseGeometry) -> tuple[float, float, float]:
    """A centre for the scene and its radius about it (0 for a point): a piece d from the
    centre is between d - r and d + r from the scene."""
    if geometry.geom_type == "Point":
        return float(geometry.x), float(geometry.y), 0.0
    c = geometry.envelope.centroid
    r = float(shapely.distance(shapely.points(shapely.get_coordinates(geometry)), c).max())
    return float(c.x), float(c.y), r


class Pairs(NamedTuple):
    """Pieces of track, from fix a to fix b, as offsets from the scene's centre. A fix is
    named by a reference: its index in `Edge` (>= 0), or -1 - its index in `Sketch`. `order`
    ranks each subject's pieces in time."""

    subject: np.ndarray
    xa: np.ndarray
    ya: np.ndarray
    xb: np.ndarray
    yb: np.ndarray
    ta: np.ndarray
    tb: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    order: np.ndarray
    valid: np.ndarray  # a piece of one subject's track that reaches into the window

    def named(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The references of pieces i's ends, and their rank in time."""
        return self.ra[i], self.rb[i], self.order[i]


class SketchPieces(NamedTuple):
    """The pieces within the interior's sketch, between consecutive fixes of one subject:
    piece i joins sketch fixes i and i + 1, both inside the window (their times are not
    known here). Row k of the sketch holds fixes before[k] to before[k + 1] - 1, of
    subject[k], as offsets from (ox[k], oy[k]), the hour's first fix as an offset from the
    scene's centre."""

    ox: np.ndarray
    oy: np.ndarray
    before: np.ndarray  # the sketch fixes before each row, and in all
    subject: np.ndarray
    dx: np.ndarray  # float4 offsets
    dy: np.ndarray
    keep: np.ndarray  # by subject index

    def named(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return -1 - i, -2 - i, INNER + i

    @property
    def counts(self) -> np.ndarray:
        """How many fixes each row holds."""
        return np.diff(self.before)

    def row_of(self, i: np.ndarray) -> np.ndarray:
        """The rows of sketch fixes i."""
        found: np.ndarray = np.searchsorted(self.before, i, "right") - 1
        return found


class EdgePieces(NamedTuple):
    """The pieces within the edge hours, between consecutive exact fixes of one subject on
    one side of the interior: piece i joins fixes i and i + 1 of `Edge` (torch.bounds'
    edge_bounds tells which are pieces), as offsets from the scene's centre (cx, cy)."""

    edge: Edge
    after: np.ndarray  # fixes after the interior (the tail), else before it (the head)
    keep: np.ndarray  # by subject index
    cx: float
    cy: float

    def named(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return i, i + 1, np.where(self.after[i], TAIL, HEAD) + i


# order ranks: each subject's head edge, then into the sketch, the sketch, out of it, the tail
HEAD, INTO, INNER, OUT, TAIL = (k * 1e12 for k in range(5))


def pairs(
    edge: Edge,
    sketch: Sketch,
    hours: Hours,
    inner: Inner,
    p: Plan,
    keep: np.ndarray,
    cx: float,
    cy: float,
) -> tuple[SketchPieces, EdgePieces, Pairs]:
    """The pieces of the tracks of the subjects in `keep`: within the interior's sketch,
    within the edge hours before and after it, and the joints between them."""
    rows = inner.rows
    in_sketch = SketchPieces(
        hours.first_x[rows] - cx, hours.first_y[rows] - cy, inner.before,
        hours.subject[rows], sketch.dx, sketch.dy, keep,
    )  # fmt: skip
    after = edge.t >= p.inner_to if p.has_interior else np.zeros(len(edge.t), bool)
    in_edge = EdgePieces(edge, after, keep, cx, cy)
    return in_sketch, in_edge, _joints(in_sketch, in_edge, p)


def _joints(sk: SketchPieces, ed: EdgePieces, p: Plan) -> Pairs:
    """Per subject, the pieces from the last edge fix before the sketch to its first, from
    its last to the first edge fix after it, or, with no sketch, from one edge to the other."""
    es, after, keep = ed.edge.subject, ed.after, ed.keep
    n = len(keep)
    nothing = np.full(n, -1)
    s_first, s_last = nothing.copy(), nothing.copy()
    if len(sk.subject):
        starts = _starts(sk.subject)
        s_first[sk.subject[starts]] = sk.before[starts]
        s_last[sk.subject[starts]] = sk.before[np.r_[starts[1:], len(sk.subject)]] - 1
    head_last, tail_first = nothing.copy(), nothing.copy()
    head = np.flatnonzero(~after)
    head_last[es[head]] = head
    tail = np.flatnonzero(after)[::-1]
    tail_first[es[tail]] = tail
    subjects = np.arange(n)
    has_s = s_first >= 0
    a_refs = [head_last, -1 - s_last, head_last]  # edge refs, sketch refs (-1 - i)
    b_refs = [-1 - s_first, tail_first, tail_first]
    ok = [has_s & (head_last >= 0), has_s & (tail_first >= 0),
          ~has_s & (head_last >= 0) & (tail_first >= 0)]  # fmt: skip
    ranks = [INTO, OUT, INTO]
    sub = np.concatenate([subjects[m] for m in ok])
    ra = np.concatenate([r[m] for r, m in zip(a_refs, ok, strict=True)])
    rb = np.concatenate([r[m] for r, m in zip(b_refs, ok, strict=True)])
    order = np.concatenate([np.full(m.sum(), k) for k, m in zip(ranks, ok, strict=True)])

    ta, tb = _at(ra, ed, None, sk), _at(rb, ed, None, sk)
    xa, ya = _at(ra, ed, 0, sk), _at(ra, ed, 1, sk)
    xb, yb = _at(rb, ed, 0, sk), _at(rb, ed, 1, sk)
    valid = keep[sub] & ~(tb < p.start) & ~(ta > p.end)
    return Pairs(sub, xa, ya, xb, yb, ta, tb, ra, rb, order, valid)


def _at(refs: np.ndarray, ed: EdgePieces, axis: int | None, sk: SketchPieces) -> np.ndarray:
    """The values of the fixes named by refs: their x (axis 0) or y (1) offset from the
    scene's centre, or their time (None; NaN for a sketch fix). Only these few edge fixes
    are offset, not every one."""
    out = np.empty(len(refs))
    mine = refs >= 0
    e = refs[mine]
    if axis is None:
        out[mine] = ed.edge.t[e]
    else:
        out[mine] = ed.edge.x[e] - ed.cx if axis == 0 else ed.edge.y[e] - ed.cy
    i = -1 - refs[~mine]
    if axis is None:
        out[~mine] = np.nan
    else:
        k = sk.row_of(i)
        origin, offset = (sk.ox, sk.dx) if axis == 0 else (sk.oy, sk.dy)
        out[~mine] = origin[k] + offset[i]
    return out


class Chosen(NamedTuple):
    """The pieces that may be nearest the scene."""

    subject: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    order: np.ndarray


def candidates(
    groups: tuple[SketchPieces, EdgePieces, Pairs], count: int, p: Plan, r: float
) -> tuple[Chosen, np.ndarray]:
    """The pieces that may be nearest the scene, and the subjects with too many such
    pieces to measure here: a piece may be the nearest when its least possible distance
    is within the greatest possible distance of the subject's nearest piece inside the
    window (torch.bounds)."""
    limit = np.full(count, np.inf)
    sk, ed, joints = groups
    d, least = _sketch_bounds(sk, r, limit)
    e = ed.edge
    d_edge = bounds.edge_bounds(
        e.subject, e.t, e.x, e.y, ed.after, ed.keep, ed.cx, ed.cy, p.start, p.end, r, limit
    )
    inside = joints.valid & ~(joints.ta < p.start) & ~(joints.tb > p.end)
    d_joints = bounds.piece_bounds(
        joints.xa, joints.ya, joints.xb, joints.yb, joints.valid, inside, joints.subject, r, limit
    )
    i = bounds.sketch_chosen(sk.counts, sk.subject, d, least, r, limit)
    j = bounds.piece_chosen(e.subject[:-1], d_edge, r, limit)
    k = bounds.piece_chosen(joints.subject, d_joints, r, limit)
    picked = [
        Chosen(sk.subject[sk.row_of(i)], *sk.named(i)),
        Chosen(e.subject[j], *ed.named(j)),
        Chosen(joints.subject[k], *joints.named(k)),
    ]
    chosen = Chosen(*(np.concatenate(c) for c in zip(*picked, strict=True)))
    per = np.bincount(chosen.subject, minlength=count)
    crowded = np.flatnonzero(per > MAX_CANDIDATES)
    if len(crowded):
        keep = per[chosen.subject] <= MAX_CANDIDATES
        chosen = Chosen(*(a[keep] for a in chosen))
    return chosen, crowded


# A second thread for the sketch's bounds: the compiled loops let go of the GIL, and the
# answer has the machine's second core to itself while it computes.
_HELPER = ThreadPoolExecutor(1, thread_name_prefix="torch-bounds")
SPLIT_ROWS = 2000  # fewer rows than this are not worth a second thread


def _sketch_bounds(sk: SketchPieces, r: float, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bounds.sketch_bounds, half the rows on each of two threads: split where a subject's
    rows begin, so that each writes its own subjects' limits."""
    counts, rows = sk.counts, len(sk.subject)
    d, least = np.empty(len(sk.dx), np.float32), np.empty(rows)

    def run(a: int, b: int, k0: int, k1: int) -> None:
        bounds.sketch_bounds(
            sk.ox[a:b], sk.oy[a:b], counts[a:b], sk.subject[a:b], sk.keep,
            sk.dx[k0:k1], sk.dy[k0:k1], r, limit, d[k0:k1], least[a:b],
        )  # fmt: skip

    mid = int(np.searchsorted(sk.subject, sk.subject[rows // 2])) if rows >= SPLIT_ROWS else 0
    if mid == 0:
        run(0, rows, 0, len(sk.dx))
        return d, least
    k = int(sk.before[mid])
    other = _HELPER.submit(run, mid, rows, k, len(sk.dx))
    run(0, mid, 0, k)
    other.result()
    return d, least


class Wanted(NamedTuple):
    """Sketch fixes whose stored values are needed: (subject index, hour, index in hour)."""

    subject: np.ndarray
    hour: np.ndarray
    place: np.ndarray


@dataclass(slots=True)
class Ends:
    """The fixes at either end of the chosen pieces: rows 0..n-1 the first ends, n..2n-1
    the second. Sketch fixes have no time or accuracy (NaN) until read; those of hours
    whose sketch is not exact have no position either (`known` False)."""

    fixes: np.ndarray  # float8 rows t, x, y, acc
    known: np.ndarray
    sketch: np.ndarray  # whether the end is a sketch fix
    wanted: Wanted  # every sketch end, in order


def ends(chosen: Chosen, edge: Edge, sketch: Sketch, hours: Hours, inner: Inner) -> Ends:
    refs = np.concatenate([chosen.ra, chosen.rb])
    fixes = np.full((len(refs), 4), np.nan)
    mine = refs >= 0
    e = refs[mine]
    fixes[mine] = np.column_stack([edge.t[e], edge.x[e], edge.y[e], edge.acc[e]])
    i = -1 - refs[~mine]
    k = np.searchsorted(inner.before, i, "right") - 1
    rows = inner.rows[k]
    exact = hours.exact[rows] == 1
    xs = np.where(exact, hours.first_x[rows] + sketch.dx[i].astype(np.float64), np.nan)
    ys = np.where(exact, hours.first_y[rows] + sketch.dy[i].astype(np.float64), np.nan)
    fixes[~mine, 1], fixes[~mine, 2] = xs, ys
    known = mine.copy()
    known[~mine] = exact
    wanted = Wanted(hours.subject[rows], hours.hour[rows], i - inner.before[k])
    return Ends(fixes, known, ~mine, wanted)


def unread(e: Ends, p: Plan) -> np.ndarray:
    """The sketch ends (indices into e.wanted) to read before measuring: those without a
    position, and those whose piece's other end is outside the window (the piece is
    clipped there, which takes both times)."""
    n = len(e.known) // 2
    t = e.fixes[:, 0]
    need = ~e.known
    need[n:] |= e.sketch[n:] & (t[:n] < p.start)
    need[:n] |= e.sketch[:n] & (t[n:] > p.end)
    return np.flatnonzero(need[e.sketch])


def untimed(e: Ends, best: np.ndarray) -> np.ndarray:
    """The sketch ends (indices into e.wanted) of the pieces `best` still without a time
    and an accuracy, which their closest approach needs."""
    n = len(e.known) // 2
    rows = np.concatenate([best, n + best])
    rows = rows[e.sketch[rows] & np.isnan(e.fixes[rows, 0])]
    found: np.ndarray = np.searchsorted(np.flatnonzero(e.sketch), rows)
    return found


def fill(e: Ends, which: np.ndarray, stored: np.ndarray) -> None:
    """Put the stored fixes (rows t, x, y, acc) of the sketch ends `which` (indices into
    e.wanted) in place."""
    at = np.flatnonzero(e.sketch)[which]
    e.fixes[at] = stored
    e.known[at] = True


def _clipped(a: np.ndarray, b: np.ndarray, p: Plan) -> Pieces:
    """Pieces between fixes a and b, clipped to the window; a sketch fix's time is not
    needed (it lies inside the window): such a piece is taken whole, as the method's
    arithmetic takes a piece whose ends are both inside."""
    inner = np.isnan(a[:, 0]) | np.isnan(b[:, 0])
    ta = np.where(inner, 0.0, a[:, 0])
    tb = np.where(inner, 1.0, b[:, 0])
    return Pieces(
        ta,
        a[:, 1],
        a[:, 2],
        tb,
        b[:, 1],
        b[:, 2],
        np.where(inner, ta, np.maximum(ta, p.start)),
        np.where(inner, tb, np.minimum(tb, p.end)),
    )


def pick(chosen: Chosen, e: Ends, p: Plan, geometry: BaseGeometry) -> np.ndarray:
    """Each subject's nearest chosen piece (its index in `chosen`): the least distance
    and, of equal ones, the earliest."""
    n = len(chosen.subject)
    pieces = _clipped(e.fixes[:n], e.fixes[n:], p)
    d = piece_distances(pieces, geometry)
    sub = chosen.subject
    order = np.lexsort((chosen.order, d, sub))
    firsts: np.ndarray = order[_starts(sub[order])]
    return firsts


def nearest_in_edges(edge: Edge, keep: np.ndarray, p: Plan, x: float, y: float) -> Nearest:
    """The closest approach to the point (x, y) of each subject in `keep`, where the window
    has no interior, so that the edge's fixes hold the whole track in it: every piece
    measured with the method's arithmetic (torch.bounds.closest_pieces, one compiled loop;
    a one-hour window's 130,000 pieces took less than bounding and choosing them)."""
    subjects = np.flatnonzero(keep)
    first = np.searchsorted(edge.subject, subjects, "left")
    stop = np.searchsorted(edge.subject, subjects, "right")
    a, b, d, nx, ny, at = bounds.closest_pieces(
        first, stop, edge.t, edge.x, edge.y, p.start, p.end, p.max_gap_s, x, y
    )
    found = a >= 0
    a, b = a[found], b[found]
    return Nearest(
        subjects[found].astype(np.int64), d[found], at[found], nx[found], ny[found],
        edge.acc[a], edge.acc[b],
    )  # fmt: skip


def nearest(chosen: Chosen, e: Ends, best: np.ndarray, p: Plan, geometry: BaseGeometry) -> Nearest:
    """The closest approach on each subject's nearest piece (`best`, indices into
    `chosen`), whose ends are all read, with the method's own arithmetic."""
    n = len(chosen.subject)
    a, b = e.fixes[best], e.fixes[n + best]
    t0, t1 = np.maximum(a[:, 0], p.start), np.minimum(b[:, 0], p.end)
    d, x, y, t = nearest_points(
        Pieces(a[:, 0], a[:, 1], a[:, 2], b[:, 0], b[:, 1], b[:, 2], t0, t1), geometry
    )
    return Nearest(chosen.subject[best].astype(np.int64), d, t, x, y, a[:, 3], b[:, 3])
