"""The association method on hand-built tracks: exact times, episodes, gaps, areas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely import box

from torch.association import Rules, Track, episodes

T0 = 1_790_000_000.0  # a Unix time; the windows below start here
HOME = (500_000.0, 200_000.0)


def track(subject: int, fixes: list[tuple[float, float, float]], acc: float = 8.0) -> Track:
    t, x, y = (np.array(c, float) for c in zip(*fixes, strict=True))
    return Track(subject, t + T0, x, y, np.full(len(t), acc))


def still(subject: int, x: float, y: float, t0: float, t1: float, every: float = 60) -> Track:
    return track(subject, [(t, x, y) for t in np.arange(t0, t1 + 1, every)])


def test_a_pass_between_fixes_is_found_exactly() -> None:
    a = still(1, *HOME, 0, 3600)
    # b walks east at 1 m/s, 10 m north of a, passing a at t = 1000 s; fixes a minute apart
    b = track(2, [(k * 60, HOME[0] - 1000 + k * 60, HOME[1] + 10) for k in range(61)])
    (e,) = episodes([a, b], T0, T0 + 3600, Rules(distance_m=50, min_s=0))
    half = math.sqrt(50**2 - 10**2)  # within 50 m while |dx| <= 48.99 m
    assert (e.a, e.b) == (1, 2)
    assert e.start - T0 == pytest.approx(1000 - half, abs=1e-6)
    assert e.end - T0 == pytest.approx(1000 + half, abs=1e-6)
    assert (e.closest_m, e.closest_at - T0) == (pytest.approx(10.0), pytest.approx(1000.0))
    assert e.where == (pytest.approx(HOME[0]), pytest.approx(HOME[1] + 5))
    assert e.accuracy_m == 16.0
    # a minute within 50 m is not a five-minute association
    assert episodes([a, b], T0, T0 + 3600, Rules(distance_m=50, min_s=300)) == []


def test_a_twenty_minute_meeting_is_one_episode_with_its_times() -> None:
    # b walks west at 2 m/s to 10 m from a (t 0..1000), stays 20 minutes, and walks back;
    # a fix every 20 s
    b_fixes = []
    for t in range(0, 3601, 20):
        if t <= 1000:
            x = HOME[0] + 10 + 2 * (1000 - t)
        elif t <= 2200:
            x = HOME[0] + 10
        else:
            x = HOME[0] + 10 + 2 * (t - 2200)
        b_fixes.append((t, x, HOME[1]))
    b = track(2, b_fixes)
    a = still(1, *HOME, 0, 3600, every=47)  # its own fix times
    (e,) = episodes([a, b], T0, T0 + 3600, Rules(distance_m=25, min_s=300))
    assert e.start - T0 == pytest.approx(1000 - 7.5, abs=1e-6)  # 25 m = 10 + 2 m/s * 7.5 s
    assert e.end - T0 == pytest.approx(2200 + 7.5, abs=1e-6)
    assert e.closest_m == pytest.approx(10.0)


def test_a_gap_in_either_track_is_no_company() -> None:
    a = still(1, *HOME, 0, 3600)
    # b beside a all hour, but no fix from 1200 to 2400 s (a gap: b is nowhere then)
    b = track(2, [(t, HOME[0] + 5, HOME[1]) for t in range(0, 3601, 60) if not 1200 < t < 2400])
    found = episodes([a, b], T0, T0 + 3600, Rules(distance_m=25, min_s=300))
    assert [(e.start - T0, e.end - T0) for e in found] == [(0.0, 1200.0), (2400.0, 3600.0)]


def test_only_meetings_inside_the_area_count() -> None:
    a = still(1, *HOME, 0, 3600)
    b = still(2, HOME[0] + 5, HOME[1], 0, 3600)
    rules = Rules(distance_m=25, min_s=300)
    around = box(HOME[0] - 100, HOME[1] - 100, HOME[0] + 100, HOME[1] + 100)
    elsewhere = box(HOME[0] + 1000, HOME[1], HOME[0] + 2000, HOME[1] + 1000)
    assert len(episodes([a, b], T0, T0 + 3600, rules, around)) == 1
    assert episodes([a, b], T0, T0 + 3600, rules, elsewhere) == []


def test_subjects_far_apart_are_never_paired() -> None:
    a = still(1, *HOME, 0, 3600)
    b = still(2, HOME[0] + 3000, HOME[1], 0, 3600)
    assert episodes([a, b], T0, T0 + 3600, Rules(distance_m=500, min_s=60)) == []


def test_together_time_equals_a_second_by_second_count() -> None:
    """Random walks of eight subjects near each other for two hours: the time each pair is
    together, summed over its episodes, against counting seconds on interpolated tracks."""
    rng = np.random.default_rng(7)
    tracks = []
    for s in range(8):
        t = np.cumsum(rng.uniform(20, 120, 120))
        t = t[t < 7200]
        steps = rng.normal(0, 40, (len(t), 2))
        xy = np.cumsum(steps, axis=0) + rng.uniform(-150, 150, 2) + np.array(HOME)
        keep = rng.uniform(size=len(t)) > 0.05  # a few fixes missing: some gaps
        tracks.append(
            Track(s + 1, T0 + t[keep], xy[keep, 0], xy[keep, 1], np.full(keep.sum(), 8.0))
        )
    rules = Rules(distance_m=60, min_s=0, max_gap_s=300, bridge_s=0)
    found = episodes(tracks, T0, T0 + 7200, rules)
    seconds = T0 + np.arange(0.5, 7200, 1.0)  # the middle of each second

    def position(tr: Track) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(tr.t, seconds) - 1
        ok = (i >= 0) & (i < len(tr.t) - 1)
        i = np.clip(i, 0, len(tr.t) - 2)
        ok &= tr.t[i + 1] - tr.t[i] <= 300
        u = (seconds - tr.t[i]) / (tr.t[i + 1] - tr.t[i])
        x = np.where(ok, tr.x[i] + u * (tr.x[i + 1] - tr.x[i]), np.nan)
        return x, np.where(ok, tr.y[i] + u * (tr.y[i + 1] - tr.y[i]), np.nan)

    pos = {tr.subject_id: position(tr) for tr in tracks}
    checked = 0
    for a in range(1, 9):
        for b in range(a + 1, 9):
            d = np.hypot(pos[a][0] - pos[b][0], pos[a][1] - pos[b][1])
            counted = int(np.sum(d <= 60))
            mine = [e for e in found if (e.a, e.b) == (a, b)]
            measured = sum(e.end - e.start for e in mine)
            # each episode's two ends fall within a second
            assert abs(measured - counted) <= 2 * len(mine) + 1, (a, b)
            checked += counted > 0
    assert checked >= 10  # the walks do meet
