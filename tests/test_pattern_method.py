"""Pattern of life on a planted week: home, work on weekdays, the gym on two evenings."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from torch.association import Track
from torch.pattern import home_of, hotspots, places, routine, stays

LONDON = ZoneInfo("Europe/London")
MONDAY = datetime(2026, 11, 2, tzinfo=LONDON)  # a week with no change of the clocks
HOME, WORK, GYM = (515_250.0, 207_250.0), (518_250.0, 207_250.0), (515_250.0, 209_250.0)


def planted_week(seed: int = 1) -> Track:
    """A fix a minute for a week: at home, at work 09:00-17:00 on weekdays, at the gym
    18:00-19:00 on Monday and Wednesday, moving between at 3 m/s; GPS scatter of 8 m."""
    rng = np.random.default_rng(seed)
    ts, xs, ys = [], [], []
    for minute in range(7 * 24 * 60):
        t = MONDAY + timedelta(minutes=minute)
        day, hour = t.weekday(), t.hour
        where = HOME
        if day < 5 and 9 <= hour < 17:
            where = WORK
        elif day in (0, 2) and hour == 18:
            where = GYM
        ts.append(t.timestamp())
        xs.append(where[0] + rng.normal(0, 8))
        ys.append(where[1] + rng.normal(0, 8))
    return Track(seed, np.array(ts), np.array(xs), np.array(ys), np.full(len(ts), 8.0))


def test_the_planted_places_are_found_with_their_visits_and_hours() -> None:
    tr = planted_week()
    found = places(stays(tr))
    assert [(p.visits, round(p.seconds / 3600)) for p in found] == [(8, 126), (5, 40), (2, 2)]
    home, work, gym = found
    assert (home.x, home.y) == (pytest.approx(HOME[0], abs=3), pytest.approx(HOME[1], abs=3))
    assert (work.x, work.y) == (pytest.approx(WORK[0], abs=3), pytest.approx(WORK[1], abs=3))
    assert (gym.x, gym.y) == (pytest.approx(GYM[0], abs=5), pytest.approx(GYM[1], abs=5))
    assert home_of(found) is home
    # work: five days of 09:00-17:00, less the minute each way that is a jump, not a stay
    assert [h > 0 for h in work.hours_of_day()] == [9 <= h < 17 for h in range(24)]
    assert gym.hours_of_day()[18] == pytest.approx(2 * 59 / 60, abs=0.02)


def test_the_weekly_routine_spreads_the_week_over_home_places_and_moving() -> None:
    tr = planted_week()
    found = places(stays(tr))
    start, end = MONDAY.timestamp(), (MONDAY + timedelta(days=7)).timestamp()
    r = routine(tr, found, start, end, max_gap_s=300)
    assert r.home[3] == 1.0  # Monday 03:00-04:00: at home all hour
    assert r.places[2][24 + 12] == 1.0  # Tuesday noon: at work
    assert r.places[3][18] == pytest.approx(59 / 60, abs=0.02)  # Monday 18:00: the gym
    assert r.home[24 * 5 + 12] == 1.0  # Saturday noon: at home
    assert sum(r.no_data) == pytest.approx(1 / 60, abs=0.01)  # the last minute of the week
    every_hour = np.array(r.home) + sum(np.array(v) for v in r.places.values()) + r.moving
    assert every_hour[:-1] == pytest.approx(np.ones(167), abs=0.001)


def test_hotspots_count_time_by_cell_and_hide_cells_of_fewer_than_three() -> None:
    week = [planted_week(seed) for seed in (1, 2, 3)]
    loner = Track(9, week[0].t, week[0].x + 5000, week[0].y, week[0].acc)  # alone elsewhere
    start, end = MONDAY.timestamp(), (MONDAY + timedelta(days=7)).timestamp()
    cells = hotspots([*week, loner], start, end, 500, 300)
    # home, work and the gym, the most used; the loner's cell not at all; the minutes of the
    # journeys (a fix a minute: each journey is one interval) in the cells between
    assert [(c.x0, c.y0, c.subjects) for c in cells[:3]] == [
        (515_000, 207_000, 3), (518_000, 207_000, 3), (515_000, 209_000, 3)
    ]  # fmt: skip
    assert sum(c.seconds for c in cells[3:]) == 3 * (5 * 2 + 2 * 2) * 60
    nights = hotspots(week, start, end, 500, 300, hours=(22, 6))
    assert [(c.x0, c.y0) for c in nights] == [(515_000, 207_000)]  # everyone at home
    assert nights[0].seconds == pytest.approx(3 * 7 * 8 * 3600, rel=0.01)
