"""One simulated tag: what it measures, what goes wrong with it, and what it publishes."""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from simulators.routine import LONDON, Subject, day_plan, local_time
from simulators.world import Leg, Mode, Point, Timeline, start

# Rayleigh: 95% of 2-D errors fall within 2.45 sigma, so a fix is within `acc`
# of the truth 95% of the time, as a receiver's accuracy figure promises.
SIGMA_PER_ACC = 1 / 2.45


@dataclass(frozen=True, slots=True)
class Options:
    interval_s: int = 60
    moving_interval_s: int | None = None  # faster fixes while moving
    gap_rate: float = 0.5  # coverage gaps per tag per day
    gap_minutes: tuple[float, float] = (10, 90)
    duplicate_rate: float = 0.01  # share of messages delivered twice
    malformed_rate: float = 0.005  # share of messages garbled
    owntracks_share: float = 0.05  # share of devices that are OwnTracks phones
    silent_share: float = 0.01  # share of tags that go silent at some point
    tamper_rate: float = 0.02  # strap tampers per tag per day
    forget_charge: float = 0.3  # share of nights a subject does not charge the tag
    outlier_rate: float = 0.0  # share of fixes far off the truth (GPS multipath), with noise
    noise: bool = True


@dataclass(frozen=True, slots=True)
class Faults:
    """Scripted faults, in place of random ones: windows are (from, to) in Unix seconds."""

    gaps: list[tuple[float, float]] = field(default_factory=list)  # buffered, uploaded at the end
    tampers: list[tuple[float, float]] = field(default_factory=list)  # strap open
    off: list[tuple[float, float]] = field(default_factory=list)  # no fix at all
    silent_from: float = math.inf  # nothing more is published
    # the fix taken at a time, reported this far (east, north, m) off the truth: an outlier
    spikes: dict[float, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Out:
    """A message to publish at simulated time t."""

    t: float
    tag: int
    seq: int
    topic: str
    payload: str
    kind: str = "fix"  # fix, fixes (a buffered array), event, malformed, duplicate


def serial_of(index: int, owntracks: bool) -> str:
    return f"sim-p{index + 1:05d}" if owntracks else f"HT{index + 1:06d}"


def is_owntracks(index: int, seed: int, opts: Options) -> bool:
    return random.Random(f"{seed}/ot/{index}").random() < opts.owntracks_share


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(slots=True)
class Reading:
    """One fix as measured: the truth, and the position the tag reports."""

    t: float
    truth: Point
    reported: Point
    acc: float
    src: str
    speed: float
    heading: float
    batt: int
    strap: str

    def tag_json(self) -> dict[str, object]:
        lon, lat = self.reported.lonlat()
        return {
            "ts": iso(self.t),
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "acc": round(self.acc, 1),
            "speed": round(self.speed, 1),
            "heading": round(self.heading) % 360,
            "batt": self.batt,
            "src": self.src,
            "strap": self.strap,
        }

    def owntracks_json(self) -> dict[str, object]:
        lon, lat = self.reported.lonlat()
        return {
            "_type": "location",
            "tst": int(self.t),
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "acc": round(self.acc),
            "batt": self.batt,
            "vel": round(self.speed * 3.6),
            "cog": round(self.heading) % 360,
        }


class Tag:
    """Walks a subject's day and yields the messages the tag would publish, in time order."""

    def __init__(
        self,
        subject: Subject,
        seed: int,
        opts: Options,
        begin: float,
        end: float,
        timeline: Timeline | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.s = subject
        self.opts = opts
        self.seed = seed
        self.begin, self.end = begin, end
        self.rng = random.Random(f"{seed}/tag/{subject.index}")
        self.owntracks = is_owntracks(subject.index, seed, opts)
        self.serial = serial_of(subject.index, self.owntracks)
        self.scripted = timeline
        self.battery = 60 + 40 * self.rng.random()
        self.strap = "ok"
        self.on_charger = False
        self.seq = 0
        if faults is None:
            faults = Faults(
                gaps=self._plan(opts.gap_rate, opts.gap_minutes),
                tampers=self._plan(opts.tamper_rate, (5, 30)),
                silent_from=self._silent_from(),
            )
        self.silent_from = faults.silent_from
        self.gaps = Windows(faults.gaps)
        self.tampers = Windows(faults.tampers)
        self.off = Windows(faults.off)
        self.spikes = faults.spikes
        self.outliers = random.Random(f"{seed}/outlier/{subject.index}")  # its own stream
        self.charging = Windows(self._nightly_charge())

    @property
    def topic(self) -> str:
        if self.owntracks:
            return f"owntracks/sim/{self.serial.removeprefix('sim-')}"
        return f"tags/{self.serial}/fixes"

    def _silent_from(self) -> float:
        if self.rng.random() < self.opts.silent_share:
            return self.begin + self.rng.random() * (self.end - self.begin)
        return math.inf

    def _nightly_charge(self) -> list[tuple[float, float]]:
        """22:00 to 23:30 local, on the nights the subject remembers: the tag charges at home.

        Some forget (`forget_charge`), so batteries run low and tags go flat, as real ones do.
        """
        windows = []
        forgetful = random.Random(f"{self.seed}/charge/{self.s.index}")
        day = datetime.fromtimestamp(self.begin, UTC).astimezone(LONDON) - timedelta(days=1)
        while (start_t := local_time(day, 22)) < self.end:
            if forgetful.random() >= self.opts.forget_charge:
                windows.append((start_t, local_time(day, 23.5)))
            day = (day + timedelta(days=1)).replace(hour=12)
        return windows

    def _plan(self, per_day: float, minutes: tuple[float, float]) -> list[tuple[float, float]]:
        """Random windows at `per_day` a day on average, each `minutes` long."""
        windows = []
        t = self.begin
        while per_day > 0:
            t += self.rng.expovariate(per_day / 86400)
            if t >= self.end:
                break
            windows.append((t, t + self.rng.uniform(*minutes) * 60))
            t = windows[-1][1]
        return windows

    # -- the walk ----------------------------------------------------------

    def messages(self) -> Iterator[Out]:
        tl = self.scripted or start(self.begin, self.s.home)
        buffered: list[Reading] = []
        t = self.begin
        while t < self.end and t < self.silent_from:
            if self.scripted is None and t >= tl.end:
                tl = self._next_day(tl)
                continue
            leg = tl.leg_at(t)
            before = self.battery
            self._drain(t, leg)
            yield from self._events(t, leg, before)
            reading = self._measure(t, leg)
            gap = self.gaps.at(t)
            if reading is not None:
                if gap is not None:
                    buffered.append(reading)
                else:
                    yield from self._publish([reading], t)
            if buffered and (gap is None or t + self._step(leg) >= gap[1]):
                upload = gap[1] if gap is not None else t
                yield from self._publish(buffered, min(upload, self.end))
                buffered = []
            t += self._step(leg)
        if buffered and self.end <= self.silent_from:
            yield from self._publish(buffered, self.end)

    def _next_day(self, tl: Timeline) -> Timeline:
        fresh = start(tl.end, tl.here)
        day = datetime.fromtimestamp(tl.end + 1, UTC).astimezone(LONDON)
        day_plan(fresh, self.s, day, self.seed)
        return fresh

    def _step(self, leg: Leg) -> int:
        moving = leg.mode is not Mode.STAY
        return (
            self.opts.moving_interval_s
            if moving and self.opts.moving_interval_s
            else self.opts.interval_s
        )

    def _measure(self, t: float, leg: Leg) -> Reading | None:
        """The fix the tag takes at t, or None when it gets none (indoors, or a flat battery)."""
        rng = self.rng
        if self.battery <= 0 or self.off.at(t) is not None:
            return None
        if leg.indoor:
            roll = rng.random()
            if roll < 0.12:
                return None
            src, acc = (
                ("wifi", rng.uniform(25, 80)) if roll < 0.35 else ("gps", rng.uniform(20, 60))
            )
        else:
            src, acc = "gps", rng.uniform(4, 15)
        truth = leg.at(t)
        sigma = acc * SIGMA_PER_ACC if self.opts.noise else 0.0
        reported = Point(truth.x + rng.gauss(0, sigma), truth.y + rng.gauss(0, sigma))
        off = self.spikes.get(t) or self._outlier()
        if off is not None:
            reported = Point(reported.x + off[0], reported.y + off[1])
        heading = math.degrees(math.atan2(leg.b.x - leg.a.x, leg.b.y - leg.a.y)) % 360
        strap = "open" if self.tampers.at(t) else "ok"
        return Reading(t, truth, reported, acc, src, leg.speed, heading, int(self.battery), strap)

    def _outlier(self) -> tuple[float, float] | None:
        """Now and then (`outlier_rate`) a fix 300 m to 3 km off the truth, whatever its
        stated accuracy says, as reflected signals put them; only with noise on."""
        rate = self.opts.outlier_rate if self.opts.noise else 0.0
        if not rate or self.outliers.random() >= rate:
            return None
        d, bearing = self.outliers.uniform(300, 3000), self.outliers.uniform(0, 2 * math.pi)
        return d * math.sin(bearing), d * math.cos(bearing)

    def _drain(self, t: float, leg: Leg) -> None:
        per_hour = 1.0 if leg.mode is Mode.STAY else 2.5
        if self._charging(t, leg):
            per_hour = -40.0
        self.battery = min(100.0, max(0.0, self.battery - per_hour * self.opts.interval_s / 3600))

    def _charging(self, t: float, leg: Leg) -> bool:
        return leg.place == "home" and self.charging.at(t) is not None

    def _events(self, t: float, leg: Leg, battery_before: float) -> Iterator[Out]:
        if self.owntracks:
            return
        charging, was_charging = self._charging(t, leg), self.on_charger
        self.on_charger = charging
        tamper = self.tampers.at(t) is not None
        if tamper != (self.strap == "open"):
            self.strap = "open" if tamper else "ok"
            yield self._event(t, "strap_open" if tamper else "strap_closed")
        if charging != was_charging:
            yield self._event(t, "charger_on" if charging else "charger_off")
        if battery_before >= 15 > self.battery:
            yield self._event(t, "battery_low")

    def _event(self, t: float, kind: str) -> Out:
        self.seq += 1
        return Out(
            t,
            self.s.index,
            self.seq,
            f"tags/{self.serial}/events",
            dumps({"ts": iso(t), "type": kind}),
            "event",
        )

    def _publish(self, readings: list[Reading], at: float) -> Iterator[Out]:
        if self.owntracks:
            bodies = [(dumps(r.owntracks_json()), "fix") for r in readings]
        elif len(readings) == 1:
            bodies = [(dumps(readings[0].tag_json()), "fix")]
        else:
            bodies = [(dumps([r.tag_json() for r in readings]), "fixes")]
        for payload, kind in bodies:
            self.seq += 1
            if self.rng.random() < self.opts.malformed_rate:
                yield Out(
                    at, self.s.index, self.seq, self.topic, self._garble(payload, at), "malformed"
                )
                continue
            yield Out(at, self.s.index, self.seq, self.topic, payload, kind)
            if self.rng.random() < self.opts.duplicate_rate:
                self.seq += 1
                yield Out(
                    at + self.rng.uniform(1, 30),
                    self.s.index,
                    self.seq,
                    self.topic,
                    payload,
                    "duplicate",
                )

    def _garble(self, payload: str, at: float) -> str:
        """A broken version of a message, of the kinds real fleets send."""
        kind = self.rng.randrange(4)
        if kind == 0:
            return payload[: len(payload) // 2]  # cut short: not JSON
        body = json.loads(payload)
        item = body[0] if isinstance(body, list) else body
        if kind == 1:
            item.pop("lat")
        elif kind == 2:
            item["lat"] = 95.0
        else:
            future = iso(at + 3600)
            if "tst" in item:
                item["tst"] = int(at + 3600)
            else:
                item["ts"] = future
        return dumps(body)


class Windows:
    """Sorted, non-overlapping time windows."""

    def __init__(self, windows: list[tuple[float, float]]) -> None:
        self._windows = windows
        self._starts = [w[0] for w in windows]

    def at(self, t: float) -> tuple[float, float] | None:
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self._windows[i][1]:
            return self._windows[i]
        return None
