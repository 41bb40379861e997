"""Pattern of life: where a subject stays, their weekly routine, and the cohort's hotspots.

Pure computation on tracks in grid metres (torch.association.Track).

- A **stay** is a run of fixes all within `radius_m` of the run's first fix, lasting at
  least `min_s` (10 minutes within 50 m by default); an interval longer than `max_gap_s`
  inside a run still counts as staying when the fixes either side are within the radius
  (a tag that sleeps at home at night).
- **Places** gather stays whose centres are within `radius_m` of each other: each has its
  visits, time spent, and the hours of the day (Europe/London) it is used.
- The **routine** spreads the track's time over the 168 hours of the week (Europe/London):
  at home (the place with the most time between 00:00 and 06:00), at each other place, on
  the move, or without data.
- **Hotspots** add up the cohort's time by grid cell and hour of the day: each interval
  between two fixes at most max_gap_s apart counts in the cell of its midpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from torch.association import Track

LONDON = ZoneInfo("Europe/London")
MIN_SUBJECTS = 3  # a hotspot cell shows only the time of at least this many subjects


@dataclass(frozen=True, slots=True)
class Stay:
    start: float
    end: float
    x: float
    y: float
    fixes: int


@dataclass(slots=True)
class Place:
    id: int
    x: float
    y: float
    stays: list[Stay] = field(default_factory=list)

    @property
    def visits(self) -> int:
        return len(self.stays)

    @property
    def seconds(self) -> float:
        return sum(s.end - s.start for s in self.stays)

    def hours_of_day(self) -> list[float]:
        """Hours spent here in each hour of the day (Europe/London), over the window."""
        out = np.zeros(24)
        for s in self.stays:
            _spread(s.start, s.end, out, by_week=False)
        return [round(float(h) / 3600, 2) for h in out]


def stays(tr: Track, radius_m: float = 50.0, min_s: float = 600.0) -> list[Stay]:
    out: list[Stay] = []
    n, i = len(tr.t), 0
    while i < n:
        j = _run_end(tr, i, radius_m)
        if tr.t[j] - tr.t[i] >= min_s:
            x, y = float(tr.x[i : j + 1].mean()), float(tr.y[i : j + 1].mean())
            out.append(Stay(float(tr.t[i]), float(tr.t[j]), x, y, j - i + 1))
            i = j + 1
        else:
            i += 1
    return out


def _run_end(tr: Track, i: int, radius_m: float, chunk: int = 256) -> int:
    """The last fix of the run from fix i that stays within radius_m of it."""
    n, j0 = len(tr.t), i
    while j0 < n:
        d = np.hypot(tr.x[j0 : j0 + chunk] - tr.x[i], tr.y[j0 : j0 + chunk] - tr.y[i])
        away = np.flatnonzero(d > radius_m)
        if len(away):
            return j0 + int(away[0]) - 1
        j0 += chunk
    return n - 1


def places(found: Sequence[Stay], radius_m: float = 50.0) -> list[Place]:
    """Stays gathered into places, the most used first."""
    out: list[Place] = []
    for s in sorted(found, key=lambda s: s.start - s.end):  # the longest stays first
        best = min(out, key=lambda p: np.hypot(p.x - s.x, p.y - s.y), default=None)
        if best is not None and np.hypot(best.x - s.x, best.y - s.y) <= radius_m:
            best.stays.append(s)
            w = np.array([st.end - st.start for st in best.stays])
            best.x = float(np.average([st.x for st in best.stays], weights=w))
            best.y = float(np.average([st.y for st in best.stays], weights=w))
        else:
            out.append(Place(0, s.x, s.y, [s]))
    out.sort(key=lambda p: -p.seconds)
    for k, p in enumerate(out, 1):
        p.id = k
        p.stays.sort(key=lambda s: s.start)
    return out


def home_of(found: Sequence[Place]) -> Place | None:
    """The place with the most time between 00:00 and 06:00 (Europe/London)."""
    night = [(sum(p.hours_of_day()[:6]), p) for p in found]
    best = max(night, key=lambda n: n[0], default=(0.0, None))
    return best[1] if best[0] > 0 else None


@dataclass(frozen=True, slots=True)
class Routine:
    """Hours in each of the 168 hours of the week (Monday 00:00 first, Europe/London)."""

    home: list[float]
    places: dict[int, list[float]]  # other places, by place id
    moving: list[float]
    no_data: list[float]


def routine(
    tr: Track, found: Sequence[Place], start: float, end: float, max_gap_s: float
) -> Routine:
    home = home_of(found)
    at_home, moving, covered = np.zeros(168), np.zeros(168), np.zeros(168)
    others = {p.id: np.zeros(168) for p in found if p is not home}
    for p in found:
        into = at_home if p is home else others[p.id]
        for s in p.stays:
            _spread(max(s.start, start), min(s.end, end), into, by_week=True)
    for a, b in _segments(tr, start, end, max_gap_s):
        _spread(a, b, covered, by_week=True)
    staying = at_home + sum(others.values(), np.zeros(168))
    covered = np.maximum(covered, staying)  # a stay goes on through a sleeping tag's gap
    moving = covered - staying
    total = np.zeros(168)
    _spread(start, end, total, by_week=True)
    no_data = np.maximum(total - covered, 0.0)

    def hours(a: np.ndarray) -> list[float]:
        return [round(float(v) / 3600, 2) for v in a]

    by_place = {k: hours(v) for k, v in others.items()}
    return Routine(hours(at_home), by_place, hours(moving), hours(no_data))


def _segments(tr: Track, start: float, end: float, max_gap_s: float) -> list[tuple[float, float]]:
    """The intervals of [start, end] with a track (between fixes at most max_gap_s apart)."""
    out = []
    for k in range(len(tr.t) - 1):
        a, b = max(tr.t[k], start), min(tr.t[k + 1], end)
        if b > a and tr.t[k + 1] - tr.t[k] <= max_gap_s:
            out.append((float(a), float(b)))
    return out


def _spread(a: float, b: float, into: np.ndarray, by_week: bool) -> None:
    """Add the seconds of [a, b] to the hour slots they fall in (local time)."""
    t = a
    while t < b:
        local = datetime.fromtimestamp(t, UTC).astimezone(LONDON)
        slot = local.weekday() * 24 + local.hour if by_week else local.hour
        into_hour = 3600 - (local.minute * 60 + local.second + local.microsecond / 1e6)
        step = min(b - t, into_hour)
        into[slot] += step
        t += step


@dataclass(frozen=True, slots=True)
class Cell:
    x0: float  # the cell's south-west corner
    y0: float
    seconds: float
    subjects: int


def hotspots(
    tracks: Sequence[Track],
    start: float,
    end: float,
    cell_m: float,
    max_gap_s: float,
    hours: tuple[int, int] = (0, 24),
    min_subjects: int = MIN_SUBJECTS,
) -> list[Cell]:
    """Time spent by cell, counting intervals whose midpoint falls in the hours of the day
    [hours[0], hours[1]) (Europe/London; wrapping past midnight when the first is later).
    Cells where fewer than `min_subjects` subjects spent time are left out: a cohort map
    must not show one person's home."""
    keys, secs, who = [], [], []
    for tr in tracks:
        if len(tr.t) < 2:
            continue
        a = np.maximum(tr.t[:-1], start)
        b = np.minimum(tr.t[1:], end)
        ok = (b > a) & (tr.t[1:] - tr.t[:-1] <= max_gap_s)
        u = (((a + b) / 2) - tr.t[:-1]) / np.where(ok, tr.t[1:] - tr.t[:-1], 1.0)
        mx = tr.x[:-1] + u * (tr.x[1:] - tr.x[:-1])
        my = tr.y[:-1] + u * (tr.y[1:] - tr.y[:-1])
        hour = _local_hours((a + b) / 2)
        lo, hi = hours
        ok &= (hour >= lo) & (hour < hi) if lo <= hi else (hour >= lo) | (hour < hi)
        cx = np.floor(mx[ok] / cell_m).astype(np.int64)
        cy = np.floor(my[ok] / cell_m).astype(np.int64)
        keys.append(cx * 10_000_000 + cy)
        secs.append((b - a)[ok])
        who.append(np.full(int(ok.sum()), tr.subject_id))
    if not keys:
        return []
    k, s, w = np.concatenate(keys), np.concatenate(secs), np.concatenate(who)
    cells, inverse = np.unique(k, return_inverse=True)
    seconds = np.bincount(inverse, weights=s)
    pairs = np.unique(np.stack([inverse, w], axis=1), axis=0)
    subjects = np.bincount(pairs[:, 0], minlength=len(cells))
    out = []
    for c, sec, n in zip(cells, seconds, subjects, strict=True):
        if n >= min_subjects:
            cx, cy = divmod(int(c), 10_000_000)
            out.append(Cell(cx * cell_m, cy * cell_m, float(sec), int(n)))
    return sorted(out, key=lambda c: -c.seconds)


def _local_hours(t: np.ndarray) -> np.ndarray:
    """The hour of the day in Europe/London of each Unix time (the offset looked up once
    for each UTC hour, which is exact: the clocks change on the hour)."""
    if not len(t):
        return np.zeros(0, np.int64)
    utc_hour = np.floor(t / 3600).astype(np.int64)
    hours, inverse = np.unique(utc_hour, return_inverse=True)
    local = np.array(
        [datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(LONDON).hour for h in hours]
    )
    found: np.ndarray = local[inverse]
    return found
