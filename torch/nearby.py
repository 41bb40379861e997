"""Who was near a scene at a time: a verdict for every subject who wore a device then.

The verdicts are those of `torch.proximity.assess` on each subject's fixes.
Most subjects' tracks cover the window and pass far from the scene; for them
the track tiles give the closest approach without reading a fix
(torch.approach). Every other subject (near the scene, with a gap, or with
tiles not yet up to date) is assessed in full, on the exact fixes of their tiles
where these are up to date, else on their fixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import asyncpg
import numpy as np

from torch import approach
from torch.proximity import (
    Assessment,
    Far,
    Params,
    Scene,
    Track,
    TrackFix,
    assess,
    far_and_covered,
)
from torch.store import proximity as store
from torch.store import tiles

# Settings for the sessions that run these queries: the plans are many small steps
# that JIT compilation and parallel workers only slow down, and the sorts of a
# 24-hour window want more than the default 4 MB.
SESSION = {
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    "random_page_cost": "1.1",
    "work_mem": "64MB",
}


class SubjectVerdict(NamedTuple):
    subject_id: int
    ref: str
    assessment: Assessment


@dataclass(frozen=True, slots=True)
class Answer:
    """Every wearer's verdict: most of them (`far`, by index in `who`) settled by their
    closest approach alone and kept as arrays, the others (`near`) assessed in full."""

    who: store.Wearers  # by subject id
    far: Far
    near: dict[int, Assessment]  # by index in `who`

    def verdicts(self) -> list[SubjectVerdict]:
        """Every wearer's verdict, by subject id."""
        found = self.near | dict(zip(self.far.which.tolist(), self.far.assessments(), strict=True))
        return [SubjectVerdict(w.subject_id, w.ref, found[k]) for k, w in enumerate(self.who)]


async def verdicts(
    conn: asyncpg.Connection,
    scene: Scene,
    p: Params,
    spare: asyncpg.Connection | None = None,
) -> list[SubjectVerdict]:
    """Every wearer's verdict, by subject id (`answer`)."""
    return (await answer(conn, scene, p, spare)).verdicts()


async def answer(
    conn: asyncpg.Connection,
    scene: Scene,
    p: Params,
    spare: asyncpg.Connection | None = None,
    helper: asyncpg.Connection | None = None,
) -> Answer:
    """Every wearer's verdict. The reads share one snapshot, so that the tiles, the
    blocks and the fixes agree: a transaction of their own, repeatable read; a caller
    already in a transaction must have made it so. With a `spare` connection, the
    largest reads are split between the two (it joins the same snapshot); with a `helper`
    as well, it asks who wore a device while the other two read."""
    if conn.is_in_transaction():
        return await _answer(conn, None, None, scene, p)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if spare is None:
            return await _answer(conn, None, None, scene, p)
        snapshot = await store.export_snapshot(conn)
        async with _sharing([spare] if helper is None else [spare, helper], snapshot):
            return await _answer(conn, spare, helper, scene, p)


@contextlib.asynccontextmanager
async def _sharing(others: Sequence[asyncpg.Connection], snapshot: str) -> AsyncIterator[None]:
    """The other connections in transactions that see `snapshot`, begun and ended on all
    of them at once: two round trips in all, where one after the other took six."""
    try:
        begun = await asyncio.gather(
            *(store.begin_in_snapshot(c, snapshot) for c in others), return_exceptions=True
        )
        for outcome in begun:
            if isinstance(outcome, BaseException):
                raise outcome
        yield
    finally:
        # read only: rolled back, as committed, they leave nothing. Where a read failed, an
        # error here (a connection still busy) must not hide that one.
        await asyncio.gather(
            *(c.execute("ROLLBACK") for c in others if c.is_in_transaction()),
            return_exceptions=True,
        )


async def _answer(
    conn: asyncpg.Connection,
    spare: asyncpg.Connection | None,
    helper: asyncpg.Connection | None,
    scene: Scene,
    p: Params,
) -> Answer:
    start = datetime.fromtimestamp(scene.start, UTC)
    end = datetime.fromtimestamp(scene.end, UTC)
    plan = approach.plan(scene.start, scene.end, p.max_gap_s, time.time())
    inner = (plan.inner_from, plan.inner_to)

    async def wearers(c: asyncpg.Connection) -> store.Wearers:
        return await store.wearers(c, start, end, p.max_gap_s, inner, plan.live_hour)

    # who wore a device is asked on one connection (the helper, where there is one) while
    # the others read their share
    who, read = await _read(conn, spare, plan, wearers, helper)
    n = await closest_from_tiles(conn, who, scene, plan, read, spare)
    far = far_and_covered(n.distance, n.t, n.x, n.y, n.acc_a, n.acc_b, scene, p)
    far = replace(far, which=n.subject[far.which])  # by index in `who`
    unsettled = np.ones(len(who), bool)
    unsettled[far.which] = False
    rest = np.flatnonzero(unsettled).tolist()
    index = {who[k].subject_id: k for k in rest}
    near = {
        index[t.subject_id]: assess(t.track, scene, p)
        for t in await _tracks(conn, [who[k] for k in rest], scene, plan)
    }
    await _reported(conn, [SubjectVerdict(who[k].subject_id, who[k].ref, near[k]) for k in rest])
    return Answer(who, far, near)


class Fixes(NamedTuple):
    """A subject's fixes to assess in full: as arrays where read from tiles."""

    subject_id: int
    ref: str
    track: Track | list[TrackFix]


async def _tracks(
    conn: asyncpg.Connection, rest: Sequence[store.Wearer], scene: Scene, plan: approach.Plan
) -> list[Fixes]:
    """The fixes of the subjects to assess in full: from their tiles where these are up to
    date (packed together, where the fixes lie scattered over the table), with the hours not
    tiled yet and every other subject's from the fixes. Tiles hold positions in grid metres
    only: their fixes' latitude and longitude are NaN until `_reported`."""
    if not rest:
        return []
    start = datetime.fromtimestamp(scene.start, UTC)
    end = datetime.fromtimestamp(scene.end, UTC)
    tiled = {w.subject_id: w.ref for w in rest if w.tiled}
    loose = [w.subject_id for w in rest if not w.tiled]
    out = [
        Fixes(t.subject_id, t.ref, t.fixes)
        for t in (await store.tracks(conn, start, end, plan.max_gap_s, loose) if loose else [])
    ]
    if not tiled:
        return out
    lo, hi = plan.reach()
    packed = await store.tile_tracks(conn, list(tiled), lo, hi)
    live: dict[int, list[TrackFix]] = {}
    if plan.live_hour <= hi:
        at = datetime.fromtimestamp(plan.live_hour, UTC)
        for t in await store.tracks(conn, at, max(end, at), plan.max_gap_s, list(tiled)):
            live[t.subject_id] = [f for f in t.fixes if f.t >= plan.live_hour]
    for subject_id, ref in tiled.items():
        rows = approach.fix_rows(packed.get(subject_id, b""))
        rows = rows[(rows[:, 0] >= lo) & (rows[:, 0] <= hi) & (rows[:, 0] < plan.live_hour)]
        nan = np.full(len(rows), np.nan)
        tiles = Track(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], nan, nan)
        track = _joined(tiles, Track.of(live[subject_id])) if subject_id in live else tiles
        out.append(Fixes(subject_id, ref, track))
    return out


def _joined(a: Track, b: Track) -> Track:
    def both(name: str) -> np.ndarray:
        return np.concatenate([getattr(a, name), getattr(b, name)])

    return Track(both("t"), both("x"), both("y"), both("acc"), both("lat"), both("lon"))


async def _reported(conn: asyncpg.Connection, judged: Sequence[SubjectVerdict]) -> None:
    """Put the reported latitude and longitude into the evidence fixes read from tiles."""
    wanted = [
        (v.subject_id, f.t) for v in judged for f in v.assessment.evidence if math.isnan(f.lat)
    ]
    if not wanted:
        return
    found = await store.reported(conn, wanted)
    for v in judged:
        v.assessment.evidence = [
            replace(f, lat=found[v.subject_id, f.t][0], lon=found[v.subject_id, f.t][1])
            if math.isnan(f.lat)
            else f
            for f in v.assessment.evidence
        ]


Read = tuple[list[asyncpg.Record], list[asyncpg.Record]]  # blocks and edge tiles
T = TypeVar("T")


async def _read(
    conn: asyncpg.Connection,
    spare: asyncpg.Connection | None,
    plan: approach.Plan,
    first: Callable[[asyncpg.Connection], Awaitable[T]],
    helper: asyncpg.Connection | None = None,
) -> tuple[T, Read]:
    """What `first` reads on `conn`, then the blocks and the edge tiles of a window but
    its margins (`_edges`; `_margins` reads those). With a spare connection, the two share
    these reads (`_shares`) and make them at once, so that both of PostgreSQL's processes
    send; with a helper as well, `first` is read on it meanwhile, and the two share the
    rest evenly."""
    edges = _edges(plan)
    if spare is None:
        blocks = [plan.blocks()] if plan.has_interior else []
        return await first(conn), await _part(conn, blocks, edges, plan)
    if helper is not None:
        mine, theirs = _shares(plan, edges, head=0.0)
        found, (b1, e1), (b2, e2) = await asyncio.gather(
            first(helper), _part(conn, *mine, plan), _part(spare, *theirs, plan)
        )
        return found, (b1 + b2, e1 + e2)
    mine, theirs = _shares(plan, edges)

    async def on_conn() -> tuple[T, Read]:
        return await first(conn), await _part(conn, *mine, plan)

    (found, (b1, e1)), (b2, e2) = await asyncio.gather(on_conn(), _part(spare, *theirs, plan))
    return found, (b1 + b2, e1 + e2)


Ranges = list[tuple[float, float]]  # [from, to] starts of blocks or hours, inclusive

# A window's margins (approach.Plan.margins) are read afterwards, for the tracks that need
# them alone, where the window's end lies at least this far into the hour next to them.
# Tags report about once a minute: few tracks then lack a fix between margin and window.
SETTLED_S = 60.0


def _edges(plan: approach.Plan) -> Ranges:
    """The edge hours to read with the blocks: all but the margins."""
    before, after = plan.margins(SETTLED_S)
    lo = plan.first_hour if before is None else before + approach.HOUR
    hi = plan.last_hour if after is None else after - approach.HOUR
    trimmed = [(max(a, lo), min(b, hi)) for a, b in plan.edge_ranges()]
    return [(a, b) for a, b in trimmed if a <= b]


async def _margins(
    conn: asyncpg.Connection,
    spare: asyncpg.Connection | None,
    plan: approach.Plan,
    wanted: np.ndarray,
    edges: EdgeTiles,
) -> list[asyncpg.Record]:
    """The tiles of a window's margins (approach.Plan.margins) for the subjects in
    `wanted` whose tiles in `edges` do not reach the window's end next to them: what
    `_read` left out. (On both connections at once, where both margins are wanted.)"""
    before, after = plan.margins(SETTLED_S)
    hour, first_t, last_t = edges.head[:, 0], edges.head[:, 1], edges.head[:, 2]
    reads = []
    if before is not None:
        next_to = (hour == before + approach.HOUR) & (first_t <= plan.start)
        reached = set(edges.subject_id[next_to].tolist())
        reads.append((before, [s for s in wanted.tolist() if s not in reached]))
    if after is not None:
        next_to = (hour == after - approach.HOUR) & (last_t >= plan.end)
        reached = set(edges.subject_id[next_to].tolist())
        reads.append((after, [s for s in wanted.tolist() if s not in reached]))
    reads = [(h, subjects) for h, subjects in reads if subjects]

    async def read(c: asyncpg.Connection, hour: float, subjects: list[int]) -> list[Any]:
        return await store.edges(c, hour, hour, plan.live_hour, plan.reach(), subjects)

    if len(reads) == 2 and spare is not None:
        a, b = await asyncio.gather(read(conn, *reads[0]), read(spare, *reads[1]))
        return a + b
    return [r for hour, subjects in reads for r in await read(conn, hour, subjects)]


# What each read costs, in hours of sketch (measured on the benchmark's data): an edge
# hour's tiles cost about 2.3 such hours to find and send, and a further 0.035 for each
# minute of fixes read from them; `first` (who wore a device) about two.
EDGE_TILES, EDGE_MINUTE, FIRST = 2.3, 0.035, 2.0


def _shares(
    plan: approach.Plan, edges: Ranges, head: float = FIRST
) -> tuple[tuple[Ranges, Ranges], tuple[Ranges, Ranges]]:
    """The blocks and the edge hours `edges` of a window for each of two connections, so
    that the first, which has `head` to read before them (who wore a device, or nothing
    where a helper asks that), has as much to do as the other."""
    hours = [h for lo, hi in edges for h in _steps(lo, hi, approach.HOUR)]
    costs = [_edge_cost(plan, h) for h in hours]
    if not plan.has_interior:
        mine = _balanced(costs, head)
        theirs = [k for k in range(len(hours)) if k not in mine]
        return (
            ([], _runs([hours[k] for k in mine], approach.HOUR)),
            ([], _runs([hours[k] for k in theirs], approach.HOUR)),
        )
    lo, hi = plan.blocks()
    starts = _steps(lo, hi, approach.BLOCK)
    inner = [
        max(0.0, min(b + approach.BLOCK, plan.inner_to) - max(b, plan.inner_from)) / approach.HOUR
        for b in starts
    ]
    theirs_cost = sum(inner)
    mine_cost = head + sum(costs)
    cut = 0
    while cut < len(starts) and mine_cost + inner[cut] <= theirs_cost - inner[cut]:
        mine_cost, theirs_cost, cut = mine_cost + inner[cut], theirs_cost - inner[cut], cut + 1
    return (
        (_runs(starts[:cut], approach.BLOCK), _runs(hours, approach.HOUR)),
        (_runs(starts[cut:], approach.BLOCK), []),
    )


def _edge_cost(plan: approach.Plan, hour: float) -> float:
    """What reading an edge hour's tiles costs (EDGE_TILES, EDGE_MINUTE): its five-minute
    spans that hold the window's reach (store.EDGES)."""
    first, last = store.marks_between(hour, plan.reach())
    return EDGE_TILES + EDGE_MINUTE * tiles.MARK_S / 60 * max(0, last - first)


def _balanced(costs: list[float], head: float) -> list[int]:
    """Which of these reads one connection makes, after a read costing `head`, the other
    making the rest: each, the costliest first, goes to the one with less to do so far."""
    mine: list[int] = []
    ours, theirs = head, 0.0
    for k in sorted(range(len(costs)), key=lambda k: -costs[k]):
        if ours < theirs:
            mine.append(k)
            ours += costs[k]
        else:
            theirs += costs[k]
    return sorted(mine)


def _steps(lo: float, hi: float, step: float) -> list[float]:
    return [lo + k * step for k in range(int((hi - lo) // step) + 1)] if lo <= hi else []


def _runs(starts: list[float], step: float) -> Ranges:
    """Consecutive starts as [from, to] ranges."""
    out: Ranges = []
    for t in starts:
        if out and t == out[-1][1] + step:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


async def _part(
    conn: asyncpg.Connection,
    blocks: Ranges,
    edges: Ranges,
    plan: approach.Plan,
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The blocks starting and the edge tiles of the hours starting in these [from, to]
    ranges (Unix times, inclusive), on one connection."""
    found: list[asyncpg.Record] = []
    for lo, hi in blocks:
        if lo <= hi:
            found += await store.blocks(conn, lo, hi, plan.inner_from, plan.inner_to)
    tiles: list[asyncpg.Record] = []
    for lo, hi in edges:
        if lo <= hi:
            tiles += await store.edges(conn, lo, hi, plan.live_hour, plan.reach())
    return found, tiles


async def closest_from_tiles(
    conn: asyncpg.Connection,
    who: store.Wearers,
    scene: Scene,
    plan: approach.Plan,
    read: Read | None = None,
    spare: asyncpg.Connection | None = None,
) -> approach.Nearest:
    """The exact closest approach, by subject index in `who`, of every subject whose
    tiles show a track over the whole window and who can be measured from them; from the
    blocks and edge tiles `read` where given, else read here. A `spare` connection in the
    same snapshot shares the reads of single fixes."""
    ids = who.ids
    blocks, rows = read if read is not None else (await _read(conn, None, plan, _nothing))[1]
    tiled = who.tiled
    edges = edge_tiles(rows)
    edges = edges.and_(edge_tiles(await _margins(conn, spare, plan, ids[tiled], edges)))
    block_subject, (_, _, block_hours, block_sketch) = _in_order(ids, blocks, 4)
    edge_subject, order = _order(ids, edges.subject_id, edges.head[:, 0])
    hours = approach.hours_of(block_subject, block_hours)
    edge_spans = approach.Spans(edge_subject, *edges.head[order].T)
    spans = approach.spans_of(hours, plan, edge_spans)
    keep = approach.whole(spans, plan, len(who)) & tiled
    if not keep.any():
        return approach.NO_NEAREST
    edge = approach.edge_of(edge_subject, [edges.tracks[i] for i in order.tolist()])
    g = scene.geometry
    if not plan.has_interior and g.geom_type == "Point":
        return approach.nearest_in_edges(edge, keep, plan, g.x, g.y)
    sketch = approach.sketch_of(block_sketch)
    inner = approach.inner_of(hours, plan)
    cx, cy, r = approach.centre(scene.geometry)
    groups = approach.pairs(edge, sketch, hours, inner, plan, keep, cx, cy)
    chosen, crowded = approach.candidates(groups, len(who), plan, r)
    if len(chosen.subject) == 0:
        return approach.NO_NEAREST
    ends = approach.ends(chosen, edge, sketch, hours, inner)

    async def fill_in(which: np.ndarray) -> None:
        w = ends.wanted
        packed = await store.fixes(
            conn,
            ids[w.subject[which]].tolist(),
            w.hour[which].tolist(),
            w.place[which].tolist(),
            spare,
        )
        approach.fill(ends, which, approach.fix_rows(packed))

    await fill_in(approach.unread(ends, plan))
    best = approach.pick(chosen, ends, plan, scene.geometry)
    await fill_in(approach.untimed(ends, best))
    return approach.nearest(chosen, ends, best, plan, scene.geometry).without(crowded)


class EdgeTiles(NamedTuple):
    """Edge tiles as read (store.edges), in the order read: each one's subject id, its
    summary (rows: hour, first and last fix time, longest interval) and its packed fixes."""

    subject_id: np.ndarray
    head: np.ndarray
    tracks: list[bytes]

    def and_(self, other: EdgeTiles) -> EdgeTiles:
        """These tiles and the other's."""
        if not other.tracks:
            return self
        return EdgeTiles(
            np.concatenate([self.subject_id, other.subject_id]),
            np.concatenate([self.head, other.head]),
            self.tracks + other.tracks,
        )


def edge_tiles(rows: Sequence[asyncpg.Record]) -> EdgeTiles:
    """The rows (subject_id, head, track) of store.edges as columns: a comprehension a
    column, the summaries packed (four numbers a row took a millisecond more)."""
    heads = b"".join([r[1] for r in rows])
    return EdgeTiles(
        np.array([r[0] for r in rows], np.int64),
        np.frombuffer(heads, ">f8").reshape(-1, 4).astype(np.float64),
        [r[2] for r in rows],
    )


def _order(
    ids: np.ndarray, subject: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Of rows of these subject ids and starts, those of the subjects in `ids`: each one's
    subject index in `ids`, and their places, in (subject, start) order."""
    if len(ids) == 0 or len(subject) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    by_id = np.argsort(ids)
    at = by_id[np.searchsorted(ids, subject, sorter=by_id).clip(0, len(ids) - 1)]
    mine = np.flatnonzero(ids[at] == subject)
    order = mine[np.lexsort((start[mine], at[mine]))]
    return at[order], order


def _in_order(
    ids: np.ndarray, rows: Sequence[asyncpg.Record], width: int
) -> tuple[np.ndarray, list[list[Any]]]:
    """The columns of the rows (subject_id, start, ...) of the subjects in `ids`, in
    (subject, start) order, with each row's subject index in `ids`."""
    # a column a comprehension: zip(*rows) took six times as long over asyncpg's records
    subject = np.array([r[0] for r in rows], np.int64)
    start = np.array([r[1] for r in rows], float)
    at, order = _order(ids, subject, start)
    picked = [rows[i] for i in order.tolist()]
    return at, [[r[k] for r in picked] for k in range(width)]


async def _nothing(_conn: asyncpg.Connection) -> None:
    return None
