"""Scripted situations with ground truth, for tests to hold the system's answers against.

Each scenario places a few subjects around St Albans on known paths at known
times and writes what truly happened: where, when, how close, in and out.
Times are offsets from the scenario start S (take S at 17:00 local for the
evening and night to fall as the names say).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.routine import LONDON, Subject
from simulators.tag import Faults, Options, Out, Tag, iso
from simulators.world import Mode, Point, Timeline, start, towns

CATALOGUE = {
    "crime-scene": "a subject at a scene, near misses at 150 m and 400 m, one elsewhere, one off,"
    " one 3 km off with a GPS outlier at the scene",
    "zone-breach": "an exclusion zone entered and left, a car through a small zone, edge drift",
    "curfew": "a curfew broken by a late return, and a subject home on time",
    "coverage-gap": "a breach hidden in a coverage gap until the buffered upload arrives",
    "tamper": "a strap tamper, and a tag that goes silent",
    "all": "every scenario above at once",
}

HOUR = 3600.0
SCRIPTED = Options(
    gap_rate=0,
    duplicate_rate=0,
    malformed_rate=0,
    owntracks_share=0,
    silent_share=0,
    tamper_rate=0,
    outlier_rate=0,
)
# Scripted subjects are numbered from here, clear of an ordinary fleet's.
FIRST_INDEX = 90_000


def _centre() -> Point:
    return next(t for t in towns() if t.name == "St Albans").centre


@dataclass
class Script:
    name: str
    begin: float
    end: float
    tags: list[Tag] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)
    finishers: list[Callable[[list[Out]], None]] = field(default_factory=list)
    opts: Options = SCRIPTED

    def add(self, key: str, tl: Timeline, faults: Faults | None = None, seed: int = 0) -> Tag:
        index = FIRST_INDEX + len(self.tags)
        subject = Subject(
            index,
            f"IOM-X{index - FIRST_INDEX + 1:04d}",
            towns()[3],
            tl.legs[0].a,
            False,
            False,
            False,
            0,
        )
        tag = Tag(subject, seed, self.opts, self.begin, self.end, timeline=tl, faults=faults)
        self.tags.append(tag)
        self.truth.setdefault("subjects", {})[key] = {"ref": subject.ref, "serial": tag.serial}
        return tag

    def write_truth(self, path: Path, outs: list[Out]) -> None:
        for finish in self.finishers:
            finish(outs)
        body = {
            "scenario": self.name,
            "start": iso(self.begin),
            "end": iso(self.end),
            **self.truth,
        }
        path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")


def build(name: str, seed: int, begin: float, noise: bool = True) -> Script:
    if name not in CATALOGUE:
        raise SystemExit(f"error: no scenario {name!r}; see torch sim --list-scenarios")
    script = Script(
        name, begin, begin + 14 * HOUR, opts=Options(**{**asdict(SCRIPTED), "noise": noise})
    )
    for part, make in PARTS.items():
        if name in (part, "all"):
            make(script, seed)
    return script


# -- geometry helpers ---------------------------------------------------------


def _lonlat(p: Point) -> list[float]:
    lon, lat = p.lonlat()
    return [round(lon, 7), round(lat, 7)]


def _square(c: Point, half: float) -> list[Point]:
    return [
        Point(c.x - half, c.y - half),
        Point(c.x + half, c.y - half),
        Point(c.x + half, c.y + half),
        Point(c.x - half, c.y + half),
    ]


def _polygon(corners: list[Point]) -> dict[str, Any]:
    ring = [_lonlat(p) for p in [*corners, corners[0]]]
    return {"type": "Polygon", "coordinates": [ring]}


def _inside_square(p: Point, c: Point, half: float) -> bool:
    return abs(p.x - c.x) <= half and abs(p.y - c.y) <= half


def _walk(begin: float, a: Point, stops: list[tuple[Point, float, Mode]]) -> Timeline:
    """A timeline from a: for each stop, travel there straight by mode, then stay until time."""
    tl = start(begin, a)
    for target, until, mode in stops:
        if target != tl.here:
            tl.go([(target, {Mode.WALK: 1.4, Mode.BICYCLE: 4.5, Mode.CAR: 25.0}[mode])], mode)
        if until > tl.end:
            tl.stay(until, indoor=False, place="scripted")
    return tl


def _reported(outs: list[Out], serial: str) -> list[tuple[float, Point, float]]:
    """(time, reported position, acc) of every fix a tag emitted."""
    found = []
    for o in outs:
        if serial not in o.topic or not o.topic.endswith("/fixes"):
            continue
        body = json.loads(o.payload)
        for f in body if isinstance(body, list) else [body]:
            t = datetime.fromisoformat(f["ts"]).timestamp()
            found.append((t, Point.of(f["lat"], f["lon"]), float(f["acc"])))
    return found


def _closest_true(tl: Timeline, p: Point, t0: float, t1: float) -> tuple[float, float]:
    best = (math.inf, t0)
    t = t0
    while t <= t1:
        best = min(best, (tl.at(t).dist(p), t))
        t += 1
    return round(best[0], 1), best[1]


# -- the scenarios ------------------------------------------------------------


def crime_scene(s: Script, seed: int) -> None:
    c = _centre()
    scene = Point(c.x + 300, c.y + 200)
    w0, w1 = s.begin + 8 * HOUR, s.begin + 10 * HOUR
    s.truth["scene"] = {
        "lat": _lonlat(scene)[1],
        "lon": _lonlat(scene)[0],
        "radius_m": 100,
        "from": iso(w0),
        "to": iso(w1),
    }
    far = Point(scene.x + 3000, scene.y)  # east, so the walk stops 10 m short of the scene
    paths = {
        "present": _walk(
            s.begin,
            far,
            [
                (far, w0 - 1800, Mode.WALK),
                (Point(scene.x + 10, scene.y), w0 + 3000, Mode.WALK),
                (far, s.end, Mode.WALK),
            ],
        ),
        # walks east along a line 150 m (400 m) north of the scene, nearest at mid-window
        "near_150": _walk(
            s.begin,
            Point(scene.x - 3000, scene.y + 150),
            [
                (Point(scene.x - 3000, scene.y + 150), w0 + HOUR - 3000 / 1.4, Mode.WALK),
                (Point(scene.x + 3000, scene.y + 150), s.end, Mode.WALK),
            ],
        ),
        "near_400": _walk(
            s.begin,
            Point(scene.x - 3000, scene.y + 400),
            [
                (Point(scene.x - 3000, scene.y + 400), w0 + HOUR - 3000 / 1.4, Mode.WALK),
                (Point(scene.x + 3000, scene.y + 400), s.end, Mode.WALK),
            ],
        ),
        "elsewhere": _walk(s.begin, next(t for t in towns() if t.name == "Stevenage").centre, []),
        "silent": _walk(s.begin, Point(scene.x + 1500, scene.y), []),
        # stands 3 km north all evening; one fix, mid-window, is reported at the scene
        "outlier": _walk(s.begin, Point(scene.x, scene.y + 3000), []),
    }
    paths["elsewhere"].stay(s.end, indoor=True, place="home")
    paths["silent"].stay(s.end, indoor=False, place="home")
    paths["outlier"].stay(s.end, indoor=False, place="home")
    spike_t = w0 + HOUR
    faults = {
        "silent": Faults(off=[(w0 - 1800, w1 + 1800)]),
        "outlier": Faults(spikes={spike_t: (0.0, -3000.0)}),
    }
    # what the method finds: "outlier" present on the one fix, with its caveat
    expected = {
        "present": "present",
        "elsewhere": "excluded",
        "silent": "no_data",
        "outlier": "present",
    }
    for key, tl in paths.items():
        tag = s.add(key, tl, faults.get(key), seed)
        closest, when = _closest_true(tl, scene, w0, w1)
        entry = s.truth["subjects"][key]
        entry.update(closest_true_m=closest, closest_true_at=iso(when))
        if key in expected:
            entry["verdict"] = expected[key]
        if key == "outlier":
            entry["outlier_at"] = iso(spike_t)

        def finish(outs: list[Out], tag: Tag = tag, entry: dict[str, Any] = entry) -> None:
            fixes = [(t, p.dist(scene)) for t, p, _ in _reported(outs, tag.serial) if w0 <= t <= w1]
            if fixes:
                t, d = min(fixes, key=lambda f: f[1])
                entry.update(closest_fix_m=round(d, 1), closest_fix_at=iso(t))
            entry["fixes_in_window"] = len(fixes)

        s.finishers.append(finish)


def zone_breach(s: Script, seed: int) -> None:
    c = _centre()
    z1, half1 = Point(c.x - 800, c.y - 600), 100.0
    z2, half2 = Point(c.x + 900, c.y - 900), 30.0
    s.truth["exclusion_zones"] = {
        "Z1": _polygon(_square(z1, half1)),
        "Z2": _polygon(_square(z2, half2)),
    }
    # F walks in from the west, stays 20 minutes, leaves west again.
    west = Point(z1.x - 700, z1.y)
    enter_t = s.begin + HOUR
    f = _walk(
        s.begin,
        west,
        [
            (west, enter_t - 600 / 1.4, Mode.WALK),
            (Point(z1.x, z1.y), enter_t + 100 / 1.4 + 1200, Mode.WALK),
            (west, s.end, Mode.WALK),
        ],
    )
    s.add("enters_Z1", f, seed=seed)
    s.truth["subjects"]["enters_Z1"].update(
        zone="Z1", entered=iso(enter_t), left=iso(enter_t + 100 / 1.4 + 1200 + 100 / 1.4)
    )
    # G drives at 25 m/s straight through Z2, crossing it between two fixes.
    a, b = Point(z2.x - 6000, z2.y), Point(z2.x + 6000, z2.y)
    cross_t = s.begin + 2 * HOUR + 30  # mid-way between the fixes at +2 h and +2 h 1 min
    g = _walk(s.begin, a, [(a, cross_t - 6000 / 25.0, Mode.CAR), (b, s.end, Mode.CAR)])
    s.add("transit_Z2", g, seed=seed)
    s.truth["subjects"]["transit_Z2"].update(
        zone="Z2", entered=iso(cross_t - half2 / 25.0), left=iso(cross_t + half2 / 25.0)
    )
    # H sits 30 m outside Z1's east edge, indoors, for three hours: drift, never a breach.
    edge = Point(z1.x + half1 + 30, z1.y)
    h = start(s.begin, edge)
    h.stay(s.end, indoor=True, place="edge")
    tag = s.add("drift_Z1", h, seed=seed)
    entry = s.truth["subjects"]["drift_Z1"]
    entry.update(zone="Z1", truly_inside=False, distance_outside_m=30.0)

    def finish(outs: list[Out]) -> None:
        entry["fixes_reported_inside"] = sum(
            _inside_square(p, z1, half1) for _, p, _ in _reported(outs, tag.serial)
        )

    s.finishers.append(finish)


def curfew(s: Script, seed: int) -> None:
    c = _centre()
    home_i, home_j = Point(c.x - 1500, c.y + 1200), Point(c.x + 1500, c.y + 1200)
    local = datetime.fromtimestamp(s.begin + 2 * HOUR, UTC).astimezone(LONDON)
    s.truth["curfew"] = {
        "radius_m": 75,
        "schedule": [
            {
                "days": [local.strftime("%a").lower()],
                "start": local.strftime("%H:%M"),
                "end": "07:00",
            }
        ],
    }
    curfew_t = s.begin + 2 * HOUR
    away_i = Point(home_i.x + 2000, home_i.y)
    i = _walk(
        s.begin,
        away_i,
        [(away_i, curfew_t + 40 * 60 - 2000 / 1.4, Mode.WALK), (home_i, s.end, Mode.WALK)],
    )
    s.add("late_home", i, seed=seed)
    s.truth["subjects"]["late_home"].update(
        home={"lat": _lonlat(home_i)[1], "lon": _lonlat(home_i)[0]},
        breach_from=iso(curfew_t),
        breach_to=iso(curfew_t + 40 * 60 - 75 / 1.4),
    )
    away_j = Point(home_j.x - 1000, home_j.y)
    j = _walk(
        s.begin,
        away_j,
        [(away_j, curfew_t - 30 * 60 - 1000 / 1.4, Mode.WALK), (home_j, s.end, Mode.WALK)],
    )
    s.add("home_on_time", j, seed=seed)
    s.truth["subjects"]["home_on_time"].update(
        home={"lat": _lonlat(home_j)[1], "lon": _lonlat(home_j)[0]},
        arrived=iso(curfew_t - 1800),
        breach=False,
    )


def coverage_gap(s: Script, seed: int) -> None:
    c = _centre()
    z3, half = Point(c.x + 600, c.y - 1500), 80.0
    s.truth.setdefault("exclusion_zones", {})["Z3"] = _polygon(_square(z3, half))
    gap = (s.begin + 3 * HOUR, s.begin + 3.75 * HOUR)
    north = Point(z3.x, z3.y + 500)
    enter_t = gap[0] + 600
    k = _walk(
        s.begin,
        north,
        [
            (north, enter_t - 420 / 1.4, Mode.WALK),
            (z3, enter_t + 80 / 1.4 + 1200, Mode.WALK),
            (north, s.end, Mode.WALK),
        ],
    )
    s.add("hidden_breach", k, Faults(gaps=[gap]), seed)
    s.truth["subjects"]["hidden_breach"].update(
        zone="Z3",
        entered=iso(enter_t),
        left=iso(enter_t + 80 / 1.4 + 1200 + 80 / 1.4),
        gap_from=iso(gap[0]),
        gap_to=iso(gap[1]),
        uploaded=iso(gap[1]),
    )


def tamper(s: Script, seed: int) -> None:
    c = _centre()
    p = Point(c.x - 2500, c.y - 2000)
    tl = start(s.begin, p)
    tl.stay(s.end, indoor=False, place="home")
    opened, closed = s.begin + 2 * HOUR, s.begin + 2.5 * HOUR
    s.add("strap_tamper", tl, Faults(tampers=[(opened, closed)]), seed)
    s.truth["subjects"]["strap_tamper"].update(strap_open=iso(opened), strap_closed=iso(closed))
    q = Point(c.x - 2600, c.y - 2100)
    tl2 = start(s.begin, q)
    tl2.stay(s.end, indoor=False, place="home")
    silent = s.begin + 4 * HOUR
    s.add("goes_silent", tl2, Faults(silent_from=silent), seed)
    s.truth["subjects"]["goes_silent"]["silent_from"] = iso(silent)


PARTS: dict[str, Callable[[Script, int], None]] = {
    "crime-scene": crime_scene,
    "zone-breach": zone_breach,
    "curfew": curfew,
    "coverage-gap": coverage_gap,
    "tamper": tamper,
}
