"""Daily routines of synthetic subjects: nights at home, trips out by foot, bicycle or car."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from simulators.world import Mode, Point, Timeline, Town, route, snap, start, towns

LONDON = ZoneInfo("Europe/London")
DAY = 86400


@dataclass(frozen=True, slots=True)
class Subject:
    index: int
    ref: str
    town: Town
    home: Point
    has_bicycle: bool
    has_car: bool
    works: bool
    probation_weekday: int  # 0 = Monday


def make_subject(index: int, seed: int) -> Subject:
    rng = random.Random(f"{seed}/subject/{index}")
    town = towns()[index % len(towns())]
    angle, radius = rng.uniform(0, 2 * math.pi), 300 + rng.random() * 2200
    home = snap(
        Point(town.centre.x + radius * math.cos(angle), town.centre.y + radius * math.sin(angle))
    )
    home = Point(home.x + 15, home.y + 20)  # a door off the corner
    return Subject(
        index=index,
        ref=f"IOM-S{index + 1:05d}",
        town=town,
        home=home,
        has_bicycle=rng.random() < 0.4,
        has_car=rng.random() < 0.45,
        works=rng.random() < 0.5,
        probation_weekday=rng.randrange(5),
    )


def local_time(day: datetime, hour: float) -> float:
    """Unix seconds of `hour` (local, Europe/London) on the local date of `day`."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=LONDON)
    return (midnight + timedelta(hours=hour)).timestamp()


def choose_mode(s: Subject, distance: float, rng: random.Random) -> Mode:
    if distance < 1200:
        return Mode.WALK
    if distance < 5000 and s.has_bicycle:
        return Mode.BICYCLE
    if s.has_car or distance >= 5000:
        return Mode.CAR  # a lift or a taxi for those without one
    return Mode.WALK if rng.random() < 0.5 else Mode.BICYCLE


def travel(tl: Timeline, s: Subject, to: Point, rng: random.Random) -> None:
    here = tl.here
    mode = choose_mode(s, here.dist(to), rng)
    via = None
    if mode is Mode.CAR:
        near_from = min(towns(), key=lambda t: t.centre.dist(here))
        near_to = min(towns(), key=lambda t: t.centre.dist(to))
        if near_from is not near_to:
            via = (near_from.centre, near_to.centre)
    tl.go(route(here, to, mode, via), mode)


def errands(s: Subject, day: datetime, rng: random.Random) -> list[tuple[str, Point, float]]:
    """The day's places (name, where, minutes there) in order."""
    plan: list[tuple[str, Point, float]] = []
    weekday = day.astimezone(LONDON).weekday()

    def near(centre: Point, spread: float) -> Point:
        return Point(
            centre.x + rng.uniform(-spread, spread), centre.y + rng.uniform(-spread, spread)
        )

    if s.works and weekday < 5:
        work_town = towns()[(s.index * 7 + 3) % len(towns())]
        plan.append(("work", near(work_town.centre, 800), rng.uniform(360, 480)))
    if weekday == s.probation_weekday:
        plan.append(("probation office", near(s.town.centre, 50), rng.uniform(30, 75)))
    for _ in range(rng.randrange(0, 3)):
        plan.append(("shop", near(s.town.centre, 1500), rng.uniform(10, 45)))
    if rng.random() < 0.35:
        friend_town = rng.choice(towns())
        plan.append(("friend", near(friend_town.centre, 2000), rng.uniform(60, 200)))
    return plan


def day_plan(tl: Timeline, s: Subject, day: datetime, seed: int) -> None:
    """Extend the timeline through one local day, ending at home overnight."""
    rng = random.Random(f"{seed}/day/{s.index}/{day.date().isoformat()}")
    leave = local_time(day, rng.uniform(7.0, 10.5))
    tl.stay(max(leave, tl.end), indoor=True, place="home")
    for place, where, minutes in errands(s, day, rng):
        if tl.end > local_time(day, 21.5):
            break
        travel(tl, s, where, rng)
        tl.stay(tl.end + minutes * 60, indoor=rng.random() < 0.8, place=place)
    back = local_time(day, rng.uniform(17.0, 23.0))
    if back > tl.end:
        tl.stay(back, indoor=False, place="out")
    travel(tl, s, s.home, rng)
    tl.stay(local_time(day + timedelta(days=1), 0), indoor=True, place="home")


def timeline(s: Subject, begin: float, end: float, seed: int) -> Timeline:
    """The subject's true movements from begin to at least end (Unix seconds)."""
    tl = start(begin, s.home)
    day = datetime.fromtimestamp(begin, UTC).astimezone(LONDON)
    while tl.end < end:
        day_plan(tl, s, day, seed)
        day = (day + timedelta(days=1)).replace(hour=12)
    return tl
