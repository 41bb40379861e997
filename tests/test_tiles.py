"""Track tiles: kept exact as fixes arrive in order, late, twice or before their assignment,
and crime-scene verdicts from them equal the method run on every fix.

Fixes go through the ingest pipeline's real write path into the test database.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
import numpy as np
import pytest
import shapely
from shapely import Point

from ingest.pipeline import Pipeline, limits_from
from tests.services import DATABASE_URL, Database
from torch import approach, correlate, grid, nearby
from torch.intake import Message
from torch.proximity import Assessment, Params, Scene, TrackFix, assess, position_at
from torch.settings import Settings
from torch.store import db as store_db
from torch.store import proximity as store
from torch.store import registry, tiles
from torch.store.ingest import Written

HOUR0 = (datetime.now(UTC) - timedelta(hours=8)).replace(minute=0, second=0, microsecond=0)
P = Params()


def at(t: float) -> datetime:
    return HOUR0 + timedelta(seconds=t)


def payload(t: float, x: float, y: float, acc: float | None) -> dict[str, Any]:
    lon, lat = grid.point_from_grid(x, y)
    item: dict[str, Any] = {"ts": at(t).isoformat(), "lat": lat, "lon": lon}
    if acc is not None:
        item["acc"] = acc
    return item


Fix = tuple[float, float, float, float | None]  # t, easting, northing, acc

Run = Callable[[Callable[[asyncpg.Connection, Pipeline], Awaitable[Any]]], Any]


@pytest.fixture
def run(db: Database) -> Iterator[Run]:
    """Run a coroutine with a connection and an ingest pipeline on the test database."""

    def go(work: Callable[[asyncpg.Connection, Pipeline], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            settings = Settings(database_url=DATABASE_URL)
            pipeline = Pipeline(DATABASE_URL, "tiles-test", limits_from(settings))
            conn = await asyncpg.connect(DATABASE_URL, server_settings=nearby.SESSION)
            try:
                return await work(conn, pipeline)
            finally:
                await conn.close()
                await pipeline.close()

        return asyncio.run(main())

    yield go


async def send(pipeline: Pipeline, serial: str, fixes: list[Fix]) -> Written:
    """Store fixes (t, easting, northing, acc) for a tag as one message each."""
    messages = [
        Message(f"tags/{serial}/fixes", json.dumps(payload(*f)).encode(), datetime.now(UTC))
        for f in fixes
    ]
    return await pipeline.store(pipeline.decode(messages))


async def wearer(conn: asyncpg.Connection, n: int, since: float = -86400) -> None:
    await registry.add_subject(conn, f"IOM-T{n:04d}", None)
    await registry.add_device(conn, f"TT{n:04d}", None)
    await registry.assign(conn, f"TT{n:04d}", f"IOM-T{n:04d}", at(since), None)


async def tile(conn: asyncpg.Connection, ref: str, hour: int) -> dict[str, Any]:
    """A tile with its packed track unpacked: times, positions, accuracies, and the
    sketch (float4 positions)."""
    r = await conn.fetchrow(
        """
        SELECT n, track, sketch, longest_s, first_x, first_y, last_x, last_y,
               min_x, min_y, max_x, max_y, marks
        FROM track_tiles t JOIN subjects s ON s.id = t.subject_id
        WHERE s.ref = $1 AND t.tile_start = $2
        """,
        ref,
        at(hour * 3600),
    )
    track = np.frombuffer(r["track"], ">f8").reshape(-1, 4)
    sketch = np.frombuffer(r["sketch"], ">f4").reshape(-1, 2)
    return {
        **dict(r),
        "points": len(track),
        "ts": track[:, 0].tolist(),
        "xy": [(x, y) for x, y in track[:, 1:3].tolist()],
        "accs": [None if math.isnan(a) else a for a in track[:, 3].tolist()],
        "sketch": [(x, y) for x, y in sketch.tolist()],
    }


def float4(xy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The sketch of a track: float4 offsets from its first fix."""
    x0, y0 = xy[0]
    return [(float(np.float32(x - x0)), float(np.float32(y - y0))) for x, y in xy]


def stored(x: float, y: float) -> tuple[float, float]:
    """Where a fix sent at (x, y) is stored: through the tag's lat/lon and back."""
    e, n = grid.point_to_grid(*grid.point_from_grid(x, y))
    return grid.on_lattice([e])[0], grid.on_lattice([n])[0]


def epoch(t: float) -> float:
    return at(t).timestamp()


def test_a_tile_grows_with_fixes_in_order_and_is_rebuilt_for_a_late_one(run: Run) -> None:
    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await wearer(conn, 1)
        # 10 fixes a minute apart, the last three standing still
        first = [(60.0 * i, 520000.0 + 10 * min(i, 7), 210000.0, 5.0) for i in range(10)]
        await send(pipeline, "TT0001", first)
        assert await tiles.pending(conn) == 1
        assert await tiles.refresh(conn) == 1
        assert await tiles.pending(conn) == 0
        t = await tile(conn, "IOM-T0001", 0)
        assert t["n"] == 10 and t["points"] == 10
        assert t["ts"] == [epoch(60 * i) for i in range(10)]
        sent = [stored(520000 + 10 * min(i, 7), 210000) for i in range(10)]
        assert np.allclose(t["xy"], sent, rtol=0, atol=1e-6)
        assert t["sketch"] == float4(t["xy"])
        assert t["longest_s"] == 60.0
        # five in the first five minutes, five in the next
        assert t["marks"] == [0, 5] + [10] * 11
        (x0, y0), (x1, _) = stored(520000, 210000), stored(520070, 210000)
        assert (t["min_x"], t["max_x"], t["min_y"], t["max_y"]) == pytest.approx(
            (x0, x1, y0, y0), abs=1e-6
        )

        # later fixes are appended, the first at the same place as the last
        later = [(900.0, 520070.0, 210000.0, None), (1000.0, 520100.0, 210040.0, 12.0)]
        await send(pipeline, "TT0001", later)
        assert await tiles.refresh(conn) == 1
        t = await tile(conn, "IOM-T0001", 0)
        assert t["n"] == 12 and t["points"] == 12
        assert t["ts"] == [epoch(60 * i) for i in range(10)] + [epoch(900), epoch(1000)]
        assert t["sketch"] == float4(t["xy"])
        assert t["accs"] == [5.0] * 10 + [None, 12.0]
        assert t["longest_s"] == 900.0 - 540.0
        assert t["marks"] == [0, 5, 10, 10] + [12] * 9
        assert (t["last_x"], t["last_y"]) == pytest.approx(stored(520100, 210040), abs=1e-6)

        # a late fix in the middle: the tile is rebuilt and the longest interval shrinks
        await send(pipeline, "TT0001", [(700.0, 520070.0, 210020.0, 6.0)])
        assert await tiles.refresh(conn) == 1
        t = await tile(conn, "IOM-T0001", 0)
        assert t["n"] == 13
        assert t["ts"] == [epoch(60 * i) for i in range(10)] + [epoch(s) for s in (700, 900, 1000)]
        assert t["longest_s"] == 900.0 - 700.0
        assert t["marks"] == [0, 5, 10, 11] + [13] * 9

        # the same fixes again store nothing and queue nothing
        await send(pipeline, "TT0001", first + later)
        assert await tiles.pending(conn) == 0
        assert await tiles.refresh(conn) == 0

        # a fix in the next hour makes a tile of its own
        await send(pipeline, "TT0001", [(3700.0, 520200.0, 210100.0, 7.0)])
        assert await tiles.refresh(conn) == 1
        t = await tile(conn, "IOM-T0001", 1)
        assert t["n"] == 1 and t["ts"] == [epoch(3700)] and t["longest_s"] == 0.0
        assert t["marks"] == [0] + [1] * 12

    run(work)


def test_the_marks_that_bound_the_five_minutes_a_read_reaches() -> None:
    hour = epoch(7200)
    # from 12:30 to 21:10 into the hour: the spans from 10:00 to 25:00, marks 2 to 5
    assert store.marks_between(hour, (hour + 750, hour + 1270)) == (2, 5)
    # a span's first second belongs to it
    assert store.marks_between(hour, (hour + 600, hour + 1199.5)) == (2, 4)
    # reaching back into the hour before and on into the next: every mark, 0 to 12
    assert store.marks_between(hour, (hour - 300, hour + 3900)) == (0, 12)
    # wholly after the hour, and wholly before it: no fix
    assert store.marks_between(hour, (hour + 3700, hour + 4000)) == (12, 12)
    assert store.marks_between(hour, (hour - 900, hour - 400)) == (0, 0)


def test_a_window_reads_only_the_five_minutes_of_its_edge_hours_it_reaches(run: Run) -> None:
    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await wearer(conn, 2)
        # an hour of fixes, one every 30 s, then the next hour's first
        fixes = [(30.0 * i, 520000.0 + i, 210000.0, 5.0) for i in range(121)]
        await send(pipeline, "TT0002", fixes)
        await tiles.refresh(conn)

        async def read(near: tuple[float, float]) -> list[float]:
            rows = await store.edges(conn, epoch(0), epoch(0), math.inf, near)
            (row,) = rows
            times: list[float] = approach.fix_rows(row["track"])[:, 0].tolist()
            return times

        # from 12:30 to 21:10 into the hour: the fixes from 10:00 to 24:30
        assert await read((epoch(750), epoch(1270))) == [epoch(30 * i) for i in range(20, 50)]
        # the end of the hour, and beyond it: from 55:00 on
        assert await read((epoch(3300), epoch(3900))) == [epoch(30 * i) for i in range(110, 120)]
        # all of it
        assert await read((epoch(-300), epoch(3900))) == [epoch(30 * i) for i in range(120)]
        # two hours in one read: each hour's tiles from its own marks, with its start
        rows = await store.edges(conn, epoch(0), epoch(3600), math.inf, (epoch(3300), epoch(3900)))
        both = nearby.edge_tiles(rows)
        read_of = [
            (head[0], approach.fix_rows(track)[:, 0].tolist())
            for head, track in zip(both.head.tolist(), both.tracks, strict=True)
        ]
        assert sorted(read_of) == [
            (epoch(0), [epoch(30 * i) for i in range(110, 120)]),
            (epoch(3600), [epoch(3600)]),
        ]
        # with each hour's summary: its first and last fix, and the longest interval
        assert sorted(both.head.tolist()) == [
            [epoch(0), epoch(0), epoch(3570), 30.0],
            [epoch(3600), epoch(3600), epoch(3600), 0.0],
        ]

        # a tile written before it had marks is read whole, and stays so as it grows
        await conn.execute("UPDATE track_tiles SET marks = NULL")
        assert len(await read((epoch(750), epoch(1270)))) == 120
        await send(pipeline, "TT0002", [(3650.0, 520200.0, 210000.0, 5.0)])
        await tiles.refresh(conn)
        assert (await tile(conn, "IOM-T0002", 1))["marks"] is None
        # until a late fix has it rebuilt
        await send(pipeline, "TT0002", [(5000.0, 520300.0, 210000.0, 5.0)])
        await send(pipeline, "TT0002", [(3620.0, 520300.0, 210000.0, 5.0)])
        await tiles.refresh(conn)
        assert (await tile(conn, "IOM-T0002", 1))["marks"] == [0] + [3] * 4 + [4] * 8

    run(work)


def test_an_hour_wholly_before_the_window_is_read_only_for_tracks_that_need_it(run: Run) -> None:
    """A window from 1:01:40 reaches back into hour 0 (max_gap 300 s). A track with a fix in
    hour 1 at or before 1:01:40 reaches the window without hour 0; only the others have
    hour 0 read, and the tiles still settle every track that covers the window."""

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        for n in (41, 42, 43):
            await wearer(conn, n)
        # a fix a minute from 0:50:00; from 0:50:30 to 0:59:30, then from 1:02:30; from 1:02:00
        await send(
            pipeline, "TT0041", [(3000 + 60.0 * i, 520000 + 20.0 * i, 210000, 5) for i in range(61)]
        )
        x = [(3030 + 60.0 * i, 521000 + 20.0 * i, 210000, 5) for i in range(10)]
        x += [(3750 + 60.0 * i, 521200 + 20.0 * i, 210000, 5) for i in range(50)]
        await send(pipeline, "TT0042", x)
        await send(pipeline, "TT0043", [(3720 + 60.0 * i, 522000, 210000, 5) for i in range(50)])
        while await tiles.refresh(conn):
            pass
        scene = Scene(Point(520500, 211000), 100, epoch(3700), epoch(5500))
        plan = approach.plan(scene.start, scene.end, P.max_gap_s, time.time())
        assert plan.margins(nearby.SETTLED_S) == (epoch(0), None)
        assert nearby._edges(plan) == [(epoch(3600), epoch(3600))]
        ids = {r["ref"]: r["id"] for r in await conn.fetch("SELECT id, ref FROM subjects")}
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            _, (_, rows) = await nearby._read(conn, None, plan, nearby._nothing)
            edges = nearby.edge_tiles(rows)
            read = zip(edges.subject_id.tolist(), edges.head[:, 0].tolist(), strict=True)
            assert sorted(read) == [(ids[f"IOM-T00{n}"], epoch(3600)) for n in (41, 42, 43)]
            wanted = np.array([ids[f"IOM-T00{n}"] for n in (41, 42, 43)])
            margins = await nearby._margins(conn, None, plan, wanted, edges)
        # hour 0 of the track with no fix in hour 1 before the window: from 0:55:00 on
        margin = nearby.edge_tiles(margins)
        assert margin.subject_id.tolist() == [ids["IOM-T0042"]]
        # its summary is the hour's whole: a fix a minute from 0:50:30 to 0:59:30
        assert margin.head.tolist() == [[epoch(0), epoch(3030), epoch(3570), 60.0]]
        assert approach.fix_rows(margin.tracks[0])[:, 0].tolist() == [
            epoch(3030 + 60 * i) for i in range(5, 10)
        ]
        # the two tracks that cover the window are settled from the tiles (the third begins
        # after the window does), and every verdict is the method's
        assert sorted(await from_the_tiles(conn, scene)) == [0, 1]
        assert await both_ways(conn, [], scene) == (2, 0)

    run(work)


def test_two_connections_share_the_edge_hours_by_what_each_costs_to_read() -> None:
    # 1:10 to 2:10: fifty-five minutes of hour 1 are read and fifteen of hour 2; the
    # connection that first asks who wore a device reads the smaller
    plan = approach.plan(epoch(4200), epoch(7800), P.max_gap_s, math.inf)
    assert plan.margins(nearby.SETTLED_S) == (None, None)
    assert nearby._shares(plan, nearby._edges(plan)) == (
        ([], [(epoch(7200), epoch(7200))]),
        ([], [(epoch(3600), epoch(3600))]),
    )
    # 1:02 to 1:58: hours 0 and 2 are margins, read afterwards for the tracks that need them
    plan = approach.plan(epoch(3720), epoch(7080), P.max_gap_s, math.inf)
    assert plan.margins(nearby.SETTLED_S) == (epoch(0), epoch(7200))
    assert nearby._edges(plan) == [(epoch(3600), epoch(3600))]
    assert nearby._shares(plan, nearby._edges(plan)) == (
        ([], []),
        ([], [(epoch(3600), epoch(3600))]),
    )
    # but where the window's end lies within a minute of its hour's, as for 1:00:30, the
    # hour before is read with the others: most tracks need it
    plan = approach.plan(epoch(3630), epoch(7080), P.max_gap_s, math.inf)
    assert plan.margins(nearby.SETTLED_S) == (None, epoch(7200))
    assert nearby._edges(plan) == [(epoch(0), epoch(3600))]


async def block(conn: asyncpg.Connection, ref: str, start: datetime) -> dict[str, Any] | None:
    r = await conn.fetchrow(
        """
        SELECT marks, hours, sketch FROM track_blocks b JOIN subjects s ON s.id = b.subject_id
        WHERE s.ref = $1 AND b.block_start = $2
        """,
        ref,
        start,
    )
    if r is None:
        return None
    hours = np.frombuffer(r["hours"], ">f8").reshape(-1, 8)
    return {
        "marks": r["marks"],
        "hours": [tuple(h[:5]) for h in hours.tolist()],  # the origins are checked apart
        "origins": [tuple(h[5:7]) for h in hours.tolist()],
        "exact": [h[7] for h in hours.tolist()],
        "sketch": r["sketch"],
    }


async def first_fix(conn: asyncpg.Connection, ref: str, hour: datetime) -> tuple[float, float]:
    r = await conn.fetchrow(
        "SELECT first_x, first_y FROM track_tiles t JOIN subjects s ON s.id = t.subject_id"
        " WHERE s.ref = $1 AND t.tile_start = $2",
        ref,
        hour,
    )
    return r["first_x"], r["first_y"]


async def sketch(conn: asyncpg.Connection, ref: str, hour: datetime) -> bytes:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT sketch FROM track_tiles t JOIN subjects s ON s.id = t.subject_id"
        " WHERE s.ref = $1 AND t.tile_start = $2",
        ref,
        hour,
    )


def test_blocks_hold_six_hours_of_sketches_and_follow_their_tiles(run: Run) -> None:
    b = HOUR0.replace(hour=HOUR0.hour // 6 * 6)  # a block's start, UTC 00, 06, 12 or 18
    o = (b - HOUR0).total_seconds()
    h = timedelta(hours=1)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await wearer(conn, 5)
        # 30 fixes a minute apart in the last half hour of one block, 15 in the next
        await send(
            pipeline,
            "TT0005",
            [(o - 1800 + 60 * i, 520000.0 + 10 * i, 210000.0, 5) for i in range(45)],
        )
        await tiles.refresh(conn)
        before = await block(conn, "IOM-T0005", b - 6 * h)
        assert before is not None
        assert before["marks"] == [0, 0, 0, 0, 0, 0, 30]
        assert before["hours"] == [((b - h).timestamp(), 30, epoch(o - 1800), epoch(o - 60), 60.0)]
        assert before["sketch"] == await sketch(conn, "IOM-T0005", b - h)
        after = await block(conn, "IOM-T0005", b)
        assert after is not None
        assert after["marks"] == [0, 15, 15, 15, 15, 15, 15]
        assert after["hours"] == [(b.timestamp(), 15, epoch(o), epoch(o + 840), 60.0)]

        # a fix two hours on, then a late one in the first hour: the block follows
        await send(pipeline, "TT0005", [(o + 7300, 520500.0, 210000.0, 5)])
        await tiles.refresh(conn)
        await send(pipeline, "TT0005", [(o + 30, 520100.0, 210000.0, 5)])
        await tiles.refresh(conn)
        after = await block(conn, "IOM-T0005", b)
        assert after is not None
        assert after["marks"] == [0, 16, 16, 17, 17, 17, 17]
        assert after["hours"] == [
            (b.timestamp(), 16, epoch(o), epoch(o + 840), 60.0),
            ((b + 2 * h).timestamp(), 1, epoch(o + 7300), epoch(o + 7300), 0.0),
        ]
        assert after["sketch"] == await sketch(conn, "IOM-T0005", b) + await sketch(
            conn, "IOM-T0005", b + 2 * h
        )
        assert after["origins"] == [
            await first_fix(conn, "IOM-T0005", b),
            await first_fix(conn, "IOM-T0005", b + 2 * h),
        ]
        assert after["origins"][1] == stored(520500, 210000)
        assert after["exact"] == [1.0, 1.0]  # positions on the lattice, within 16 km
        assert len(after["sketch"]) == 17 * 8

        # a window's interior from the last hour of one block to the first of the next:
        # the sketch of those hours only, with each block's start
        rows = await store.blocks(
            conn, (b - 6 * h).timestamp(), b.timestamp(), (b - h).timestamp(), (b + h).timestamp()
        )
        assert sorted((r["block_start"], r["sketch"]) for r in rows) == [
            ((b - 6 * h).timestamp(), await sketch(conn, "IOM-T0005", b - h)),
            (b.timestamp(), await sketch(conn, "IOM-T0005", b)),
        ]

    run(work)


def test_the_hours_of_a_block_a_window_interior_takes() -> None:
    block = epoch(6 * 3600)
    # the interior [block + 2 h, block + 5 h): hours 2, 3 and 4
    assert store.hours_between(block, (block + 7200, block + 18000)) == (2, 5)
    # an interior over the whole block and beyond: every hour
    assert store.hours_between(block, (block - 3600, block + 25200)) == (0, 6)
    # an interior wholly before the block, and wholly after it: no hour
    assert store.hours_between(block, (block - 7200, block - 3600)) == (0, 0)
    assert store.hours_between(block, (block + 21600, block + 28800)) == (6, 6)


def test_the_hour_still_running_is_not_tiled_and_is_read_from_its_fixes(run: Run) -> None:
    # Two hours of fixes up to a minute ago reach back into a third hour, and none is in
    # the running one, in an hour's first 70 seconds; the hour would turn during the test
    # in its last 10.
    if (into := time.time() % 3600) < 70:
        time.sleep(70 - into)
    elif into > 3590:
        time.sleep(3600 - into + 70)
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    offset = (now - HOUR0).total_seconds()  # seconds after HOUR0

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await wearer(conn, 60)
        # two hours of fixes a minute apart, up to a minute ago, walking west
        fixes = [(offset - 60 * i, 520000.0 + i, 210000.0, 5.0) for i in range(121, 0, -1)]
        await send(pipeline, "TT0060", fixes[:60])
        await send(pipeline, "TT0060", fixes[60:])
        await tiles.refresh(conn)
        built = await conn.fetch("SELECT tile_start FROM track_tiles ORDER BY 1")
        assert [r["tile_start"] for r in built] == [hour - timedelta(hours=h) for h in (2, 1)]
        # the running hour is queued once, from its first fix, until it is over
        first = min(at(f[0]) for f in fixes if at(f[0]) >= hour)
        queued = await conn.fetch("SELECT tile_start, first_new FROM track_tiles_dirty")
        assert [tuple(r) for r in queued] == [(hour, first)]
        await send(pipeline, "TT0060", [(offset, 520000.0, 210000.0, 5.0)])
        await tiles.refresh(conn)
        queued = await conn.fetch("SELECT tile_start, first_new FROM track_tiles_dirty")
        assert [tuple(r) for r in queued] == [(hour, first)]
        assert await tiles.pending(conn) == 0  # nothing a refresh would tile yet
        blocks = await conn.fetch("SELECT hours FROM track_blocks")
        starts = {h[0] for r in blocks for h in np.frombuffer(r["hours"], ">f8").reshape(-1, 8)}
        assert (hour - timedelta(hours=1)).timestamp() in starts
        assert hour.timestamp() not in starts

        # the query measures the running hour on its fixes, as the method does: the
        # nearest to a scene to the west is the newest fix
        scene = Scene(Point(stored(515000, 210000)), 100, epoch(offset - 6000), epoch(offset))
        (near,) = (await from_the_tiles(conn, scene)).values()
        start, end = at(offset - 6000), at(offset)
        (track,) = await store.tracks(conn, start, end, P.max_gap_s)
        reference = assess(track.fixes, scene, P)
        assert near.distance == pytest.approx(reference.closest_m, abs=1e-6)
        assert near.t == reference.closest_at == epoch(offset)

    run(work)


def test_the_fixes_around_a_moment_are_found_however_long_the_gap(run: Run) -> None:
    """A tag silent for ten days, then swapped for another: the fixes that bound a moment of
    the silence are the subject's last before it and first after it, of whichever tag they
    wore then; the new tag's fixes from before it was theirs do not count."""
    from torch.store import subjects

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> list[Any]:
        await wearer(conn, 61, since=-12 * 86400)
        await registry.add_device(conn, "TT0062", None)
        await send(pipeline, "TT0061", [(-11 * 86400, 522000, 208000, 8.0)])
        await send(pipeline, "TT0062", [(-3 * 86400, 523000, 208000, 8.0)])  # not yet theirs
        await registry.unassign(conn, "TT0061", at(-2 * 86400))
        await registry.assign(conn, "TT0062", "IOM-T0061", at(-2 * 86400), None)
        await send(pipeline, "TT0062", [(-86400, 524000, 208000, 8.0)])
        subject = await conn.fetchval("SELECT id FROM subjects WHERE ref = 'IOM-T0061'")
        found = []
        for t in (-5 * 86400, -12 * 86400 - 60, 0):
            before, after = await subjects.fixes_around(conn, subject, at(t))
            found.append(
                [
                    None if f is None else (f.t - HOUR0.timestamp(), round(f.x))
                    for f in (before, after)
                ]
            )
        return found

    assert run(work) == [
        [(-11 * 86400, 522000), (-86400, 524000)],
        [None, (-11 * 86400, 522000)],
        [(-86400, 524000), None],
    ]


def test_a_backlog_is_refreshed_a_bounded_number_of_hours_at_a_time(run: Run) -> None:
    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await wearer(conn, 7)
        # five hours of fixes, twelve an hour: five queued hours
        await send(
            pipeline, "TT0007", [(300.0 * i, 520000.0 + i, 210000.0, 5.0) for i in range(60)]
        )
        assert await tiles.pending(conn) == 5
        assert [await tiles.refresh(conn, limit=2) for _ in range(4)] == [2, 2, 1, 0]
        assert await tiles.pending(conn) == 0
        assert [(await tile(conn, "IOM-T0007", h))["n"] for h in range(5)] == [12] * 5

    run(work)


def test_fixes_stored_before_an_assignment_join_the_tiles_when_it_is_made(run: Run) -> None:
    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await registry.add_subject(conn, "IOM-T0002", None)
        await registry.add_device(conn, "TT0002", None)
        await send(pipeline, "TT0002", [(60.0 * i, 521000.0, 211000.0 + i, 5.0) for i in range(5)])
        assert await tiles.refresh(conn) == 0  # nobody wore it: no tile
        await registry.assign(conn, "TT0002", "IOM-T0002", at(120), None)
        assert await tiles.refresh(conn) == 1
        t = await tile(conn, "IOM-T0002", 0)
        assert t["ts"] == [epoch(120), epoch(180), epoch(240)]

    run(work)


def test_fixes_after_a_tag_was_taken_off_leave_the_tiles(run: Run) -> None:
    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await registry.add_subject(conn, "IOM-T0003", None)
        await registry.add_device(conn, "TT0003", None)
        await registry.assign(conn, "TT0003", "IOM-T0003", at(0), None)
        # a fix every 20 minutes for two hours; taken off at 0:25
        await send(
            pipeline, "TT0003", [(1200.0 * i, 521000.0, 211000.0 + i, 5.0) for i in range(6)]
        )
        assert await tiles.refresh(conn) == 2
        assert [(await tile(conn, "IOM-T0003", h))["n"] for h in (0, 1)] == [3, 3]
        await registry.unassign(conn, "TT0003", at(1500))
        await tiles.refresh(conn)
        assert (await tile(conn, "IOM-T0003", 0))["ts"] == [epoch(0), epoch(1200)]
        hours = await conn.fetchval(
            "SELECT count(*) FROM track_tiles t JOIN subjects s ON s.id = t.subject_id"
            " WHERE s.ref = 'IOM-T0003'"
        )
        assert hours == 1  # the second hour's fixes were all worn by nobody: no tile

    run(work)


def wander(rng: random.Random, hours: float = 3, gaps: bool = True) -> list[Fix]:
    """Some hours of a tag around Hatfield: walking or driving, pauses standing still,
    intervals of 20 s to 4 min, some gaps of 6 to 40 minutes, some fixes without acc."""
    x, y = 522000 + rng.uniform(-3000, 3000), 208000 + rng.uniform(-3000, 3000)
    heading, speed = rng.uniform(0, 2 * math.pi), rng.choice([1.4, 8.0, 15.0])
    t = rng.uniform(-600, 300)
    out: list[Fix] = []
    while t < hours * 3600 + 600:
        acc = None if rng.random() < 0.05 else float(rng.choice([4, 8, 15, 30, 60]))
        out.append((round(t, 3), round(x, 2), round(y, 2), acc))
        step = rng.choice([20.0, 60.0, 60.0, 60.0, 120.0, 240.0])
        if rng.random() < 0.01 and gaps:
            step = rng.uniform(360, 2400)  # a gap
        if rng.random() > 0.2:  # else standing still
            heading += rng.uniform(-0.6, 0.6)
            x = min(530000, max(514000, x + speed * step * math.cos(heading)))
            y = min(216000, max(200000, y + speed * step * math.sin(heading)))
        t += step
    return out


def scenes(rng: random.Random, n: int) -> list[Scene]:
    out = []
    for i in range(n):
        cx, cy = 522000 + rng.uniform(-4000, 4000), 208000 + rng.uniform(-4000, 4000)
        if i % 3 == 2:
            w, h = rng.uniform(20, 400), rng.uniform(20, 400)
            geometry = shapely.box(cx, cy, cx + w, cy + h)
        else:
            geometry = Point(cx, cy)
        start = rng.choice([0.0, 3600.0, rng.uniform(-300, 9000)])
        length = rng.choice([600.0, 3600.0, rng.uniform(300, 10800)])
        radius = rng.choice([0.0, 50.0, 200.0, rng.uniform(0, 2000)])
        out.append(Scene(geometry, radius, epoch(start), epoch(start + length)))
    return out


def distance_at(fixes: list[TrackFix], t: float, scene: Scene) -> tuple[float, float]:
    """The distance of the track from the scene at time t, and the accuracy there."""
    p = position_at(
        max((f for f in fixes if f.t <= t), key=lambda f: f.t),
        min((f for f in fixes if f.t >= t), key=lambda f: f.t),
        t,
        P,
    )
    assert p.xy is not None and p.accuracy_m is not None
    return float(Point(p.xy).distance(scene.geometry)), p.accuracy_m


def same(a: Assessment, b: Assessment, fixes: list[TrackFix], scene: Scene) -> None:
    """a (from the tiles) is b (the method on every fix). Where the track comes as close
    twice, to a micrometre, the two may name different moments: a's must be one of them."""
    assert a.verdict == b.verdict
    assert (a.closest_m is None) == (b.closest_m is None)
    if a.closest_m is not None and b.closest_m is not None:
        assert a.closest_m == pytest.approx(b.closest_m, abs=1e-6)
        assert a.closest_at is not None and b.closest_at is not None
        if abs(a.closest_at - b.closest_at) > 1e-3:
            d, acc = distance_at(fixes, a.closest_at, scene)
            assert d == pytest.approx(b.closest_m, abs=1e-6)
            assert a.accuracy_m == acc
        else:
            assert a.accuracy_m == b.accuracy_m
            assert a.reasons == b.reasons
    assert a.coverage == pytest.approx(b.coverage, abs=1e-12)
    assert [(g.start, g.end, g.reachable) for g in a.gaps] == [
        (g.start, g.end, g.reachable) for g in b.gaps
    ]
    # the evidence as stored, latitude and longitude as reported, wherever a was read from
    assert a.evidence == b.evidence


class Closest(NamedTuple):
    distance: float
    t: float


async def from_the_tiles(conn: asyncpg.Connection, scene: Scene) -> dict[int, Closest]:
    """The closest approaches the tiles settle, by subject index."""
    start = datetime.fromtimestamp(scene.start, UTC)
    end = datetime.fromtimestamp(scene.end, UTC)
    plan = approach.plan(scene.start, scene.end, P.max_gap_s, time.time())
    inner = (plan.inner_from, plan.inner_to)
    who = await store.wearers(conn, start, end, P.max_gap_s, inner, plan.live_hour)
    found = await nearby.closest_from_tiles(conn, who, scene, plan)
    rows = zip(found.subject.tolist(), found.distance.tolist(), found.t.tolist(), strict=True)
    return {s: Closest(d, t) for s, d, t in rows}


async def both_ways(
    conn: asyncpg.Connection, others: Sequence[asyncpg.Connection], scene: Scene
) -> tuple[int, int]:
    """Every wearer's verdict from the tiles is the method's on every fix, read on `conn`
    with the `others` (none, a spare, or a spare and a helper); the number of closest
    approaches the tiles settled, and of evidence fixes compared."""
    start = datetime.fromtimestamp(scene.start, UTC)
    end = datetime.fromtimestamp(scene.end, UTC)
    settled = len(await from_the_tiles(conn, scene))
    fast = (await nearby.answer(conn, scene, P, *others)).verdicts()
    slow = await store.tracks(conn, start, end, P.max_gap_s)
    assert [v.subject_id for v in fast] == [t.subject_id for t in slow]
    for v, t in zip(fast, slow, strict=True):
        same(v.assessment, assess(t.fixes, scene, P), t.fixes, scene)
    return settled, sum(len(v.assessment.evidence) for v in fast)


def test_verdicts_from_tiles_equal_the_method_on_every_fix(run: Run) -> None:
    rng = random.Random(20261123)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> tuple[int, int]:
        for n in range(1, 25):
            await wearer(conn, n)
            await send(pipeline, f"TT{n:04d}", wander(rng))
        while await tiles.refresh(conn):
            pass
        from_tiles = evidence = 0
        others = [
            await asyncpg.connect(DATABASE_URL, server_settings=nearby.SESSION) for _ in range(2)
        ]
        for k, scene in enumerate(scenes(rng, 40)):
            # on one connection, on two, and on three (the third asks who wore a device)
            settled, shown = await both_ways(conn, others[: k % 3], scene)
            from_tiles, evidence = from_tiles + settled, evidence + shown
        for other in others:
            await other.close()
        return from_tiles, evidence

    # Most closest approaches came from the tiles, and the evidence of the others (read
    # from the tiles too, with the latitudes and longitudes from the fixes) was compared.
    from_tiles, evidence = run(work)
    assert from_tiles > 400
    assert evidence > 100


def test_verdicts_over_long_windows_read_from_blocks_equal_the_method(run: Run) -> None:
    """Windows of 6 to 26 hours: their middle hours come from the six-hour blocks, exact
    where the positions are on the lattice and read from the tiles where not."""
    rng = random.Random(20261130)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> int:
        for n in range(31, 39):
            await wearer(conn, n, since=-4 * 86400)
            await send(
                pipeline,
                f"TT{n:04d}",
                [(t - 86400, *rest) for t, *rest in wander(rng, 30, gaps=False)],
            )
        # one tag's fixes moved off the lattice (as a writer other than the worker might
        # store them): its sketches are not exact, and its pieces are read from the tiles
        device = await conn.fetchval("SELECT id FROM devices WHERE serial = 'TT0031'")
        await conn.execute(
            "UPDATE fixes SET position = ST_Translate(position, 0.0001 * (1 + mod(extract("
            "epoch FROM fix_time)::numeric, 7)::float8), 0.0001) WHERE device_id = $1",
            device,
        )
        await tiles.mark_hours(conn, [device], at(-2 * 86400), None)
        while await tiles.refresh(conn):
            pass
        exact = await conn.fetch(
            "SELECT s.ref = 'IOM-T0031' AS moved, bool_and(exact) AS all, count(*) FILTER"
            " (WHERE NOT exact) > 20 AS many"
            " FROM track_tiles t JOIN subjects s ON s.id = t.subject_id GROUP BY 1 ORDER BY 1"
        )
        assert [tuple(r) for r in exact] == [(False, True, False), (True, False, True)]
        from_tiles = 0
        others = [
            await asyncpg.connect(DATABASE_URL, server_settings=nearby.SESSION) for _ in range(2)
        ]
        for k in range(12):
            cx, cy = 522000 + rng.uniform(-4000, 4000), 208000 + rng.uniform(-4000, 4000)
            start = rng.uniform(-86400, -86400 + 4 * 3600)
            scene = Scene(
                Point(cx, cy),
                rng.choice([50.0, 200.0]),
                epoch(start),
                epoch(start + rng.uniform(6, 26) * 3600),
            )
            # on one connection, on two and on three
            from_tiles += (await both_ways(conn, others[: k % 3], scene))[0]
        for other in others:
            await other.close()
        return from_tiles

    # The tracks have no gaps: every subject's closest approach in every window came
    # from the tiles, so the comparison tested them.
    assert run(work) == 8 * 12


def test_bulk_correlation_finds_what_each_crime_alone_finds(run: Run) -> None:
    """Screening by tiles reports exactly the present and possible subjects of the full
    query, crime by crime; half the crimes are placed on a fix, so that some are found."""
    rng = random.Random(20261201)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> int:
        sent: list[Fix] = []
        for n in range(41, 57):
            await wearer(conn, n)
            fixes = wander(rng)
            sent += fixes
            await send(pipeline, f"TT{n:04d}", fixes)
        while await tiles.refresh(conn):
            pass
        crimes = []
        for i in range(60):
            if i % 2:
                _, x, y, _ = rng.choice(sent)
            else:
                x, y = 522000 + rng.uniform(-4000, 4000), 208000 + rng.uniform(-4000, 4000)
            start = rng.uniform(-600, 9000)
            length = rng.choice([600.0, 3600.0, rng.uniform(300, 10800)])
            radius = rng.choice([0.0, 50.0, 200.0, rng.uniform(0, 2000)])
            crimes.append(
                correlate.Crime(
                    i + 2, f"41/{i}/26", "burglary", x, y, at(start), at(start + length), radius
                )
            )
        found = await correlate.run(conn, crimes, P)
        expected = []
        for c in crimes:
            scene = Scene(Point(c.x, c.y), c.radius_m, c.start.timestamp(), c.end.timestamp())
            for v in await nearby.verdicts(conn, scene, P):
                if v.assessment.verdict in ("present", "possible"):
                    expected.append((c.line, v.ref, v.assessment.verdict.value))
        assert [(f["line"], f["subject_ref"], f["verdict"]) for f in found] == expected

        # Shared among two worker processes in chunks of 7 crimes (9 chunks, the last of
        # 4): the same findings in the same order, progress told as each chunk is done.
        told: list[int] = []

        async def progress(done: int) -> None:
            told.append(done)

        shared = await correlate.run_shared(conn, DATABASE_URL, crimes, P, 2, progress, chunk=7)
        assert shared == found
        assert len(told) == 9 and told == sorted(told) and told[-1] == 60
        assert all(b - a in (4, 7) for a, b in zip([0, *told], told, strict=False))
        return len(found)

    assert run(work) > 20


# the pool's own thread, failing the chunks, must not trip over chunks cancelled meanwhile
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_bulk_correlation_whose_workers_cannot_connect_fails_at_once(run: Run) -> None:
    """A worker process that cannot open its connection breaks the job: it raises, and does
    not wait for the crimes that no process will take."""
    from concurrent.futures.process import BrokenProcessPool

    crimes = [
        correlate.Crime(k + 2, f"41/{k}/26", "theft", 522000, 208000, at(0), at(600), 100)
        for k in range(4)
    ]
    nowhere = DATABASE_URL.rsplit("/", 1)[0] + "/torch_no_such_database"

    async def work(conn: asyncpg.Connection, _pipeline: Pipeline) -> float:
        started = time.monotonic()
        with pytest.raises(BrokenProcessPool):
            await correlate.run_shared(conn, nowhere, crimes, P, 2, chunk=1)
        return time.monotonic() - started

    assert run(work) < 20


def test_a_tag_taken_off_and_left_at_the_scene_does_not_place_its_old_wearer_there(
    run: Run,
) -> None:
    """IOM-T0061 wore TT0061 14 km from the scene until 0:30, when it was taken off and left
    at the scene (an office drawer), reporting until 1:30. Its fixes were tiled as theirs
    before it was recorded as taken off. They are nobody's: the old wearer is `possible`
    only, by the time after 0:30 that no tag accounts for."""
    far = (536000.0, 210000.0)
    scene_xy = (522000.0, 208000.0)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> list[Any]:
        await wearer(conn, 61)
        await send(pipeline, "TT0061", [(60.0 * i, *far, 5.0) for i in range(31)])
        await send(pipeline, "TT0061", [(60.0 * i, *scene_xy, 5.0) for i in range(31, 91)])
        while await tiles.refresh(conn):
            pass
        await registry.unassign(conn, "TT0061", at(1830))
        while await tiles.refresh(conn):
            pass
        scene = Scene(Point(scene_xy), 200.0, epoch(0), epoch(5400))
        await both_ways(conn, [], scene)
        [v] = await nearby.verdicts(conn, scene, P)
        crime = correlate.Crime(2, "41/9/26", "burglary", *scene_xy, at(0), at(5400), 200.0)
        return [v.assessment, await correlate.run(conn, [crime], P)]

    a, found = run(work)
    assert a.verdict == "possible"
    assert a.closest_m == pytest.approx(math.hypot(14000, 2000), abs=1e-3)
    assert [(g.start, g.end, g.reachable) for g in a.gaps] == [(epoch(1800), epoch(5400), True)]
    assert a.coverage == pytest.approx(1800 / 5400, abs=1e-12)
    assert [(f["subject_ref"], f["verdict"]) for f in found] == [("IOM-T0061", "possible")]


def test_bulk_correlation_of_crimes_before_any_tile_reads_the_fixes(run: Run) -> None:
    """Crimes in hours with no tiles at all (not yet refreshed, or still running) are
    correlated on the fixes: a walker through the first crime's scene is found present, and
    nobody at the second, a kilometre away."""

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> list[tuple[int, str, str]]:
        await wearer(conn, 5)
        walk = [(60.0 * i, 520000.0 + 10 * i, 210000.0, 5.0) for i in range(60)]
        await send(pipeline, "TT0005", walk)
        x, y = stored(520300, 210000)  # the fix at 30 minutes
        crimes = [
            correlate.Crime(2, "41/1/26", "burglary", x, y, at(1500), at(2100), 50),
            correlate.Crime(3, "41/2/26", "burglary", x, y + 1000, at(1500), at(2100), 50),
        ]
        found = await correlate.run(conn, crimes, P)
        return [(f["line"], f["subject_ref"], f["verdict"]) for f in found]

    assert run(work) == [(2, "IOM-T0005", "present")]


def test_bulk_correlation_says_when_a_finding_rests_on_a_gps_outlier(run: Run) -> None:
    """IOM-T0062 stood 14 km from the scene all hour, but for one fix at the scene at 0:30,
    a minute from fixes 14 km away either side (236 m/s in and out, less 10 m of accuracy,
    where the fixes either side are 0 m/s apart). Bulk correlation finds them present, as
    the method does, with the caveat the crime-scene query gives as a reason: read from the
    fixes (no tiles yet) and from the tiles alike. A walker through the scene (IOM-T0063)
    is present with no caveat."""
    far, scene_xy = (536000.0, 210000.0), (522000.0, 208000.0)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> list[Any]:
        await wearer(conn, 62)
        await wearer(conn, 63)
        outlier = [(60.0 * i, *(scene_xy if i == 30 else far), 5.0) for i in range(61)]
        await send(pipeline, "TT0062", outlier)
        await send(
            pipeline, "TT0063", [(60.0 * i, 520200.0 + 60 * i, 208000.0, 5.0) for i in range(61)]
        )
        crime = correlate.Crime(2, "41/9/26", "burglary", *scene_xy, at(600), at(3000), 100.0)
        from_fixes = await correlate.run(conn, [crime], P)
        while await tiles.refresh(conn):
            pass
        from_tiles = await correlate.run(conn, [crime], P)
        scene = Scene(Point(scene_xy), 100.0, epoch(600), epoch(3000))
        method = {v.ref: v.assessment for v in await nearby.verdicts(conn, scene, P)}
        return [from_fixes, from_tiles, method]

    from_fixes, from_tiles, method = run(work)
    sentence = (
        f"the fix at {at(1800):%Y-%m-%dT%H:%M:%SZ} would mean 236 m/s from the fix before it and"
        " 236 m/s to the one after, even allowing for their accuracy, while those two are 0 m/s"
        " apart: it may be a GPS outlier, and the closest approach rests on it"
    )
    assert method["IOM-T0062"].caveats == [sentence]
    assert method["IOM-T0063"].caveats == []
    for found in (from_fixes, from_tiles):
        assert [(f["subject_ref"], f["verdict"], f["caveat"]) for f in found] == [
            ("IOM-T0062", "present", sentence[0].upper() + sentence[1:] + "."),
            ("IOM-T0063", "present", ""),
        ]
    rows = correlate.to_csv(from_tiles).splitlines()
    assert rows[0].endswith(",closest_m,closest_at,caveat")
    assert rows[1].endswith(',"The fix at ' + sentence[len("the fix at ") :] + '."')


def test_a_second_connection_is_taken_only_when_the_pool_has_one_free(db: Database) -> None:
    """An answer reads over two connections where the pool has one open and idle; one that
    holds the pool's last idle connection goes on with one, rather than wait for a second
    (requests each holding one and waiting for another would wait for ever) or open one."""

    async def main() -> None:
        pool = await asyncpg.create_pool(DATABASE_URL, min_size=2, max_size=3)
        try:
            async with pool.acquire(), store_db.spare(pool) as second:
                assert second is not None and await second.fetchval("SELECT 1") == 1
            async with pool.acquire(), pool.acquire(), store_db.spare(pool) as second:
                assert second is None  # none idle: the pool's third is not opened
            assert pool.get_size() == 2
            async with pool.acquire(timeout=1) as a, pool.acquire(timeout=1) as b:
                assert await a.fetchval("SELECT 2") == await b.fetchval("SELECT 2") == 2
        finally:
            await pool.close()
        pool = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=1)
        try:
            async with pool.acquire(), store_db.spare(pool) as second:
                assert second is None
            async with store_db.spare(pool) as second:
                assert second is not None and await second.fetchval("SELECT 1") == 1
            async with pool.acquire(timeout=1) as again:  # the spare went back to the pool
                assert await again.fetchval("SELECT 2") == 2
        finally:
            await pool.close()

    asyncio.run(main())


def test_who_wore_a_device_and_whose_tiles_stand_for_their_fixes(run: Run) -> None:
    """Of the window 1:00 to 2:00: one tag throughout (tiled); two tags, one after the
    other (not tiled: the tiles are a subject's, the fixes a tag's); a tag taken off four
    minutes before the window (within max_gap of it, but not worn in it: not a wearer);
    one tag with a fix not yet tiled (not tiled); in order of subject id."""

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> tuple[Any, dict[str, int]]:
        for n in (71, 72, 73, 74):
            await wearer(conn, n, since=0)
        await registry.unassign(conn, "TT0072", at(5400))
        await registry.add_device(conn, "TT0172", None)
        await registry.assign(conn, "TT0172", "IOM-T0072", at(5400), None)
        await registry.unassign(conn, "TT0073", at(3360))
        await send(pipeline, "TT0074", [(60.0 * i, 520000.0, 210000.0, 5.0) for i in range(60)])
        while await tiles.refresh(conn):
            pass
        await send(pipeline, "TT0074", [(7000.0, 520000.0, 210000.0, 5.0)])  # not yet tiled
        ids = {r["ref"]: r["id"] for r in await conn.fetch("SELECT id, ref FROM subjects")}
        plan = approach.plan(epoch(3600), epoch(7200), P.max_gap_s, math.inf)
        inner = (plan.inner_from, plan.inner_to)
        who = await store.wearers(conn, at(3600), at(7200), P.max_gap_s, inner, plan.live_hour)
        return who, ids

    who, ids = run(work)
    refs = ["IOM-T0071", "IOM-T0072", "IOM-T0074"]
    assert (who.ids.tolist(), who.refs) == ([ids[r] for r in refs], refs)
    assert who.tiled.tolist() == [True, False, False]


def test_a_subject_with_fixes_not_yet_in_tiles_is_assessed_from_the_fixes(run: Run) -> None:
    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
        await wearer(conn, 3)
        await send(
            pipeline, "TT0003", [(60.0 * i, 520000.0 + 5 * i, 210000.0, 5.0) for i in range(60)]
        )
        await tiles.refresh(conn)
        scene = Scene(Point(stored(520500, 210000)), 100, epoch(600), epoch(3000))
        (before,) = (await from_the_tiles(conn, scene)).values()
        # walking east 5 m a minute, nearest at the end of the window
        nearest = Point(stored(520000 + 5 * 50, 210000)).distance(scene.geometry)
        assert before.distance == pytest.approx(nearest, abs=1e-6)
        assert before.t == epoch(3000)
        # a fix moves the subject onto the scene; its tile is not refreshed yet
        await send(pipeline, "TT0003", [(1230.0, 520500.0, 210000.0, 5.0)])
        assert await from_the_tiles(conn, scene) == {}
        (v,) = await nearby.verdicts(conn, scene, P)
        assert v.assessment.verdict == "present"
        assert v.assessment.closest_m == 0.0
        assert v.assessment.closest_at == epoch(1230)

    run(work)


def test_single_fixes_read_over_two_connections_are_those_read_over_one(run: Run) -> None:
    """Runs of fixes asked of the tiles come back as stored, in the order asked, whether
    one connection reads them or two share them (from store.SHARED_RUNS runs each)."""
    rng = random.Random(20261201)

    async def work(conn: asyncpg.Connection, pipeline: Pipeline) -> int:
        for n in range(41, 49):
            await wearer(conn, n)
            await send(pipeline, f"TT{n:04d}", wander(rng, 6, gaps=False))
        while await tiles.refresh(conn):
            pass
        stored = await conn.fetch("SELECT subject_id, tile_start, track FROM track_tiles")
        # every other fix, and the next one of some: runs of one and of two, shuffled
        keys = [
            (r["subject_id"], r["tile_start"].timestamp(), i)
            for r in stored
            for i in range(0, len(r["track"]) // 32, 2)
            for i in ([i, i + 1] if i % 3 == 0 and i + 1 < len(r["track"]) // 32 else [i])
        ]
        rng.shuffle(keys)
        expected = b"".join(
            next(r["track"] for r in stored if (r["subject_id"], r["tile_start"].timestamp())
                 == (s, h))[32 * i : 32 * i + 32]
            for s, h, i in keys
        )  # fmt: skip
        subjects, hours, index = (list(k) for k in zip(*keys, strict=True))
        spare = await asyncpg.connect(DATABASE_URL)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot = await store.export_snapshot(conn)
                async with nearby._sharing([spare], snapshot):
                    alone = await store.fixes(conn, subjects, hours, index)
                    shared = await store.fixes(conn, subjects, hours, index, spare)
        finally:
            await spare.close()
        assert alone == shared == expected
        return len(keys)

    assert run(work) > 4 * store.SHARED_RUNS


def test_connections_sharing_a_snapshot_see_what_it_saw_and_are_left_idle(run: Run) -> None:
    async def work(conn: asyncpg.Connection, _pipeline: Pipeline) -> None:
        await wearer(conn, 51)
        others = [await asyncpg.connect(DATABASE_URL) for _ in range(2)]
        writer = await asyncpg.connect(DATABASE_URL)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot = await store.export_snapshot(conn)
                before = await conn.fetchval("SELECT count(*) FROM subjects")
                await wearer(writer, 52)  # committed after the snapshot was taken
                async with nearby._sharing(others, snapshot):
                    seen = [await c.fetchval("SELECT count(*) FROM subjects") for c in others]
                    assert [c.is_in_transaction() for c in others] == [True, True]
            assert seen == [before, before]
            assert await writer.fetchval("SELECT count(*) FROM subjects") == before + 1
            assert [c.is_in_transaction() for c in others] == [False, False]
            # a snapshot no transaction exports: refused, and no transaction is left open
            with pytest.raises(asyncpg.PostgresError, match="snapshot"):
                async with nearby._sharing(others, "00000003-0000001B-1"):
                    pass
            assert [c.is_in_transaction() for c in others] == [False, False]
        finally:
            for c in [*others, writer]:
                await c.close()

    run(work)
