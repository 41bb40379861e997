"""The ingest worker's mobile victim zones: each linked subject's fixes against where the
protected person is at the same moment (torch.victim), batch by batch, each subject's in
time order.

A protected person's fixes are kept in memory for an hour (and taken from the database at
start); links are reloaded when they change, with the zones. Episodes left open by an
earlier run are taken up, so that a restart raises no second alert for them.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace

import asyncpg

from ingest.tracks import SubjectOf, subject_tracks
from torch import grid
from torch.intake import Batch
from torch.store import victims as store
from torch.victim import Episode, Link, Position, Positions, Stage, Watch

log = logging.getLogger("torch.ingest.victims")


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
    mark: tuple[object, ...] | None = None

    async def reload(self, conn: asyncpg.Connection) -> None:
        mark = await store.links_mark(conn)
        if mark == self.mark:
            return
        links_of: dict[int, list[Link]] = defaultdict(list)
        for link in await store.live_links(conn):
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
                stage, r["entered"], None, r["closest_m"], r["fixes_inside"]
            )
            self.episode_ids[r["link_id"], stage] = r["id"]

    async def check(self, conn: asyncpg.Connection, batch: Batch, subject_of: SubjectOf) -> int:
        if batch.victim_fixes:
            vf = batch.victim_fixes
            xs, ys = grid.fix_positions([f.fix.lon for f in vf], [f.fix.lat for f in vf])
            for v, x, y in zip(vf, xs, ys, strict=True):
                acc = self.default_acc_m if v.fix.acc is None else v.fix.acc
                self.positions[v.victim_id].add(Position(v.fix.ts.timestamp(), x, y, acc))
        found: list[store.Found] = []
        for subject_id, track in subject_tracks(batch, subject_of, self.links_of).items():
            for f in track:
                here = Position(f.t, f.x, f.y, self.default_acc_m if f.acc is None else f.acc)
                found += self._step(subject_id, here)
        return await store.record(conn, found) if found else 0

    def _step(self, subject_id: int, here: Position) -> list[store.Found]:
        """A subject's fix against each protected person they are linked to."""
        found: list[store.Found] = []
        for link in self.links_of[subject_id]:
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
