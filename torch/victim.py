"""Mobile victim zones: a subject against the moving position of a protected person.

Pure computation in grid metres. For each fix of a linked subject, the protected
person's position at that moment is interpolated between their fixes, or held from their
last fix, but only from fixes at most `stale_s` (2 minutes) from the moment: an older
position does not count, and the fix is then not judged at all.

With d the distance between the two positions and u the two accuracies added, the fix is
**certainly within** a radius when d + u <= radius and **clearly beyond** it when
d - u > radius; in between it changes nothing (GPS scatter at the edge is not a breach).
Like zone breaches, a stage opens after `open_after` consecutive fixes certainly within
its radius (entered at the first of them) and closes after `close_after` consecutive fixes
clearly beyond it. The stages are nested: the warning distance, then the breach distance
inside it; closing the warning closes the breach too.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum
from math import hypot

from torch.breach import Detection


class Stage(StrEnum):
    WARNING = "warning"
    BREACH = "breach"


ALERT_TYPES = {Stage.WARNING: "victim_proximity_warning", Stage.BREACH: "victim_proximity_breach"}


@dataclass(frozen=True, slots=True)
class Link:
    id: int
    subject_id: int
    victim_id: int
    warning_m: float
    breach_m: float
    valid_from: float = float("-inf")  # Unix times: a subject's fixes are judged from
    valid_until: float = float("inf")  # valid_from until valid_until (when it was ended)

    def holds(self, t: float) -> bool:
        return self.valid_from <= t < self.valid_until

    def radius(self, stage: Stage) -> float:
        return self.warning_m if stage is Stage.WARNING else self.breach_m


@dataclass(frozen=True, slots=True)
class Position:
    t: float
    x: float
    y: float
    acc: float


class Positions:
    """A protected person's recent fixes, in time order (those older than `keep_s` behind
    the newest are dropped)."""

    def __init__(self, stale_s: float = 120.0, keep_s: float = 3600.0) -> None:
        self.stale_s = stale_s
        self.keep_s = keep_s
        self._fixes: list[Position] = []

    def add(self, p: Position) -> None:
        i = bisect.bisect_left(self._fixes, p.t, key=_time)
        if i < len(self._fixes) and self._fixes[i].t == p.t:
            self._fixes[i] = p  # the same moment again: the newer report stands
        else:
            self._fixes.insert(i, p)
        del self._fixes[
            : bisect.bisect_left(self._fixes, self._fixes[-1].t - self.keep_s, key=_time)
        ]

    def at(self, t: float) -> Position | None:
        """Where the person was at t, or None when no fix within stale_s says so."""
        i = bisect.bisect_right(self._fixes, t, key=_time)
        before = self._fixes[i - 1] if i > 0 else None
        after = self._fixes[i] if i < len(self._fixes) else None
        if before is not None and before.t == t:
            return before
        near_before = before is not None and t - before.t <= self.stale_s
        near_after = after is not None and after.t - t <= self.stale_s
        if before is not None and after is not None and near_before and near_after:
            u = (t - before.t) / (after.t - before.t)
            return Position(
                t,
                before.x + u * (after.x - before.x),
                before.y + u * (after.y - before.y),
                max(before.acc, after.acc),
            )
        if near_before and before is not None:
            return Position(t, before.x, before.y, before.acc)  # held: at most stale_s old
        if near_after and after is not None:
            return Position(t, after.x, after.y, after.acc)
        return None


def _time(p: Position) -> float:
    return p.t


@dataclass(slots=True)
class Episode:
    stage: Stage
    entered: float
    left: float | None
    closest_m: float
    fixes_inside: int
    detection: Detection = Detection.LIVE


@dataclass(frozen=True, slots=True)
class Change:
    """An episode opened (`opened`) or changed (closed, or closer) by a fix."""

    stage: Stage
    episode: Episode
    opened: bool


@dataclass(slots=True)
class Watch:
    """One link's stages."""

    link: Link
    open_after: int = 2
    close_after: int = 2
    detection: Detection = Detection.LIVE
    open: dict[Stage, Episode] = field(default_factory=dict)
    _within: dict[Stage, list[tuple[float, float]]] = field(default_factory=dict)
    _beyond: dict[Stage, int] = field(default_factory=dict)

    def step(self, t: float, subject: Position, victim: Position) -> list[Change]:
        d = hypot(subject.x - victim.x, subject.y - victim.y)
        u = subject.acc + victim.acc
        changes: list[Change] = []
        for stage in (Stage.WARNING, Stage.BREACH):
            changes += self._stage(stage, t, d, u)
        return changes

    def _stage(self, stage: Stage, t: float, d: float, u: float) -> list[Change]:
        radius = self.link.radius(stage)
        within = self._within.setdefault(stage, [])
        episode = self.open.get(stage)
        if d + u <= radius:
            within.append((t, d))
            self._beyond[stage] = 0
        elif d - u > radius:
            within.clear()
            self._beyond[stage] = self._beyond.get(stage, 0) + 1
        else:
            within.clear()  # uncertain: neither a step in nor a step out
            self._beyond[stage] = 0
        if episode is None:
            if len(within) < self.open_after or not self._allowed(stage):
                return []
            closest = min(x for _, x in within)
            episode = Episode(stage, within[0][0], None, closest, len(within), self.detection)
            self.open[stage] = episode
            within.clear()
            return [Change(stage, episode, True)]
        if d + u <= radius:
            episode.fixes_inside += 1
            if d < episode.closest_m:
                episode.closest_m = d
                return [Change(stage, episode, False)]
            return []
        if self._beyond.get(stage, 0) >= self.close_after or (
            stage is Stage.BREACH and Stage.WARNING not in self.open
        ):
            episode.left = t
            del self.open[stage]
            return [Change(stage, episode, False)]
        return []

    def _allowed(self, stage: Stage) -> bool:
        """A breach opens only within an open warning (the warning radius is the larger)."""
        return stage is Stage.WARNING or Stage.WARNING in self.open
