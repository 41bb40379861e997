"""The ingest worker's mobile victim zones: each linked subject's fixes against where the
protected person is at the same moment (torch.victim), batch by batch, each subject's in
time order.

A protected person's fixes are kept in memory for an hour (and taken from the database at
start); links are reloaded when they change, with the zones. Episodes left open by an
earlier run are taken up, so that a restart raises no second alert for them.

Late data is checked again, as zones' is. A subject's fix older than the last one checked,
or a protected person's fix received more than LATE_AFTER_S after its time (a phone that
was out of signal, or that sends its fixes in bursts), may change what the fixes around it
show: the link's stored fixes around them, both people's, are checked again from scratch,
and any episode found there that is not stored yet is raised with `detection: late`. An
episode still open at the end of the stored fixes is left to the live check.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from ingest.tracks import SubjectOf, corrects, late_span, reach_back, subject_tracks
from torch import grid
from torch.breach import Detection, Fix
from torch.intake import Batch
from torch.store import breaches
from torch.store import victims as store
from torch.victim import Episode, Link, Position, Positions, Stage, Watch

log = logging.getLogger("torch.ingest.victims")

LATE_AFTER_S = 10.0  # a protected person's fix received later than this after its time is late

Span = tuple[float, float]  # Unix times


@dataclass(slots=True)
class VictimGuard:
    open_after: int = 2
    close_after: int = 2
    default_acc_m: float = 20.0
    links_of: dict[int, list[Link]] = field(default_factory=dict)  # by subject
    refs: dict[int, str] = field(default_factory=dict)  # victims' references
    positions: dict[int, Positions] = field(default_factory=lambda: defaultdict(Positions))
    watches: dict[int, Watch] = field(default_factory=dict)  # by link
    episode_ids: dict[tuple[int, Stage], uuid.UUID] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)  # last fix checked, by subject
    mark: tuple[object, ...] | None = None

    async def reload(self, conn: asyncpg.Connection) -> None:
        mark = await store.links_mark(conn)
        if mark == self.mark:
            return
        links_of: dict[int, list[Link]] = defaultdict(list)
        for link in await store.all_links(conn):
            links_of[link.subject_id].append(link)
            self.watches.setdefault(link.id, Watch(link, self.open_after, self.close_after))
        self.links_of, self.mark = dict(links_of), mark
        self.refs = await store.refs(conn)
        log.info("victim links loaded: %d", sum(len(v) for v in links_of.values()))

    async def prime(self, conn: asyncpg.Connection) -> None:
        await self.reload(conn)
        for victim_id, p in await store.recent(conn, 3600):
            self.positions[victim_id].add(p)
        for r in await store.open_episodes(conn):
            watch = self.watches.get(r["link_id"])
            if watch is None:
                continue
            stage = Stage(r["stage"])
            watch.open[stage] = Episode(
                stage,
                r["entered"],
                None,
                r["closest_m"],
                r["fixes_inside"],
                Detection(r["detection"]),
            )
            self.episode_ids[r["link_id"], stage] = r["id"]

    async def check(self, conn: asyncpg.Connection, batch: Batch, subject_of: SubjectOf) -> int:
        """Check a committed batch: the protected persons' fixes join their positions, and
        each linked subject's fixes are judged against them; late ones of either are
        checked again from the stored fixes. Returns alerts raised."""
        by_id = {link.id: link for links in self.links_of.values() for link in links}
        again: dict[int, Span] = {}  # by link
        for victim_id, span in self._take_positions(batch).items():
            for link in by_id.values():
                if link.victim_id == victim_id:
                    _widen(again, link.id, span)
        found: list[store.Found] = []
        for subject_id, track in subject_tracks(batch, subject_of, self.links_of).items():
            last = self.last.get(subject_id)
            live = [f for f in track if last is None or f.t > last]
            late = [f for f in track if last is not None and f.t < last]
            for f in live:
                found += self._step(subject_id, self._here(f))
            if live:
                self.last[subject_id] = live[-1].t
            if late:
                for link in self.links_of[subject_id]:
                    _widen(again, link.id, (late[0].t, late[-1].t))
        for link_id, (lo, hi) in again.items():
            found += await self._again(conn, by_id[link_id], lo, hi)
        return await store.record(conn, found) if found else 0

    def _take_positions(self, batch: Batch) -> dict[int, Span]:
        """Add the batch's protected-person fixes to their positions; returns, by person,
        the span of their late ones, widened by how long a position holds."""
        late: dict[int, Span] = {}
        vf = batch.victim_fixes
        if not vf:
            return late
        xs, ys = grid.fix_positions([f.fix.lon for f in vf], [f.fix.lat for f in vf])
        for v, x, y in zip(vf, xs, ys, strict=True):
            acc = self.default_acc_m if v.fix.acc is None else v.fix.acc
            positions = self.positions[v.victim_id]
            t = v.fix.ts.timestamp()
            positions.add(Position(t, x, y, acc))
            if (v.received_at - v.fix.ts).total_seconds() > LATE_AFTER_S:
                _widen(late, v.victim_id, (t - positions.stale_s, t + positions.stale_s))
        return late

    def _here(self, f: Fix) -> Position:
        return Position(f.t, f.x, f.y, self.default_acc_m if f.acc is None else f.acc)

    async def recheck(self, conn: asyncpg.Connection, subject_id: int, lo: float, hi: float) -> int:
        """Check the subject's stored fixes in [lo, hi] (Unix times) against each protected
        person they are linked to, again (an assignment recorded after the tag was fitted);
        returns alerts raised."""
        found: list[store.Found] = []
        for link in self.links_of.get(subject_id, ()):
            found += await self._again(conn, link, lo, hi)
        return await store.record(conn, found) if found else 0

    async def _again(
        self, conn: asyncpg.Connection, link: Link, lo: float, hi: float
    ) -> list[store.Found]:
        """The link's episodes around [lo, hi] (Unix times), judged from scratch on both
        people's stored fixes, that have ended, overlap it, and are not stored yet or
        correct one stored by an earlier late check (ingest.tracks.corrects)."""
        start, end = late_span(lo, hi)
        start = reach_back(start, await store.earliest_entered(conn, link.id, start, end))
        positions = Positions(keep_s=math.inf)
        held = timedelta(seconds=positions.stale_s)
        for p in await store.track(conn, link.victim_id, start - held, end + held):
            positions.add(p)
        watch = Watch(link, self.open_after, self.close_after, Detection.LATE)
        ended: list[Episode] = []
        for f in await breaches.subject_track(conn, link.subject_id, start, end):
            there = positions.at(f.t) if link.holds(f.t) else None
            if there is not None:
                changes = watch.step(f.t, self._here(f), there)
                ended += [c.episode for c in changes if c.episode.left is not None]
        out: list[store.Found] = []
        ref = self.refs.get(link.victim_id, "")
        for e in ended:
            assert e.left is not None
            if not (lo <= e.left and e.entered <= hi):
                continue  # only what the late fixes change
            same = await store.overlapping(conn, link.id, e.stage, _at(e.entered), _at(e.left))
            if not same:
                out.append(store.Found(uuid.uuid4(), link, ref, e, opened=True))
            elif len(same) == 1 and corrects(same[0], e.entered, e.left):
                out.append(store.Found(same[0].id, link, ref, e, opened=False))
        return out

    def _step(self, subject_id: int, here: Position) -> list[store.Found]:
        """A subject's fix against each protected person they are linked to."""
        found: list[store.Found] = []
        for link in self.links_of[subject_id]:
            if not link.holds(here.t):
                continue  # the subject was not kept away from the person then
            there = self.positions[link.victim_id].at(here.t)
            if there is None:
                continue  # no position of the protected person within 2 minutes
            for change in self.watches[link.id].step(here.t, here, there):
                key = (link.id, change.stage)
                episode_id = self.episode_ids.setdefault(key, uuid.uuid4())
                if change.episode.left is not None:
                    del self.episode_ids[key]
                ref = self.refs.get(link.victim_id, "")
                now = replace(change.episode)  # as it stands after this fix
                found.append(store.Found(episode_id, link, ref, now, change.opened))
        return found


def _widen(spans: dict[int, Span], key: int, span: Span) -> None:
    lo, hi = spans.get(key, span)
    spans[key] = (min(lo, span[0]), max(hi, span[1]))


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
