"""The proximity method on hand-built tracks, with exact expected values."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import Point, Polygon

from torch.proximity import (
    ACCOUNTED,
    Far,
    Params,
    Pieces,
    Scene,
    TrackFix,
    Verdict,
    _approach_reason,
    _clock,
    assess,
    clocks,
    closest_by_pieces,
    closest_in,
    iso,
    isos,
    nearest_on,
    nearest_point,
    piece_shapes,
    rounded,
    stretches,
)

P = Params()


def f(t: float, x: float, y: float, acc: float | None = 8.0) -> TrackFix:
    return TrackFix(t, x, y, acc, 0.0, 0.0)


def scene(
    r: float = 100.0, start: float = 0.0, end: float = 3600.0, at: tuple[float, float] = (0, 0)
) -> Scene:
    return Scene(Point(*at), r, start, end)


def along(y: float, start: float = -600, end: float = 4200, step: float = 60) -> list[TrackFix]:
    """A walker on the line at northing y, from x=-3000 at `start` eastwards at 1.25 m/s."""
    n = int((end - start) / step) + 1
    return [f(start + i * step, -3000 + 1.25 * (start + i * step - start), y) for i in range(n)]


def test_standing_at_the_scene_is_present_with_the_fixes_that_show_it() -> None:
    a = assess([f(t, 3.0, 4.0) for t in range(-300, 3901, 60)], scene(), P)
    assert a.verdict is Verdict.PRESENT
    assert (a.closest_m, a.accuracy_m, a.coverage, a.gaps) == (5.0, 8.0, 1.0, [])
    # every fix in the window, and the one before it that bounds the closest approach at 00:00
    assert len(a.evidence) == 62 and a.evidence[0].t == -60


def test_a_long_stay_near_the_scene_gives_its_nearest_fixes_not_the_whole_trail() -> None:
    """An officer's answer is about one scene: a subject near it for a week at a fix every
    30 s (20,161 fixes) is shown by the 200 fixes nearest to it, and says so."""
    # east of the scene, stepping out from 10 m to 90 m a metre a fix and back to 10 m,
    # over and over; but at 04:00 on the third day 3 m from it
    week = 7 * 86400
    closest_t = 2 * 86400 + 4 * 3600
    track = [f(30.0 * i, 10.0 + i % 81, 0.0) for i in range(week // 30 + 1)]
    track[closest_t // 30] = f(closest_t, 3.0, 0.0)
    a = assess(track, scene(100, 0, week), P)
    assert (a.verdict, a.closest_m, a.closest_at) == (Verdict.PRESENT, 3.0, closest_t)
    assert a.reasons[-1] == (
        "20,161 fixes in the window lay within 100 m of the scene (with their accuracy); the"
        " 200 nearest to it are given"
    )
    # the fix 3 m away and the earliest 199 of those 10 m away (one every 81 fixes), with
    # the fix before the closest approach, which bounds it; in time order
    nearest = [closest_t] + [30.0 * 81 * j for j in range(199)]
    assert [e.t for e in a.evidence] == sorted([*nearest, closest_t - 30])


def test_a_car_between_two_fixes_is_found_on_the_segment() -> None:
    # 3 km in 60 s, passing 30 m from the scene half-way between the fixes
    track = [f(1770, -1500, 30), f(1830, 1500, 30)]
    a = assess(
        [f(t, -1500 - 50 * (1770 - t), 30) for t in range(-330, 1770, 60)]
        + track
        + [f(t, 1500 + 50 * (t - 1830), 30) for t in range(1890, 3961, 60)],
        scene(r=50),
        P,
    )
    assert (a.verdict, a.closest_m, a.closest_at, a.closest_xy) == (
        Verdict.PRESENT,
        30.0,
        1800.0,
        (0.0, 30.0),
    )
    assert [e.t for e in a.evidence] == [1770, 1830]


def test_a_presence_that_rests_on_a_spike_says_so_and_gives_the_fixes_around_it() -> None:
    """A walker 5 km north of the scene, with one fix at the scene: reaching it and leaving
    it would take 88 and 89 m/s (less both accuracies, 16 m, over a minute each), while the
    fixes either side are under 1 m/s apart. The verdict stays the method's, present; a
    reason says it rests on a likely outlier, and the fixes around it are given."""
    fixes = [f(t, float(t), 5000.0) for t in range(-300, 3901, 60) if t != 1800]
    fixes.append(f(1800, 0.0, 0.0))
    a = assess(fixes, scene(), P)
    assert a.verdict is Verdict.PRESENT
    assert a.reasons == [
        _approach_reason(0.0, 8.0, _clock(1800), 100.0),
        f"the fix at {_clock(1800)} would mean 88 m/s from the fix before it and 89 m/s to the"
        " one after, even allowing for their accuracy, while those two are 1 m/s apart: it"
        " may be a GPS outlier, and the closest approach rests on it",
    ]
    assert [(e.t, e.x, e.y) for e in a.evidence] == [
        (1740, 1740.0, 5000.0),
        (1800, 0.0, 0.0),
        (1860, 1860.0, 5000.0),
    ]


def test_a_fast_car_through_the_scene_is_no_spike() -> None:
    """45 m/s along a road through the scene: faster than max_speed into and out of the fix
    at the scene, but just as fast from the fix before to the one after, so no caveat."""
    fixes = [f(t, 45.0 * (t - 1800), 0.0) for t in range(-300, 3901, 60)]
    a = assess(fixes, scene(), P)
    assert (a.verdict, a.reasons) == (
        Verdict.PRESENT,
        [_approach_reason(0.0, 8.0, _clock(1800), 100.0)],
    )
    assert [e.t for e in a.evidence] == [1740, 1800]


def test_near_misses_have_exact_closest_and_are_excluded_when_fully_covered() -> None:
    for y in (150.0, 400.0):
        a = assess(along(y), scene(), P)
        assert a.closest_m == y
        assert a.verdict is Verdict.EXCLUDED
        assert a.coverage == 1.0 and a.evidence == []


def test_within_accuracy_only_is_possible() -> None:
    a = assess([f(t, 0, 105, acc=10) for t in range(-300, 3901, 60)], scene(), P)
    assert (a.verdict, a.closest_m) == (Verdict.POSSIBLE, 105.0)
    assert a.reasons[0] == (
        "closest approach 105 m at 1970-01-01T00:00:00Z: within 100 m only "
        "within the accuracy of 10 m"
    )


def test_a_gap_that_could_reach_the_scene_is_possible() -> None:
    # 1 km away before and after a 20-minute gap: 1 km at 40 m/s takes 25 s
    track = [f(t, 1000, 0) for t in range(-300, 1201, 60)] + [
        f(t, 1000, 0) for t in range(2400, 3901, 60)
    ]
    a = assess(track, scene(), P)
    assert a.verdict is Verdict.POSSIBLE
    assert [(g.start, g.end, g.reachable) for g in a.gaps] == [(1200, 2400, True)]
    assert a.coverage == 2400 / 3600
    assert [e.t for e in a.evidence] == [-60, 0, 1200, 2400]  # closest approach, gap ends


def test_a_gap_too_short_to_reach_the_scene_is_excluded() -> None:
    # 30 km away, a 10-minute gap: 30 km at 40 m/s takes 12.5 minutes each way
    track = [f(t, 30_000, 0) for t in range(-300, 1201, 60)] + [
        f(t, 30_000, 0) for t in range(1800, 3901, 60)
    ]
    a = assess(track, scene(), P)
    assert a.verdict is Verdict.EXCLUDED
    assert [(g.start, g.end, g.reachable) for g in a.gaps] == [(1200, 1800, False)]
    assert a.evidence == []


def test_a_window_bounded_on_one_side_only() -> None:
    # first fix 10 minutes into the window: 1 km away could have come from the scene
    near = assess([f(t, 1000, 0) for t in range(600, 3901, 60)], scene(), P)
    assert near.verdict is Verdict.POSSIBLE
    assert [(g.start, g.end, g.reachable, g.before) for g in near.gaps] == [(0, 600, True, None)]
    far = assess([f(t, 30_000, 0) for t in range(600, 3901, 60)], scene(), P)
    assert far.verdict is Verdict.EXCLUDED


def test_no_fix_near_the_window_is_no_data() -> None:
    a = assess([f(-301, 0, 0), f(3901, 0, 0)], scene(), P)
    assert (a.verdict, a.closest_m, a.coverage, a.evidence) == (Verdict.NO_DATA, None, 0.0, [])


def test_inside_a_polygon_is_distance_zero() -> None:
    square = Polygon([(-50, -50), (50, -50), (50, 50), (-50, 50)])
    a = assess([f(t, 20, 20) for t in range(-300, 3901, 60)], Scene(square, 0, 0, 3600), P)
    assert (a.verdict, a.closest_m) == (Verdict.POSSIBLE, 0.0)  # 0 m, but 8 m accuracy > 0 m buffer
    a = assess([f(t, 20, 20) for t in range(-300, 3901, 60)], Scene(square, 10, 0, 3600), P)
    assert a.verdict is Verdict.PRESENT


def test_missing_accuracy_counts_as_twenty_metres() -> None:
    a = assess([f(t, 0, 85, acc=None) for t in range(-300, 3901, 60)], scene(), P)
    assert (a.verdict, a.accuracy_m) == (Verdict.POSSIBLE, 20.0)


# Grid coordinates to the millimetre, as fixes are (lengths of 1e-246 m make GEOS divide
# zero by zero, which no tag can report).
coords = st.integers(-5_000_000, 5_000_000).map(lambda mm: mm / 1000)


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.tuples(st.integers(1, 400), coords, coords), min_size=1, max_size=30),
    sx=coords,
    sy=coords,
)
def test_closest_matches_brute_force_over_every_fix_pair(points, sx, sy) -> None:  # type: ignore[no-untyped-def]
    t, track = -350.0, []
    for dt, x, y in points:
        t += dt
        track.append(f(t, x, y))
    sc = Scene(Point(sx, sy), 100, 0, 3600)
    a = assess(track, sc, P)
    brute, finest = math.inf, 0.0
    pairs = [(p, q) for p, q in pairwise(track) if q.t - p.t <= P.max_gap_s]
    for p, q in pairs:
        t0, t1 = max(p.t, 0), min(q.t, 3600)
        if t0 > t1:
            continue
        for i in range(2001):
            tt = t0 + (t1 - t0) * i / 2000
            k = (tt - p.t) / (q.t - p.t)
            brute = min(brute, math.hypot(p.x + (q.x - p.x) * k - sx, p.y + (q.y - p.y) * k - sy))
        finest = max(finest, math.hypot(q.x - p.x, q.y - p.y) / 2000)
    joined = {id(x) for pq in pairs for x in pq}
    for p in track:
        if id(p) not in joined and 0 <= p.t <= 3600:
            brute = min(brute, math.hypot(p.x - sx, p.y - sy))
    if math.isinf(brute):
        assert a.closest_m is None
    else:
        assert a.closest_m is not None
        assert brute - finest - 1e-6 <= a.closest_m <= brute + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(st.tuples(st.integers(1, 400), coords, coords), min_size=1, max_size=30),
    still=st.lists(st.booleans(), min_size=30, max_size=30),
    sx=coords,
    sy=coords,
    window=st.tuples(st.integers(-600, 4000), st.integers(0, 3600)),
)
def test_the_compiled_closest_piece_is_the_pieces_one_bit_for_bit(  # type: ignore[no-untyped-def]
    points, still, sx, sy, window
) -> None:
    """Around a point, `closest_in`'s compiled loop over a track gives what the arrays of
    its pieces give, to the last bit: the same pieces in the same order (lone fixes after
    the others, the first of equal distances), so the same fixes around it, distance,
    point and time, on tracks with gaps, lone fixes, fixes standing still and windows that
    clip them."""
    t, ts, xs, ys = -350.0, [], [], []
    for (dt, x, y), stays in zip(points, still, strict=False):
        t += dt
        ts.append(t)
        xs.append(xs[-1] if stays and xs else x)
        ys.append(ys[-1] if stays and ys else y)
    start, length = window
    sc = Scene(Point(sx, sy), 100, float(start), float(start + length))
    arrays = (np.array(ts), np.array(xs), np.array(ys))
    assert closest_in(*arrays, sc, P) == closest_by_pieces(*arrays, sc, P)


grid_coords = st.floats(-2000, 2000, allow_nan=False).map(lambda v: 520000 + v)


@settings(max_examples=300, deadline=None)
@given(
    a=st.tuples(grid_coords, grid_coords),
    b=st.tuples(grid_coords, grid_coords),
    still=st.booleans(),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    scene_at=st.tuples(grid_coords, grid_coords),
)
def test_the_nearest_point_of_a_piece_is_the_one_geos_finds(a, b, still, cut, scene_at) -> None:  # type: ignore[no-untyped-def]
    """A point scene's nearest point on each piece, found by projection, is the one GEOS
    finds on the piece as a geometry (a line, or a point where it stands still), to 1e-6 m,
    at the same time; an area's is still GEOS's own."""
    (xa, ya), (xb, yb) = a, (a if still else b)
    ta, tb = 0.0, 60.0
    t0, t1 = ta + 60 * min(cut), ta + 60 * max(cut)
    pc = Pieces(*(np.array([v]) for v in (ta, xa, ya, tb, xb, yb, t0, t1)))
    here = Point(*scene_at)
    found = nearest_point(pc, here.x, here.y)
    shapes = piece_shapes(pc)
    x, y, t = nearest_on(shapes, pc.t0, pc.t1, here)
    assert found.distance[0] == pytest.approx(shapely.distance(shapes[0], here), abs=1e-6)
    assert found.x[0] == pytest.approx(x[0], abs=1e-6)
    assert found.y[0] == pytest.approx(y[0], abs=1e-6)
    # The time is as far through the piece as the point is along it: a rounding error of
    # 1e-10 m in where the point is moves it by 1e-10 m / the length of the piece.
    length = float(shapely.length(shapes[0]))
    slack = 1e-6 + 60 * 1e-9 / length if length > 0 else 0.0
    assert found.t[0] == pytest.approx(t[0], abs=slack)


def test_times_written_many_at_once_read_as_one_at_a_time() -> None:
    """`isos` and `clocks` give what `iso` and `_clock` give, time by time: whole seconds,
    milliseconds truncated, microseconds rounded up to the next second."""
    times = [
        1793851200.0,  # 2026-11-05T04:00:00Z
        1793851200.1,
        1793851200.0999,
        1793851259.9999996,  # rounds to the next second: 04:01:00
        1793851259.9995,
        1793851200.0000001,  # not whole: written with milliseconds, .000
        946684800.5,
    ]
    assert isos(np.array(times)) == [iso(t) for t in times]
    assert clocks(isos(np.array(times))) == [_clock(t) for t in times]
    assert isos(np.array(times[:4])) == [
        "2026-11-05T04:00:00Z",
        "2026-11-05T04:00:00.100Z",
        "2026-11-05T04:00:00.099Z",
        "2026-11-05T04:01:00.000Z",
    ]
    assert clocks(isos(np.array(times[3:4]))) == ["2026-11-05T04:01:00Z"]


@given(st.floats(min_value=946684800, max_value=4102444800, allow_nan=False))
@settings(max_examples=300, deadline=None)
def test_any_time_written_at_once_is_written_as_alone(t: float) -> None:
    assert isos(np.array([t])) == [iso(t)]
    assert clocks(isos(np.array([t]))) == [_clock(t)]


def test_tenths_rounded_many_at_once_are_those_round_gives() -> None:
    """`rounded` is round(x, 1), ties and near-ties included, where x * 10 misleads."""
    values = [0.0, 0.05, 0.15, 0.25, 2.675, 1234.45, 1234.55, 0.1 + 0.2, 99999.95, 1e-9, 7.0,
              123456789012.35, float("inf")]  # fmt: skip
    assert rounded(np.array(values)) == [round(v, 1) for v in values]
    assert rounded(np.array([0.15, 0.25, 1234.45])) == [0.1, 0.2, 1234.5]


@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_tenths_rounded_at_once_are_rounded_as_alone(values: list[float]) -> None:
    assert rounded(np.array(values, float)) == [round(v, 1) for v in values]


@given(
    st.lists(
        st.tuples(
            st.floats(0, 1e5) | st.integers(0, 100_000).map(lambda k: k + 0.5),  # ties too
            st.floats(0, 60) | st.integers(0, 60).map(lambda k: k + 0.5),
            st.floats(946684800, 4102444800),
        ),
        max_size=10,
    ),
    st.integers(0, 5000),
)
@settings(max_examples=200, deadline=None)
def test_far_reasons_written_at_once_are_those_of_one_assessment(
    rows: list[tuple[float, float, float]], r: int
) -> None:
    """Beyond the radius by more than the accuracy, whole metres rounded half to even."""
    d, u, t = (np.array([row[k] for row in rows], float) for k in range(3))
    d = np.where(d == np.floor(d) + 0.5, d + 2 * r + 122, d + u + r + 1.0)
    far = Far(np.arange(len(rows)), d, t, d, d, u, float(r))
    assert far.reasons() == [
        [_approach_reason(dk, uk, _clock(tk), r), ACCOUNTED]
        for dk, uk, tk in zip(d.tolist(), u.tolist(), t.tolist(), strict=True)
    ]


@pytest.mark.parametrize(
    ("times", "runs"),
    [
        ([], []),
        ([0.0], [(0, 1)]),
        ([0.0, 300.0, 600.0], [(0, 3)]),  # exactly max_gap apart: still track
        ([0.0, 60.0, 360.5, 420.0, 1000.0], [(0, 2), (2, 4), (4, 5)]),
    ],
)
def test_stretches_of_track_are_cut_where_fixes_are_more_than_max_gap_apart(
    times: list[float], runs: list[tuple[int, int]]
) -> None:
    assert stretches(times, 300.0) == runs
