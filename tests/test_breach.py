"""Zone breaches on hand-built tracks, with exact expected episodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely import box

from torch.breach import Detection, EpisodeKind, Event, Fix, Rules, Watch
from torch.zones import Kind, ZoneVersion, parse_schedule

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
SQUARE = box(0, 0, 200, 200)


def zone(
    kind: Kind = Kind.EXCLUSION,
    schedule=None,
    version: int = 1,
    area=SQUARE,  # type: ignore[no-untyped-def]
) -> ZoneVersion:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    return ZoneVersion(7, version, 1, kind, "test", area, schedule, since, None, since, None)


def run(fixes: list[tuple[float, float, float, float | None]], z: ZoneVersion) -> list[Event]:
    w = Watch(Rules())
    events: list[Event] = []
    for t, x, y, acc in fixes:
        events += w.step(Fix(T0 + t, x, y, acc), z)
    return events


def test_drift_across_an_edge_raises_nothing() -> None:
    # standing at the west edge (x = 0), the fixes wander 9 m either side with 10 m accuracy
    fixes = [(60.0 * i, (-9.0, 9.0, -4.0, 6.0)[i % 4], 100.0, 10.0) for i in range(120)]
    assert run(fixes, zone()) == []


def test_two_fixes_clearly_inside_open_and_two_clearly_outside_close() -> None:
    fixes = [
        (0, -100, 100, 10.0),
        (60, 50, 100, 10.0),  # 50 m in: clearly inside
        (120, 80, 100, 10.0),  # 80 m in
        (180, 30, 100, 10.0),
        (240, -60, 100, 10.0),  # clearly out
        (300, -90, 100, 10.0),
    ]
    events = run(fixes, zone())
    assert [(e.closed, e.episode.kind) for e in events] == [
        (False, EpisodeKind.EXCLUSION),
        (True, EpisodeKind.EXCLUSION),
    ]
    ep = events[-1].episode
    assert (ep.entered, ep.left) == (T0 + 60, T0 + 240)
    assert (ep.deepest_m, ep.fixes_inside, ep.detection) == (80.0, 3, Detection.LIVE)
    assert (ep.zone_id, ep.version) == (7, 1)


def test_one_stray_fix_inside_raises_nothing() -> None:
    fixes = [(0, -100, 100, 10.0), (60, 40, 100, 10.0), (120, -100, 100, 10.0)]
    assert run(fixes, zone()) == []


def test_a_car_through_the_zone_between_two_fixes_is_a_transit() -> None:
    # 20 m/s eastwards along y = 100, fixes at x = -500 and x = 700, a minute apart
    events = run([(0, -500, 100, 5.0), (60, 700, 100, 5.0)], zone())
    assert [(e.closed, e.episode.kind) for e in events] == [
        (False, EpisodeKind.TRANSIT),
        (True, EpisodeKind.TRANSIT),
    ]
    ep = events[0].episode
    # the zone drawn in by 5 m is x in [5, 195]: reached at 505 m, left at 695 m, at 20 m/s
    assert ep.entered == T0 + 505 / 20
    assert ep.left == T0 + 695 / 20
    assert ep.deepest_m == 100.0  # at the centre of the square


def test_a_slow_crossing_that_stays_inside_long_enough_is_a_breach() -> None:
    # 1 m/s over 400 m in 400 s: 190 s inside the drawn-in square (more than 120 s)
    events = run([(0, -100, 100, 5.0), (300, 200, 100, 5.0)], zone())
    assert [(e.closed, e.episode.kind) for e in events] == [(False, EpisodeKind.EXCLUSION)]
    assert events[0].episode.entered == T0 + 105


def test_a_curfew_across_midnight_binds_only_inside_its_hours() -> None:
    curfew = zone(
        Kind.INCLUSION, parse_schedule([{"days": ["fri"], "start": "19:00", "end": "07:00"}])
    )
    friday = datetime(2026, 11, 20, 0, 0, tzinfo=UTC).timestamp() - T0  # GMT in November
    out = (1000.0, 1000.0, 10.0)
    home = (100.0, 100.0, 10.0)
    fixes = [
        (friday + 18 * 3600, *out),  # before the curfew: nothing
        (friday + 18.5 * 3600, *out),
        (friday + 23 * 3600, *out),  # out after 19:00: a breach
        (friday + 23 * 3600 + 60, *out),
        (friday + 24.5 * 3600, *home),  # home at 00:30 Saturday
        (friday + 24.5 * 3600 + 60, *home),
    ]
    events = run(fixes, curfew)
    assert [(e.closed, e.episode.kind) for e in events] == [
        (False, EpisodeKind.INCLUSION),
        (True, EpisodeKind.INCLUSION),
    ]
    assert events[1].episode.entered == T0 + friday + 23 * 3600
    assert events[1].episode.left == T0 + friday + 24.5 * 3600


def test_curfew_hours_follow_daylight_saving() -> None:
    (w,) = parse_schedule([{"days": ["sat"], "start": "19:00", "end": "07:00"}]) or ()
    march = datetime(2026, 3, 28, 12, tzinfo=UTC)  # clocks go forward on Sunday 29 March
    october = datetime(2026, 10, 24, 12, tzinfo=UTC)  # and back on Sunday 25 October
    opens, closes = w.spans(march)
    assert (opens, closes - opens) == (datetime(2026, 3, 28, 19, tzinfo=UTC), timedelta(hours=11))
    opens, closes = w.spans(october)
    assert (opens, closes - opens) == (datetime(2026, 10, 24, 18, tzinfo=UTC), timedelta(hours=13))
    assert w.covers(datetime(2026, 10, 25, 6, 30, tzinfo=UTC))  # 06:30 GMT: still curfew
    assert not w.covers(datetime(2026, 10, 25, 7, 0, tzinfo=UTC))
    assert not w.covers(datetime(2026, 3, 29, 6, 0, tzinfo=UTC))  # 07:00 BST: over


def test_a_new_version_applies_from_its_time_and_episodes_keep_theirs() -> None:
    w = Watch(Rules())
    v1, v2 = zone(version=1), zone(version=2, area=box(1000, 0, 1200, 200))
    events = []
    for t, x, v in [(0, 100, v1), (60, 100, v1), (120, 1100, v2), (180, 1100, v2)]:
        events += w.step(Fix(T0 + t, x, 100, 5.0), v)
    assert [(e.closed, e.episode.version) for e in events] == [(False, 1)]
    assert w.open is not None and w.open.fixes_inside == 4


def test_a_transit_to_a_gps_outlier_is_doubted_and_the_way_back_not_checked() -> None:
    """Walking 1 km south of the zone at 1 m/s, with one fix 3 km north, past it. The way
    out crosses the zone: a transit, raised at once. The next fix shows that fix to be a
    spike (50 m/s in, 50 out, less 16 m of accuracy, where the fixes either side are 1 m/s
    apart): the transit is doubted, and the way back raises nothing."""
    track = [(t, 100.0 + (t - 600), 2000.0 if t == 600 else -1000.0, 8.0) for t in (540, 600, 660)]
    w = Watch(Rules())
    steps = [w.step(Fix(T0 + t, x, y, acc), zone()) for t, x, y, acc in track]
    assert steps[0] == []
    out, back = steps[1], steps[2]
    assert [(e.episode.kind, e.closed, e.doubted) for e in out] == [
        (EpisodeKind.TRANSIT, False, False),
        (EpisodeKind.TRANSIT, True, False),
    ]
    # y = -1000 + 50 (t - 540): into the square drawn in by 8 m at y = 8, out at y = 192
    transit = out[0].episode
    assert (transit.entered - T0, transit.left - T0) == (
        pytest.approx(560.16, abs=1e-6),
        pytest.approx(563.84, abs=1e-6),
    )
    clock = datetime.fromtimestamp(T0 + 600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [(e.episode is transit, e.closed, e.doubted) for e in back] == [(True, True, True)]
    assert transit.doubt == (
        f"the fix at {clock} would mean 50 m/s from the fix before it and 50 m/s to the one"
        " after, even allowing for their accuracy, while those two are 1 m/s apart: it may be"
        " a GPS outlier"
    )


def test_a_fast_car_through_the_zone_is_no_spike() -> None:
    """45 m/s along a road through the zone: a transit, and the fix after it, as fast from
    the one before, puts it in no doubt."""
    events = run([(t, 100.0 + 45 * (t - 600), 100.0, 8.0) for t in (510, 570, 630, 690)], zone())
    assert [(e.episode.kind, e.closed, e.doubted, e.episode.doubt) for e in events] == [
        (EpisodeKind.TRANSIT, False, False, None),
        (EpisodeKind.TRANSIT, True, False, None),
    ]
