"""The ingest worker's zone checks: every stored fix against its subject's zones.

Fixes newer than the last one checked for their subject go through the subject's
watches (torch.breach) in time order. A fix older than that is late: the subject's
stored fixes around it are checked again from scratch, against the zone versions
current at their times, and any episode found that is not stored yet is raised
with `detection: late`. Zones and assignments are reloaded when they change
(checked every second), so an edit takes effect without a restart.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ingest.tracks import corrects, late_span, reach_back, subject_tracks
from ingest.victims import VictimGuard
from torch.breach import Detection, Episode, EpisodeKind, Event, Fix, Rules, Watch
from torch.intake import Batch
from torch.store import breaches, registry
from torch.store import zones as zone_store
from torch.zones import ZoneVersion

log = logging.getLogger("torch.ingest.zones")

UNCHECKED_S = 1e-3  # below the newest fix stored before a restart: it may not have been checked


@dataclass(slots=True)
class Assignment:
    subject_id: int
    start: datetime
    end: datetime | None


# device events that raise an alert, with its type and severity
DEVICE_EVENTS = {
    "strap_open": ("strap_tamper", "critical"),
    "shell_open": ("shell_open", "critical"),
    "battery_low": ("battery_low", "medium"),
}


@dataclass(slots=True)
class Guard:
    rules: Rules
    battery_low_pct: int = 15
    zone_mark: tuple[Any, ...] | None = None
    assignment_mark: tuple[Any, ...] | None = None
    versions: dict[int, list[ZoneVersion]] = field(default_factory=dict)  # by zone
    zones_of: dict[int, list[int]] = field(default_factory=dict)  # zone ids by subject
    worn: dict[int, list[Assignment]] = field(default_factory=dict)  # by device
    refs: dict[int, str] = field(default_factory=dict)
    watches: dict[tuple[int, int], Watch] = field(default_factory=dict)
    episode_ids: dict[tuple[int, int], uuid.UUID] = field(default_factory=dict)
    # the transits last raised for each (subject, zone), which the next fix may put in doubt
    transit_ids: dict[tuple[int, int], list[tuple[Episode, uuid.UUID]]] = field(
        default_factory=dict
    )
    last: dict[int, float] = field(default_factory=dict)  # last fix checked, by subject
    primed: bool = False
    victims: VictimGuard = field(default_factory=lambda: VictimGuard())
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.victims.open_after = self.rules.open_after
        self.victims.close_after = self.rules.close_after
        self.victims.default_acc_m = self.rules.default_acc_m

    async def reload(self, conn: asyncpg.Connection) -> None:
        """Take up zone and assignment changes; cheap when there are none."""
        if self.primed:
            await self._take_up(conn)
        else:
            await self._prime(conn)  # which takes them up

    async def _take_up(self, conn: asyncpg.Connection) -> None:
        mark = await zone_store.mark(conn)
        if mark != self.zone_mark:
            snap = await zone_store.snapshot(conn)
            versions: dict[int, list[ZoneVersion]] = defaultdict(list)
            zones_of: dict[int, list[int]] = defaultdict(list)
            for v in snap.versions:
                versions[v.zone_id].append(v)
            for zone_id, vs in versions.items():
                zones_of[vs[0].subject_id].append(zone_id)
            self.versions, self.zones_of, self.zone_mark = dict(versions), dict(zones_of), snap.mark
            log.info("zones loaded: %d zones, %d versions", len(versions), len(snap.versions))
        mark = await registry.assignments_mark(conn)
        await self.victims.reload(conn)
        if mark != self.assignment_mark:
            worn: dict[int, list[Assignment]] = defaultdict(list)
            for a in await registry.all_assignments(conn):
                worn[a.device_id].append(Assignment(a.subject_id, a.start, a.end))
                self.refs[a.subject_id] = a.subject_ref
            self.worn, self.assignment_mark = dict(worn), mark

    async def _prime(self, conn: asyncpg.Connection) -> None:
        """Take up the episodes left open by an earlier run, and each watched subject's
        newest stored fix: a fix older than that, in the first batches after a restart, is
        late (checked with the stored track around it), not the next of a fresh watch."""
        for r in await breaches.open_episodes(conn):
            key = (r["subject_id"], r["zone_id"])
            w = Watch(self.rules)
            w.open = Episode(
                r["zone_id"],
                r["version"],
                EpisodeKind(r["kind"]),
                float(r["entered"]),
                None,
                r["deepest_m"],
                r["fixes_inside"],
                Detection(r["detection"]),
            )
            self.watches[key] = w
            self.episode_ids[key] = r["id"]
        await self.victims.prime(conn)
        await self._take_up(conn)
        # The newest fix stored before this run counts as not yet checked (a crash may have
        # come between storing and checking it): a fix delivered again at that time is live.
        watched = sorted(set(self.zones_of) | set(self.victims.links_of))
        newest = await breaches.last_fix_times(conn, watched, self.started)
        self.last = {subject_id: t - UNCHECKED_S for subject_id, t in newest.items()}
        self.victims.last = dict(self.last)
        self.primed = True

    def _subject(self, device_id: int, t: datetime) -> int | None:
        for a in self.worn.get(device_id, ()):
            if a.start <= t and (a.end is None or t < a.end):
                return a.subject_id
        return None

    def _version(self, zone_id: int, t: float) -> ZoneVersion | None:
        when = datetime.fromtimestamp(t, UTC)
        for v in self.versions.get(zone_id, ()):
            if v.current_at(when):
                return v
        return None

    def concerns(self, batch: Batch) -> bool:
        """Whether the batch has anything to check: events, a low battery, or a fix of a
        subject with zones. Most batches of most fleets have none, and cost no query."""
        if batch.events or batch.victim_fixes:
            return True
        low = self.battery_low_pct
        for s in batch.fixes:
            if s.fix.batt is not None and s.fix.batt <= low:
                return True
            subject_id = self._subject(s.device_id, s.fix.ts)
            if subject_id is not None and (
                subject_id in self.zones_of or subject_id in self.victims.links_of
            ):
                return True
        return False

    async def check(self, conn: asyncpg.Connection, batch: Batch) -> int:
        """Check a committed batch's fixes and events; store what they found. Returns alerts
        raised."""
        raised = await breaches.raise_device_alerts(conn, self._device_alerts(batch))
        by_subject = self._tracks(batch)
        found: list[breaches.Found] = []
        for subject_id, fixes in by_subject.items():
            last = self.last.get(subject_id)
            live = [f for f in fixes if last is None or f.t > last]
            late = [f for f in fixes if last is not None and f.t < last]
            for f in live:
                for zone_id in self.zones_of.get(subject_id, ()):
                    found += self._found(
                        subject_id,
                        zone_id,
                        self._watch(subject_id, zone_id).step(f, self._version(zone_id, f.t)),
                    )
            if live:
                self.last[subject_id] = live[-1].t
            if late:
                found += await self._late(conn, subject_id, late)
        raised += await self.victims.check(conn, batch, self._subject)
        return raised + (await breaches.record(conn, found) if found else 0)

    def _device_alerts(self, batch: Batch) -> list[breaches.DeviceAlert]:
        out = []
        for e in batch.events:
            kind = DEVICE_EVENTS.get(e.event.type.value)
            if kind is not None:
                out.append(
                    breaches.DeviceAlert(
                        e.device_id, kind[0], kind[1], e.event.ts, {"event": e.event.type.value}
                    )
                )
        for s in batch.fixes:
            if s.fix.batt is not None and s.fix.batt <= self.battery_low_pct:
                out.append(
                    breaches.DeviceAlert(
                        s.device_id, "battery_low", "medium", s.fix.ts, {"battery": s.fix.batt}
                    )
                )
        return out

    def _tracks(self, batch: Batch) -> dict[int, list[Fix]]:
        """The batch's fixes by subject with zones, on the grid, in time order."""
        return subject_tracks(batch, self._subject, self.zones_of)

    def _watch(self, subject_id: int, zone_id: int) -> Watch:
        key = (subject_id, zone_id)
        w = self.watches.get(key)
        if w is None:
            w = self.watches[key] = Watch(self.rules)
        return w

    def _found(
        self, subject_id: int, zone_id: int, events: Iterable[Event]
    ) -> list[breaches.Found]:
        """What a fix's events change: episodes opened or closed, and the open one's depth
        and count of fixes inside."""
        key = (subject_id, zone_id)
        out: list[breaches.Found] = []
        fresh: list[tuple[Episode, uuid.UUID]] = []
        for e in events:
            if e.episode.kind is EpisodeKind.TRANSIT:
                if e.doubted:  # raised already: its record and alert say why it may be false
                    ids = [i for ep, i in self.transit_ids.get(key, ()) if ep is e.episode]
                    out += [self._record(i, subject_id, e.episode, opened=False) for i in ids]
                elif not e.closed:  # it opens and closes at once: one record
                    fresh.append((e.episode, uuid.uuid4()))
                    out.append(self._record(fresh[-1][1], subject_id, e.episode, opened=True))
            elif not e.closed:
                self.episode_ids[key] = uuid.uuid4()
                out.append(self._record(self.episode_ids[key], subject_id, e.episode, True))
            else:
                known = self.episode_ids.pop(key, None)
                out.append(
                    self._record(known or uuid.uuid4(), subject_id, e.episode, known is None)
                )
        if fresh:
            self.transit_ids[key] = fresh
        w, open_id = self.watches.get(key), self.episode_ids.get(key)
        still_open = w is not None and w.open is not None and open_id is not None
        if still_open and all(f.id != open_id for f in out):
            assert w is not None and w.open is not None and open_id is not None
            out.append(self._record(open_id, subject_id, w.open, opened=False))
        return out

    def _record(
        self, episode_id: uuid.UUID, subject_id: int, e: Episode, opened: bool
    ) -> breaches.Found:
        label = self.versions[e.zone_id][e.version - 1].label
        ref = self.refs.get(subject_id, str(subject_id))
        return breaches.Found(episode_id, subject_id, ref, label, e, opened)

    async def recheck(self, conn: asyncpg.Connection) -> int:
        """Check again the spans of stored fixes queued for it (an assignment recorded after
        the tag was fitted), against zones and protected persons; returns alerts raised."""
        if not self.primed:
            return 0
        await self.reload(conn)
        found: list[breaches.Found] = []
        raised = 0
        for r in await breaches.take_rechecks(conn):
            lo, hi = r.start.timestamp(), r.end.timestamp()
            if r.subject_id in self.zones_of:
                found += await self._again(conn, r.subject_id, lo, hi)
            raised += await self.victims.recheck(conn, r.subject_id, lo, hi)
        return raised + (await breaches.record(conn, found) if found else 0)

    async def _late(
        self, conn: asyncpg.Connection, subject_id: int, late: list[Fix]
    ) -> list[breaches.Found]:
        """Check the subject's stored track around late fixes again, from scratch."""
        return await self._again(conn, subject_id, late[0].t, late[-1].t)

    async def _again(
        self, conn: asyncpg.Connection, subject_id: int, lo: float, hi: float
    ) -> list[breaches.Found]:
        """The episodes of the subject's stored track around [lo, hi] (Unix times), checked
        from scratch, that overlap it, and are not stored yet or correct one stored by an
        earlier late check (ingest.tracks.corrects)."""
        start, end = late_span(lo, hi)
        start = reach_back(start, await breaches.earliest_entered(conn, subject_id, start, end))
        track = await breaches.subject_track(conn, subject_id, start, end)
        out: list[breaches.Found] = []
        for zone_id in self.zones_of.get(subject_id, ()):
            w = Watch(self.rules, detection=Detection.LATE)
            episodes: list[Episode] = []
            for f in track:
                events = w.step(f, self._version(zone_id, f.t))
                episodes += [e.episode for e in events if e.closed and not e.doubted]
            for e in episodes:
                if e.left is None or not (lo <= e.left and e.entered <= hi):
                    continue  # only what the late fixes change
                entered = datetime.fromtimestamp(e.entered, UTC)
                left = datetime.fromtimestamp(e.left, UTC)
                same = await breaches.overlapping(conn, subject_id, zone_id, entered, left)
                if not same:
                    out.append(self._record(uuid.uuid4(), subject_id, e, opened=True))
                elif len(same) == 1 and corrects(same[0], e.entered, e.left):
                    out.append(self._record(same[0].id, subject_id, e, opened=False))
        return out
