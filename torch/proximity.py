"""Who was near a scene at a time: the verdict for one subject, and why.

Pure computation on a subject's fixes in British National Grid metres. The
method (see README, "The proximity method"):

- Between consecutive fixes at most `max_gap_s` apart the subject moves in a
  straight line at constant speed; a longer interval is a gap.
- `closest_m` is the least distance between that track, clipped to the window,
  and the scene (0 inside a polygon): found on the segments, not only at fixes.
- With u the accuracy at the closest approach (the larger `acc` of the two
  fixes around it, `default_acc_m` when absent): present when closest + u <=
  radius; possible when closest - u <= radius, or when in a gap (or a part of
  the window bounded by a fix on one side only) the subject could have reached
  the scene and the next fix at no more than `max_speed_ms`; excluded when
  neither; no_data when there is no fix from `max_gap_s` before the window to
  `max_gap_s` after it.
- The fixes given for present and possible: the two around the closest
  approach, the ends of each gap through which the scene was reachable, and of
  the fixes in the window within the radius of the scene (with their accuracy)
  the 200 nearest to it.
- A caveat, not a change of verdict: where a present or possible verdict's
  closest approach rests on a spike (torch.spikes: a fix the track around it
  does not bear out, as GPS outliers look), a reason says so, and the fixes on
  either side of it are given too. An officer should not rest a case on one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import shapely
from shapely import Point
from shapely.geometry.base import BaseGeometry

from torch import bounds, spikes
from torch.settings import Settings


class Verdict(StrEnum):
    PRESENT = "present"
    POSSIBLE = "possible"
    EXCLUDED = "excluded"
    NO_DATA = "no_data"

    @property
    def places_at_scene(self) -> bool:
        """Present or possible: the verdicts that put a subject at the scene, or may. Only
        these are findings, and only these give fixes; an alibi gives no whereabouts."""
        return self is Verdict.PRESENT or self is Verdict.POSSIBLE


@dataclass(frozen=True, slots=True)
class Params:
    max_gap_s: float = 300.0
    max_speed_ms: float = 40.0
    default_acc_m: float = 20.0


def params_of(settings: Settings) -> Params:
    return Params(
        settings.proximity_max_gap_s,
        settings.proximity_max_speed_ms,
        settings.proximity_default_acc_m,
    )


@dataclass(frozen=True, slots=True)
class TrackFix:
    t: float  # Unix seconds
    x: float  # easting, m
    y: float  # northing, m
    acc: float | None
    lat: float  # as reported, for the evidence
    lon: float


@dataclass(frozen=True, slots=True)
class Scene:
    geometry: BaseGeometry  # grid metres: a point or an area
    radius_m: float
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Gap:
    start: float
    end: float
    reachable: bool
    before: TrackFix | None  # the fix that bounds it on each side, if any
    after: TrackFix | None


@dataclass(slots=True)
class Assessment:
    verdict: Verdict
    closest_m: float | None = None
    closest_at: float | None = None
    closest_xy: tuple[float, float] | None = None
    accuracy_m: float | None = None
    coverage: float = 0.0
    gaps: list[Gap] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    evidence: list[TrackFix] = field(default_factory=list)
    # those of the reasons that put the verdict in doubt: a closest approach resting on a
    # likely GPS outlier (`spike_caveats`)
    caveats: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Approach:
    distance: float
    t: float
    xy: tuple[float, float]
    acc: float
    around: tuple[TrackFix, ...]
    index: tuple[int, ...] = ()  # of the fixes around it, in the track


@dataclass(frozen=True, slots=True)
class Track:
    """A subject's fixes as arrays, in time order with distinct times: what `assess` works
    on. The accuracy, latitude and longitude are NaN where unknown (latitude and longitude
    are filled in later for the evidence where a track was read without them)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    @staticmethod
    def of(fixes: Sequence[TrackFix]) -> Track:
        n = len(fixes)
        nan = math.nan
        columns = (
            [f.t for f in fixes], [f.x for f in fixes], [f.y for f in fixes],
            [nan if f.acc is None else f.acc for f in fixes], [f.lat for f in fixes],
            [f.lon for f in fixes],
        )  # fmt: skip
        return Track(*(np.array(c, float).reshape(n) for c in columns))

    def fix(self, i: int) -> TrackFix:
        acc = float(self.acc[i])
        return TrackFix(
            float(self.t[i]), float(self.x[i]), float(self.y[i]), None if math.isnan(acc) else acc,
            float(self.lat[i]), float(self.lon[i]),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.t)


def assess(fixes: Sequence[TrackFix] | Track, scene: Scene, p: Params) -> Assessment:
    """The verdict for one subject whose fixes (any order) are given."""
    track = _relevant(fixes if isinstance(fixes, Track) else Track.of(fixes), scene, p)
    if not len(track):
        return Assessment(
            Verdict.NO_DATA,
            gaps=[Gap(scene.start, scene.end, True, None, None)],
            reasons=[
                f"no fix from {p.max_gap_s:.0f} s before the window to {p.max_gap_s:.0f} s after it"
            ],
        )
    closest = _closest(track, scene, p)
    gaps = _gaps(track, scene, p)
    covered = scene.end - scene.start - sum(g.end - g.start for g in gaps)
    a = Assessment(Verdict.EXCLUDED, gaps=gaps)
    a.coverage = max(0.0, covered) / (scene.end - scene.start)
    if closest is not None:
        a.closest_m, a.closest_at = closest.distance, closest.t
        a.closest_xy, a.accuracy_m = closest.xy, closest.acc
    a.verdict = _decide(closest, gaps, scene)
    a.reasons = _reasons(a, closest, scene, p)
    if a.verdict.places_at_scene:
        a.evidence, near = _evidence(track, closest, gaps, scene)
        if near > EVIDENCE_NEAR_MAX:
            a.reasons.append(
                f"{near:,} fixes in the window lay within {scene.radius_m:.0f} m of the scene"
                f" (with their accuracy); the {EVIDENCE_NEAR_MAX} nearest to it are given"
            )
        if closest is not None:
            _caveat_spikes(a, track, closest, p)
    return a


def _caveat_spikes(a: Assessment, track: Track, closest: Approach, p: Params) -> None:
    """Say where the closest approach rests on a spike, and give the fixes on either side
    of it."""
    chosen = {f.t: f for f in a.evidence}
    for i, words in spike_caveats(track.t, track.x, track.y, track.acc, closest.index, p):
        a.reasons.append(words)
        a.caveats.append(words)
        chosen |= {float(track.t[j]): track.fix(j) for j in (i - 1, i + 1)}
    a.evidence = [chosen[t] for t in sorted(chosen)]


def spike_caveats(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    acc: np.ndarray,
    index: Iterable[int],
    p: Params,
) -> list[tuple[int, str]]:
    """Of the fixes `index` around a closest approach, on a track of fixes in time order
    (accuracy NaN where unknown), those that are spikes (torch.spikes), each with the
    sentence that says the closest approach rests on it."""

    def point(i: int) -> spikes.Point:
        u = float(acc[i])
        return spikes.Point(
            float(t[i]), float(x[i]), float(y[i]), p.default_acc_m if math.isnan(u) else u
        )

    found = []
    for i in dict.fromkeys(index):  # once each, in order
        if i < 1 or i + 1 >= len(t):
            continue
        before, fix, after = point(i - 1), point(i), point(i + 1)
        speeds = spikes.spike(before, fix, after, p.max_gap_s, p.max_speed_ms)
        if speeds is not None:
            words = spikes.describe(_clock(fix.t), speeds)
            found.append((i, f"{words}, and the closest approach rests on it"))
    return found


def _relevant(track: Track, scene: Scene, p: Params) -> Track:
    """The fixes from max_gap before the window to max_gap after it, in time order; of
    fixes at the same time, the first given."""
    lo, hi = scene.start - p.max_gap_s, scene.end + p.max_gap_s
    i = np.flatnonzero((track.t >= lo) & (track.t <= hi))
    i = i[np.argsort(track.t[i], kind="stable")]
    t = track.t[i]
    i = i[np.r_[True, t[1:] > t[:-1]]] if len(i) else i
    return Track(*(c[i] for c in (track.t, track.x, track.y, track.acc, track.lat, track.lon)))


def _acc(f: TrackFix, p: Params) -> float:
    return f.acc if f.acc is not None else p.default_acc_m


def accuracy_between(acc_a: np.ndarray, acc_b: np.ndarray, p: Params) -> np.ndarray:
    """u at points between pairs of fixes whose accuracies come packed (NaN where a fix had
    none): the larger, each `default_acc_m` where missing, as `_acc` gives them; element by
    element, of arrays or of single values."""
    found: np.ndarray = np.fmax(
        np.where(np.isnan(acc_a), p.default_acc_m, acc_a),
        np.where(np.isnan(acc_b), p.default_acc_m, acc_b),
    )
    return found


def _at(a: TrackFix, b: TrackFix, t: float) -> tuple[float, float]:
    """Interpolated position at t between fixes a and b."""
    if b.t == a.t:
        return a.x, a.y
    k = (t - a.t) / (b.t - a.t)
    return a.x + (b.x - a.x) * k, a.y + (b.y - a.y) * k


def _pieces(t: np.ndarray, scene: Scene, p: Params) -> tuple[np.ndarray, ...]:
    """The parts of a track (its fix times t, in order) inside the window, as arrays of
    the index of the fix before, of the fix after, t0 and t1, in time order.

    A lone fix in the window, with no neighbour within max_gap, is a piece of
    zero length, so that it still counts for the closest approach.
    """
    i = np.flatnonzero(np.diff(t) <= p.max_gap_s)
    t0 = np.maximum(t[i], scene.start)
    t1 = np.minimum(t[i + 1], scene.end)
    kept = t0 <= t1
    i, t0, t1 = i[kept], t0[kept], t1[kept]
    joined = np.zeros(len(t), bool)
    joined[i] = joined[i + 1] = True
    lone = np.flatnonzero(~joined & (t >= scene.start) & (t <= scene.end))
    return (
        np.concatenate([i, lone]),
        np.concatenate([i + 1, lone]),
        np.concatenate([t0, t[lone]]),
        np.concatenate([t1, t[lone]]),
    )


class Pieces(NamedTuple):
    """Parts of tracks, as arrays: from the fix (ta, xa, ya) to the fix (tb, xb, yb),
    clipped to the times [t0, t1]."""

    ta: np.ndarray
    xa: np.ndarray
    ya: np.ndarray
    tb: np.ndarray
    xb: np.ndarray
    yb: np.ndarray
    t0: np.ndarray
    t1: np.ndarray


def _clipped_ends(pc: Pieces) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each piece's ends (x0, y0, x1, y1) at t0 and t1, with the same arithmetic as `_at`."""
    span = np.where(pc.tb == pc.ta, 1.0, pc.tb - pc.ta)
    k0 = np.where(pc.tb == pc.ta, 0.0, (pc.t0 - pc.ta) / span)
    k1 = np.where(pc.tb == pc.ta, 0.0, (pc.t1 - pc.ta) / span)
    x0, y0 = pc.xa + (pc.xb - pc.xa) * k0, pc.ya + (pc.yb - pc.ya) * k0
    x1, y1 = pc.xa + (pc.xb - pc.xa) * k1, pc.ya + (pc.yb - pc.ya) * k1
    return x0, y0, x1, y1


def piece_shapes(pc: Pieces) -> np.ndarray:
    """Each piece as a geometry: a line between its clipped ends, or a point where it
    stands still."""
    x0, y0, x1, y1 = _clipped_ends(pc)
    still = (x0 == x1) & (y0 == y1)
    shapes = np.empty(len(pc.ta), dtype=object)
    shapes[still] = shapely.points(x0[still], y0[still])
    moving = ~still
    ends = np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1)
    shapes[moving] = shapely.linestrings(ends[moving])
    return shapes


def nearest_on(
    shapes: np.ndarray, t0: np.ndarray, t1: np.ndarray, geometry: BaseGeometry
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The point of each piece nearest the scene (x, y) and the time there (an area;
    `nearest_point` for a point)."""
    near = shapely.get_point(shapely.shortest_line(shapes, geometry), 0)
    length = shapely.length(shapes)
    k = np.zeros(len(shapes))
    moving = length > 0
    k[moving] = shapely.line_locate_point(shapes[moving], near[moving]) / length[moving]
    return shapely.get_x(near), shapely.get_y(near), t0 + (t1 - t0) * k


class Projection(NamedTuple):
    """Each piece's point nearest the scene: its distance, where it is and when."""

    distance: np.ndarray
    x: np.ndarray
    y: np.ndarray
    t: np.ndarray


def nearest_point(pc: Pieces, x: float, y: float) -> Projection:
    """Each piece's point nearest the point (x, y), by projecting the point onto the piece
    between its clipped ends (the place along it clamped to the ends): the same point GEOS
    gives, to about 1e-10 m, without building a geometry for every piece, which cost a
    crime-scene answer several milliseconds. The time there is as far through the piece's
    time as the point is along it. Compiled (torch.bounds.projections), with the arithmetic
    `closest_in` uses on a whole track."""
    ta, xa, ya, tb, xb, yb, t0, t1 = (np.ascontiguousarray(a, np.float64) for a in pc)
    return Projection(*bounds.projections(ta, xa, ya, tb, xb, yb, t0, t1, x, y))


class Closest(NamedTuple):
    """The closest approach on a track given as arrays: the distance, the time and the
    point there, and the indices of the two fixes around it."""

    distance: float
    t: float
    xy: tuple[float, float]
    a: int
    b: int


def closest_in(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, scene: Scene, p: Params
) -> Closest | None:
    """The first piece, in time order, at the least distance from the scene, on a track
    of fixes in time order with distinct times: around a point by the compiled loop
    (torch.bounds.closest_piece), else piece by piece (`closest_by_pieces`)."""
    g = scene.geometry
    if g.geom_type != "Point":
        return closest_by_pieces(t, x, y, scene, p)
    ct, cx, cy = (np.ascontiguousarray(v, np.float64) for v in (t, x, y))
    a, b, d, nx, ny, at = bounds.closest_piece(
        ct, cx, cy, scene.start, scene.end, p.max_gap_s, g.x, g.y
    )
    return None if a < 0 else Closest(d, at, (nx, ny), a, b)


def closest_by_pieces(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, scene: Scene, p: Params
) -> Closest | None:
    """`closest_in` on arrays of the track's pieces (`_pieces`), for any scene."""
    ia, ib, t0, t1 = _pieces(t, scene, p)
    if len(ia) == 0:
        return None
    pc = Pieces(t[ia], x[ia], y[ia], t[ib], x[ib], y[ib], t0, t1)
    k = int(np.argmin(piece_distances(pc, scene.geometry)))  # the first of the least
    n = nearest_points(Pieces(*(a[k : k + 1] for a in pc)), scene.geometry)
    xy = (float(n.x[0]), float(n.y[0]))
    return Closest(float(n.distance[0]), float(n.t[0]), xy, int(ia[k]), int(ib[k]))


def _closest(track: Track, scene: Scene, p: Params) -> Approach | None:
    c = closest_in(track.t, track.x, track.y, scene, p)
    if c is None:
        return None
    a, b = track.fix(c.a), track.fix(c.b)
    return Approach(c.distance, c.t, c.xy, max(_acc(a, p), _acc(b, p)), (a, b), (c.a, c.b))


def judge_whole(c: Closest, u: float, scene: Scene, p: Params) -> Assessment:
    """The assessment of a track that covers the whole window with no gap, from its
    closest approach and the accuracy there (no evidence fixes)."""
    closest = Approach(c.distance, c.t, c.xy, u, ())
    a = Assessment(_decide(closest, [], scene), c.distance, c.t, c.xy, u, coverage=1.0)
    a.reasons = _reasons(a, closest, scene, p)
    return a


def fix_distances(x: np.ndarray, y: np.ndarray, geometry: BaseGeometry) -> np.ndarray:
    """The distance of each position (x, y) from the scene: in numpy from a point, by GEOS
    from an area (a geometry for each fix cost a day's answer 9 ms)."""
    if geometry.geom_type == "Point":
        d: np.ndarray = np.hypot(x - geometry.x, y - geometry.y)
        return d
    return np.asarray(shapely.distance(shapely.points(x, y), geometry), float)


def piece_distances(pc: Pieces, geometry: BaseGeometry) -> np.ndarray:
    """The distance of each piece from the scene: by projection from a point
    (`nearest_point`), by GEOS from an area."""
    if geometry.geom_type == "Point":
        return nearest_point(pc, geometry.x, geometry.y).distance
    return np.asarray(shapely.distance(piece_shapes(pc), geometry), float)


def nearest_points(pc: Pieces, geometry: BaseGeometry) -> Projection:
    """Each piece's point nearest the scene, its distance and the time there: by projection
    from a point (`nearest_point`), by GEOS from an area (`nearest_on`)."""
    if geometry.geom_type == "Point":
        return nearest_point(pc, geometry.x, geometry.y)
    shapes = piece_shapes(pc)
    x, y, t = nearest_on(shapes, pc.t0, pc.t1, geometry)
    return Projection(np.asarray(shapely.distance(shapes, geometry), float), x, y, t)


def stretches(t: Sequence[float], max_gap_s: float) -> list[tuple[int, int]]:
    """The runs of consecutive fixes at most max_gap_s apart, as [start, stop) index
    ranges in time order: what the method takes as track. Between two runs is a gap, over
    which nothing is known of the route."""
    cuts = [0, *(i + 1 for i in range(len(t) - 1) if t[i + 1] - t[i] > max_gap_s), len(t)]
    return [(a, b) for a, b in pairwise(cuts) if a < b]


def _gaps(track: Track, scene: Scene, p: Params) -> list[Gap]:
    """The stretches of the window with no track, and whether the scene was reachable in each."""
    gaps = []
    t = track.t
    if t[0] > scene.start:
        gaps.append(_gap(scene, p, None, track.fix(0), scene.start, float(t[0])))
    for i in np.flatnonzero(np.diff(t) > p.max_gap_s).tolist():
        t0, t1 = max(float(t[i]), scene.start), min(float(t[i + 1]), scene.end)
        if t0 < t1:
            gaps.append(_gap(scene, p, track.fix(i), track.fix(i + 1), t0, t1))
    if t[-1] < scene.end:
        gaps.append(_gap(scene, p, track.fix(len(t) - 1), None, float(t[-1]), scene.end))
    return gaps


def _gap(
    scene: Scene, p: Params, before: TrackFix | None, after: TrackFix | None, t0: float, t1: float
) -> Gap:
    """Could the subject have been within the radius at some moment of [t0, t1]?

    Leaving `before` and reaching `after` at no more than max_speed, with each
    fix's accuracy in the subject's favour.
    """
    earliest, latest = t0, t1
    if before is not None:
        earliest = max(earliest, before.t + _reach(before, scene, p) / p.max_speed_ms)
    if after is not None:
        latest = min(latest, after.t - _reach(after, scene, p) / p.max_speed_ms)
    return Gap(t0, t1, earliest <= latest, before, after)


def _reach(f: TrackFix, scene: Scene, p: Params) -> float:
    """How far the fix is from anywhere within the radius of the scene, at best."""
    d = float(Point(f.x, f.y).distance(scene.geometry))
    return max(0.0, d - scene.radius_m - _acc(f, p))


def _decide(closest: Approach | None, gaps: list[Gap], scene: Scene) -> Verdict:
    if closest is not None and closest.distance + closest.acc <= scene.radius_m:
        return Verdict.PRESENT
    if closest is not None and closest.distance - closest.acc <= scene.radius_m:
        return Verdict.POSSIBLE
    if any(g.reachable for g in gaps):
        return Verdict.POSSIBLE
    return Verdict.EXCLUDED


def _split(t: float) -> tuple[int, int]:
    """Whole seconds and microseconds of Unix time t, rounded as datetime rounds them."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        return int(whole) + 1, us - 1_000_000
    if us < 0:
        return int(whole) - 1, us + 1_000_000
    return int(whole), us


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_split(t)[0]))


def iso(t: float) -> str:
    """RFC 3339 in UTC: whole seconds where the time is whole, else milliseconds
    (truncated, as datetime.isoformat gives them). A thousand times a query: kept cheap."""
    whole, us = _split(t)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{text}Z" if t == int(t) else f"{text}.{us // 1000:03d}Z"


def _micros(t: np.ndarray) -> np.ndarray:
    """Unix times t as whole microseconds, rounded as `_split` rounds them."""
    whole = np.trunc(t)
    us: np.ndarray = whole.astype(np.int64) * 1_000_000 + np.round((t - whole) * 1e6).astype(
        np.int64
    )
    return us


_SECONDS = [f":{k:02d}" for k in range(60)]
_ENDS = ["Z", *(f".{k:03d}Z" for k in range(1000))]  # a whole second, then k milliseconds


def isos(t: np.ndarray) -> list[str]:
    """`iso` of many times at once: each minute's text written once (an answer's times
    fall in a few dozen minutes), the seconds and milliseconds from tables."""
    t = np.asarray(t, float)
    us = _micros(t)
    seconds = us // 1_000_000
    minutes, which = np.unique(seconds // 60, return_inverse=True)
    heads = np.datetime_as_string(minutes.astype("datetime64[m]"), unit="m").tolist()
    ends = np.where(t == np.trunc(t), 0, us // 1000 % 1000 + 1).tolist()
    return [
        heads[m] + _SECONDS[k] + _ENDS[e]
        for m, k, e in zip(which.tolist(), (seconds % 60).tolist(), ends, strict=True)
    ]


def clocks(written: list[str]) -> list[str]:
    """`_clock` of many times at once, from what `isos` wrote of them: its whole seconds."""
    return [f"{w[:19]}Z" for w in written]


ACCOUNTED = "every moment of the window is accounted for away from the scene"


# What the closest approach, d metres with accuracy u at a clock time, says for a radius r:
# d, u and r in whole metres.
WITHIN = "closest approach {d} m at {clock}: within {r} m even allowing for an accuracy of {u} m"
ONLY_WITHIN = "closest approach {d} m at {clock}: within {r} m only within the accuracy of {u} m"
BEYOND = "closest approach {d} m at {clock}: more than {r} m even allowing for an accuracy of {u} m"


def _approach_reason(d: float, u: float, clock: str, r: float) -> str:
    words = WITHIN if d + u <= r else ONLY_WITHIN if d - u <= r else BEYOND
    return words.format(d=f"{d:.0f}", u=f"{u:.0f}", clock=clock, r=f"{r:.0f}")


def rounded(v: np.ndarray) -> list[float]:
    """round(x, 1) of many values at once: the nearest tenth, found in numpy where the
    tenths of x are clear of a tie (by far more than the product's rounding, for values
    up to 1e8), else by round itself."""
    tenths = v * 10.0
    out = np.rint(tenths) / 10.0
    with np.errstate(invalid="ignore"):  # inf and NaN: taken by round below
        near_tie = np.abs(tenths - np.floor(tenths) - 0.5) < 1e-6
    found: list[float] = out.tolist()
    for i in np.flatnonzero(near_tie | ~(np.abs(v) <= 1e8)).tolist():
        found[i] = round(float(v[i]), 1)
    return found


def _metres(v: np.ndarray) -> list[int]:
    """f"{v:.0f}" of many values at once, as integers: rounded half to even, exactly."""
    found: list[int] = np.rint(v).astype(np.int64).tolist()
    return found


def _reasons(a: Assessment, closest: Approach | None, scene: Scene, p: Params) -> list[str]:
    out = []
    if closest is not None:
        out.append(
            _approach_reason(closest.distance, closest.acc, _clock(closest.t), scene.radius_m)
        )
    for g in a.gaps:
        span = f"{(g.end - g.start) / 60:.0f}-minute gap from {_clock(g.start)} to {_clock(g.end)}"
        if g.reachable:
            out.append(
                f"a {span} in which the scene could have been reached at {p.max_speed_ms:.0f} m/s"
            )
        else:
            out.append(f"a {span} too short to reach the scene at {p.max_speed_ms:.0f} m/s")
    if a.verdict is Verdict.EXCLUDED:
        out.append(ACCOUNTED)
    return out


# The fixes near the scene that an answer gives of one subject, at most: the nearest to
# it. An officer's query is about one scene, not a way to read a trail; a wide scene over
# days would otherwise give a subject's every fix (ten thousand a week at one a minute).
EVIDENCE_NEAR_MAX = 200


def _evidence(
    track: Track, closest: Approach | None, gaps: list[Gap], scene: Scene
) -> tuple[list[TrackFix], int]:
    """The fixes that show the verdict: around the closest approach, near the scene (the
    EVIDENCE_NEAR_MAX nearest, of equals the earliest), and at the ends of each gap in
    which the scene was reachable; with how many fixes in the window were near it."""
    chosen: dict[float, TrackFix] = {}
    if closest is not None:
        chosen |= {f.t: f for f in closest.around}
    inside = np.flatnonzero((track.t >= scene.start) & (track.t <= scene.end))
    count = 0
    if len(inside):
        d = fix_distances(track.x[inside], track.y[inside], scene.geometry)
        near = np.flatnonzero(d <= scene.radius_m + np.nan_to_num(track.acc[inside], nan=0.0))
        count = len(near)
        nearest = near[np.argsort(d[near], kind="stable")[:EVIDENCE_NEAR_MAX]]
        for i in inside[np.sort(nearest)].tolist():
            chosen.setdefault(float(track.t[i]), track.fix(i))
    for g in gaps:
        if g.reachable:
            chosen |= {f.t: f for f in (g.before, g.after) if f is not None}
    return [chosen[t] for t in sorted(chosen)], count


@dataclass(frozen=True, slots=True)
class Position:
    """Where a subject was at a moment: interpolated between two fixes, or in a gap."""

    t: float
    xy: tuple[float, float] | None  # None in a gap
    accuracy_m: float | None
    before: TrackFix | None
    after: TrackFix | None


def position_at(before: TrackFix | None, after: TrackFix | None, t: float, p: Params) -> Position:
    """The interpolated position at t; a gap when the fixes around t are too far apart."""
    if before is not None and before.t == t:
        return Position(t, (before.x, before.y), _acc(before, p), before, after)
    if before is None or after is None or after.t - before.t > p.max_gap_s:
        return Position(t, None, None, before, after)
    return Position(t, _at(before, after, t), max(_acc(before, p), _acc(after, p)), before, after)


@dataclass(frozen=True, slots=True)
class Far:
    """Subjects whose verdict their closest approach settles alone (`far_and_covered`):
    excluded, with no gap and full coverage. Arrays, one element a subject; `which` are
    their places in the arrays `far_and_covered` was given."""

    which: np.ndarray
    closest_m: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    accuracy_m: np.ndarray
    radius_m: float

    def words(self) -> str:
        """The first reason of each, as `_approach_reason` words it, to be %-formatted with
        the values of `reason_values`."""
        return BEYOND.format(d="%d", clock="%s", r=f"{self.radius_m:.0f}", u="%d")

    def reason_values(self, written: list[str]) -> list[tuple[int, str, int]]:
        """The values for `words`, from the times as `isos` wrote them."""
        return list(
            zip(_metres(self.closest_m), clocks(written), _metres(self.accuracy_m), strict=True)
        )

    def reasons(self) -> list[list[str]]:
        """The reasons of each, as `_reasons` gives them."""
        words = self.words()
        return [[words % v, ACCOUNTED] for v in self.reason_values(isos(self.t))]

    def assessments(self) -> list[Assessment]:
        """The assessments, as `assess` makes them."""
        rows = zip(self.closest_m.tolist(), self.t.tolist(), self.x.tolist(), self.y.tolist(),
                   self.accuracy_m.tolist(), self.reasons(), strict=True)  # fmt: skip
        return [
            Assessment(Verdict.EXCLUDED, d, t, (x, y), u, 1.0, [], reasons)
            for d, t, x, y, u, reasons in rows
        ]


def far_and_covered(
    closest_m: np.ndarray,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    acc_a: np.ndarray,
    acc_b: np.ndarray,
    scene: Scene,
    p: Params,
) -> Far:
    """Of subjects whose tracks cover the whole window with no gap, those whose closest
    approach alone settles the verdict (arrays: the distance, the time and the point there,
    the accuracies of the fixes around it, NaN where none): excluded, as even that is
    beyond the radius by more than the accuracy. The verdicts of the others need their
    fixes (they are present or possible). Many at once: a query has thousands."""
    u = accuracy_between(acc_a, acc_b, p)
    i = np.flatnonzero(closest_m - u > scene.radius_m)  # neither present nor possible
    return Far(i, closest_m[i], t[i], x[i], y[i], u[i], scene.radius_m)
