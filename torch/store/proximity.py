"""Reads for the crime-scene query, and the record of each query asked."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import numpy as np

from torch.fixes import rfc3339
from torch.proximity import TrackFix
from torch.store import tiles


@dataclass(slots=True)
class SubjectTrack:
    subject_id: int
    ref: str
    fixes: list[TrackFix] = field(default_factory=list)


async def tracks(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    margin_s: float,
    only: Sequence[int] | None = None,
) -> list[SubjectTrack]:
    """Every subject who wore a device at any moment of [start, end] (or those of them
    listed in `only`), with the fixes of the devices they wore, from margin_s before to
    margin_s after, in time order."""
    subjects = await conn.fetch(
        """
        SELECT DISTINCT s.id, s.ref FROM device_assignments a JOIN subjects s ON s.id = a.subject_id
        WHERE a.during && tstzrange($1, $2, '[]')
          AND ($3::bigint[] IS NULL OR s.id = ANY($3::bigint[]))
        ORDER BY s.id
        """,
        start,
        end,
        None if only is None else list(only),
    )
    if not subjects:
        return []
    by_id = {r["id"]: SubjectTrack(r["id"], r["ref"]) for r in subjects}
    rows = await conn.fetch(
        """
        SELECT a.subject_id, date_part('epoch', f.fix_time) AS t,
               ST_X(f.position) AS x, ST_Y(f.position) AS y, f.acc::numeric::float8 AS acc,
               f.lat, f.lon
        FROM device_assignments a
        JOIN fixes f ON f.device_id = a.device_id AND a.during @> f.fix_time
        WHERE a.during && tstzrange($1::timestamptz - make_interval(secs => $3),
                                    $2::timestamptz + make_interval(secs => $3))
          AND a.subject_id = ANY($4::bigint[])
          AND f.fix_time BETWEEN $1::timestamptz - make_interval(secs => $3)
                             AND $2::timestamptz + make_interval(secs => $3)
        ORDER BY a.subject_id, f.fix_time
        """,
        start,
        end,
        margin_s,
        [r["id"] for r in subjects],
    )
    for r in rows:
        track = by_id.get(r["subject_id"])
        if track is not None:
            track.fixes.append(TrackFix(r["t"], r["x"], r["y"], r["acc"], r["lat"], r["lon"]))
    return list(by_id.values())


# The subjects with fixes waiting to be tiled in the hours starting from {first} to
# {last} (SQL expressions).
PENDING = """
SELECT a.subject_id
FROM track_tiles_dirty d
JOIN device_assignments a ON a.device_id = d.device_id
 AND a.during && tstzrange(d.tile_start, d.tile_start + interval '1 hour')
WHERE d.tile_start >= {first} AND d.tile_start <= {last}
"""

# Every assignment of a device in [$1 - $3 s, $2 + $3 s], with its subject's reference and
# whether it overlaps [$1, $2] itself; then the subjects with tiles or blocks waiting to be
# brought up to date (`pending`). Counted and grouped by `wearers` (in numpy: grouped here,
# with the subjects joined to the groups, PostgreSQL took twice as long). (The hours from
# $6 on are read from their fixes, LIVE, never from tiles.)
WEARERS = f"""
WITH pending AS ({
    PENDING.format(
        first="date_bin('1 hour', $1::timestamptz - make_interval(secs => $3), "
        "TIMESTAMPTZ '2000-01-01 00:00:00+00')",
        last="least($2::timestamptz + make_interval(secs => $3),"
        " to_timestamp($6) - interval '1 hour')",
    )
}
    UNION ALL  -- interior hours whose blocks wait for a rebuild
    SELECT subject_id FROM track_blocks_dirty
    WHERE tile_start >= to_timestamp($4) AND tile_start < to_timestamp($5)
)
SELECT a.subject_id, s.ref, a.during && tstzrange($1, $2, '[]') AS worn, false AS pending
FROM device_assignments a JOIN subjects s ON s.id = a.subject_id
WHERE a.during && tstzrange($1 - make_interval(secs => $3), $2 + make_interval(secs => $3), '[]')
UNION ALL
SELECT subject_id, NULL, false, true FROM pending
"""

# The blocks starting at $1 (Unix time) with each one's hour summaries, and the sketch of
# its hours $2 to $3 - 1 (from 0; `hours_between`) by the marks (the count of fixes before
# each hour); in the primary key's order (sorting them here costs more than in the
# caller). The block's start and hours are worked out once, by the caller: worked out for
# each of a day's ten thousand blocks here, they took an eighth to a fifth of the read.
BLOCKS = f"""
SELECT b.subject_id, $1::float8 AS block_start, b.hours,
       CASE WHEN $2 = 0 AND $3 = {tiles.BLOCK_HOURS} THEN b.sketch  -- a whole block, as most are
            ELSE substring(b.sketch FROM 8 * b.marks[$2 + 1] + 1
                           FOR 8 * (b.marks[$3 + 1] - b.marks[$2 + 1]))
       END AS sketch
FROM track_blocks b
WHERE b.block_start = to_timestamp($1)
"""


def hours_between(block: float, inner: tuple[float, float]) -> tuple[int, int]:
    """Which of a block's hours (from 0) lie in [inner) (Unix times of whole hours): from
    the first to before the second."""
    first = max(0, min(tiles.BLOCK_HOURS, math.floor((inner[0] - block) / 3600)))
    return first, max(first, min(tiles.BLOCK_HOURS, math.floor((inner[1] - block) / 3600)))


# A tile's summary as `edges` gives it: float8 big-endian hour (from {hour}), first and
# last fix time, longest interval. Packed, as four numbers a row made four Python floats.
HEAD = """float8send({hour}) || float8send({first_t}) || float8send({last_t})
       || float8send({longest_s})"""

# The tiles of the hour starting at $1 (Unix time), in no set order: sorting these wide
# rows took PostgreSQL five times as long as reading them. Of each tile's fixes, those
# from marks[$2 + 1] to marks[$3 + 1] (`marks_between`); all of them in a tile without
# marks. The hour and the marks' places are worked out once, by the caller: worked out
# for each of an hour's two thousand tiles here, they took a quarter of the read.
EDGES = f"""
SELECT t.subject_id,
       {
    HEAD.format(
        hour="$1::float8",
        first_t="date_part('epoch', t.first_at)",
        last_t="date_part('epoch', t.last_at)",
        longest_s="t.longest_s",
    )
} AS head,
       CASE WHEN m.a IS NULL OR (m.a = 0 AND m.b = t.n) THEN t.track
            ELSE substring(t.track FROM 32 * m.a + 1 FOR 32 * (m.b - m.a))
       END AS track
FROM track_tiles t
CROSS JOIN LATERAL (SELECT t.marks[$2 + 1] AS a, t.marks[$3 + 1] AS b) m
WHERE t.tile_start = to_timestamp($1)
"""


def marks_between(hour: float, near: tuple[float, float]) -> tuple[int, int]:
    """Which of an hour's marks (from 0) bound the fixes of the five-minute spans that
    hold `near` (Unix times, from and to): the fixes before the span that holds the
    first, and before the span after the one that holds the second."""
    lo, hi = near
    return (
        max(0, min(tiles.MARKS, math.floor((lo - hour) / tiles.MARK_S))),
        max(0, min(tiles.MARKS, math.floor((hi - hour) / tiles.MARK_S) + 1)),
    )


# EDGES of some subjects only ($4).
EDGES_OF = EDGES + "  AND t.subject_id = ANY($4::bigint[])\n"

# What EDGES gives for hours not tiled yet (the hour still running), made from the fixes of
# the hours starting in [$1, $2] as the tile refresh would make them (torch.store.tiles).
LIVE = f"""
SELECT subject_id,
       {
    HEAD.format(hour="hour", first_t="min(t)", last_t="max(t)", longest_s="coalesce(max(step), 0)")
} AS head,
       string_agg({tiles.PACKED_FIX}, ''::bytea ORDER BY fix_time) AS track
FROM (
    SELECT a.subject_id, h.hour, f.fix_time, f.position, f.acc, f.t,
           f.t - lag(f.t) OVER (PARTITION BY a.subject_id, h.hour ORDER BY f.t) AS step
    FROM (SELECT $1::float8 + 3600 * k AS hour
          FROM generate_series(0, (($2::float8 - $1::float8) / 3600)::int) AS k) h
    JOIN device_assignments a
      ON a.during && tstzrange(to_timestamp(h.hour), to_timestamp(h.hour + 3600))
    CROSS JOIN LATERAL (
        SELECT f.fix_time, f.position, f.acc, date_part('epoch', f.fix_time) AS t
        FROM fixes f
        WHERE f.device_id = a.device_id AND a.during @> f.fix_time
          AND f.fix_time >= to_timestamp(h.hour) AND f.fix_time < to_timestamp(h.hour + 3600)
    ) f
) fixes
GROUP BY subject_id, hour
"""

# Runs of fixes of tiles, by (subject, hour start, index in the hour of the first, count),
# in the order asked.
FIXES = """
SELECT substring(t.track FROM 32 * k.i + 1 FOR 32 * k.n)
FROM unnest($1::bigint[], $2::float8[], $3::int[], $4::int[])
     WITH ORDINALITY AS k (subject_id, hour, i, n, o)
JOIN track_tiles t ON t.tile_start = to_timestamp(k.hour) AND t.subject_id = k.subject_id
ORDER BY k.o
"""


async def export_snapshot(conn: asyncpg.Connection) -> str:
    """The snapshot of this connection's transaction, for another to share."""
    return str(await conn.fetchval("SELECT pg_export_snapshot()"))


def _checked(snapshot: str) -> str:
    if not re.fullmatch(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?", snapshot):
        raise ValueError(f"not a snapshot: {snapshot!r}")
    return snapshot


async def begin_in_snapshot(conn: asyncpg.Connection, snapshot: str) -> None:
    """Begin a repeatable-read, read-only transaction on `conn` that sees `snapshot`, in
    one round trip; the caller ends it (COMMIT or ROLLBACK: it writes nothing)."""
    await conn.execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
        f" SET TRANSACTION SNAPSHOT '{_checked(snapshot)}'"
    )


class Wearer(NamedTuple):
    """A subject who wore a device in the window; `tiled` when one device only and its
    tiles are up to date, so that the tiles can stand for the fixes."""

    subject_id: int
    ref: str
    tiled: bool


@dataclass(frozen=True, slots=True)
class Wearers:
    """Wearers (thousands an answer) as columns, by subject id; `who[k]` is the k-th."""

    ids: np.ndarray  # int64
    refs: list[str]
    tiled: np.ndarray  # bool

    @staticmethod
    def of(wearers: Sequence[Wearer]) -> Wearers:
        return Wearers(
            np.array([w.subject_id for w in wearers], np.int64),
            [w.ref for w in wearers],
            np.array([w.tiled for w in wearers], bool),
        )

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, k: int) -> Wearer:
        return Wearer(int(self.ids[k]), self.refs[k], bool(self.tiled[k]))

    def __iter__(self) -> Iterator[Wearer]:
        return map(self.__getitem__, range(len(self.refs)))


async def worn(
    conn: asyncpg.Connection, subject_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, list[dict[str, str | None]]]:
    """The tags each of these subjects wore in [start, end], in time order: `serial`,
    `from` and `to` (null: still worn), RFC 3339."""
    rows = await conn.fetch(
        """
        SELECT a.subject_id, d.serial, lower(a.during) AS start, upper(a.during) AS end
        FROM device_assignments a JOIN devices d ON d.id = a.device_id
        WHERE a.subject_id = ANY($1::bigint[]) AND a.during && tstzrange($2, $3, '[]')
        ORDER BY a.subject_id, lower(a.during)
        """,
        list(subject_ids),
        start,
        end,
    )
    out: dict[int, list[dict[str, str | None]]] = {}
    for r in rows:
        out.setdefault(r["subject_id"], []).append(
            {
                "serial": r["serial"],
                "from": r["start"].isoformat(),
                "to": rfc3339(r["end"]),
            }
        )
    return out


async def wearers(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    max_gap_s: float,
    inner: tuple[float, float],
    live: float,
) -> Wearers:
    """Who wore a device in [start, end]; tiled where one device only and their tiles, and
    the blocks of the interior hours [inner) (Unix times), are up to date. The hours from
    `live` on are not tiled yet: the query reads them from their fixes (`edges`)."""
    rows = await conn.fetch(WEARERS, start, end, max_gap_s, *inner, live)
    # a column a comprehension: records iterate slowly, and a tuple each cost 0.4 ms more
    subject = np.array([r[0] for r in rows], np.int64)
    refs = [r[1] for r in rows]
    worn = np.array([r[2] for r in rows], bool)
    pending = np.array([r[3] for r in rows], bool)
    assigned = np.flatnonzero(~pending)
    ids, first, group, pieces = np.unique(
        subject[assigned], return_index=True, return_inverse=True, return_counts=True
    )
    in_window = np.zeros(len(ids), bool)
    np.logical_or.at(in_window, group, worn[assigned])
    # one device only, nothing waiting
    tiled = (pieces == 1) & ~np.isin(ids, subject[pending])
    k = np.flatnonzero(in_window)
    return Wearers(ids[k], [refs[i] for i in assigned[first[k]].tolist()], tiled[k])


async def blocks(
    conn: asyncpg.Connection, first: float, last: float, inner_from: float, inner_to: float
) -> list[asyncpg.Record]:
    """(subject_id, block_start, hours, sketch) of the blocks starting in [first, last],
    with the sketch of the hours in [inner_from, inner_to) only; in no set order."""
    rows: list[asyncpg.Record] = []
    block = first
    while block <= last:
        rows += await conn.fetch(BLOCKS, block, *hours_between(block, (inner_from, inner_to)))
        block += tiles.BLOCK_HOURS * 3600
    return rows


async def edges(
    conn: asyncpg.Connection,
    first: float,
    last: float,
    live: float,
    near: tuple[float, float],
    subjects: Sequence[int] | None = None,
) -> list[asyncpg.Record]:
    """(subject_id, head, track) of the tiles of the hours starting in [first, last], `head`
    their summaries (HEAD), `track` their fixes in the five-minute spans that hold
    `near` (Unix times, from and to) at least; the hours from `live` on, not tiled yet,
    made from their fixes, whole. Of every subject, or of `subjects` only (tiled hours
    only). In no set order."""
    if subjects is not None and last >= live:
        raise ValueError("the tiles of some subjects only are read from tiled hours only")
    rows: list[asyncpg.Record] = []
    hour = first
    while hour <= min(last, live - 3600):
        a, b = marks_between(hour, near)
        if subjects is None:
            rows += await conn.fetch(EDGES, hour, a, b)
        else:
            rows += await conn.fetch(EDGES_OF, hour, a, b, subjects)
        hour += 3600
    if last >= live:
        rows += await conn.fetch(LIVE, max(first, live), last)
    return rows


SHARED_RUNS = 200  # each run a look-up in the tiles' index: two connections share this many


async def fixes(
    conn: asyncpg.Connection,
    subjects: Sequence[int],
    hours: Sequence[float],
    index: Sequence[int],
    spare: asyncpg.Connection | None = None,
) -> bytes:
    """The packed exact fixes (t, x, y, acc as float8) of tiles, one for each (subject_id,
    hour start, index in the hour), in that order. Fixes next to each other in a tile (the
    two ends of a piece, mostly) are read as one run; with a `spare` connection in the same
    snapshot, half the runs on each."""
    if not subjects:
        return b""
    s, h, i = np.asarray(subjects, np.int64), np.asarray(hours, float), np.asarray(index, np.int64)
    order = np.lexsort((i, h, s))
    s, h, i = s[order], h[order], i[order]
    starts = np.flatnonzero(
        np.r_[True, (s[1:] != s[:-1]) | (h[1:] != h[:-1]) | (i[1:] > i[:-1] + 1)]
    )
    first, count = i[starts], np.maximum.reduceat(i, starts) - i[starts] + 1
    keys = [s[starts].tolist(), h[starts].tolist(), first.tolist(), count.tolist()]
    if spare is None or len(starts) < 2 * SHARED_RUNS:
        rows = await conn.fetch(FIXES, *keys)
    else:
        half = len(starts) // 2
        mine, theirs = await asyncio.gather(
            conn.fetch(FIXES, *(k[:half] for k in keys)),
            spare.fetch(FIXES, *(k[half:] for k in keys)),
        )
        rows = mine + theirs
    if [len(r[0]) for r in rows] != (32 * count).tolist():
        raise LookupError("a tile changed under a snapshot")  # cannot happen in one snapshot
    stored = np.frombuffer(b"".join(r[0] for r in rows), ">f8").reshape(-1, 4)
    run = np.searchsorted(starts, np.arange(len(i)), "right") - 1  # each fix's run
    at = np.empty(len(i), np.int64)
    at[order] = np.r_[0, np.cumsum(count)[:-1]][run] + i - first[run]
    return stored[at].tobytes()


# Tile summaries of the hours starting in [$1, $2] (Unix times), packed as float8 in
# the order of torch.screen.Tiles, in subject and time order.
TILE_SUMMARIES = """
SELECT subject_id,
       float8send(date_part('epoch', tile_start)) || float8send(n::float8)
       || float8send(date_part('epoch', first_at))
       || float8send(date_part('epoch', last_at))
       || float8send(first_x) || float8send(first_y) || float8send(last_x) || float8send(last_y)
       || float8send(min_x) || float8send(min_y) || float8send(max_x) || float8send(max_y)
       || float8send(longest_s) || float8send(coalesce(max_acc, 'NaN')) AS packed
FROM track_tiles
WHERE tile_start >= to_timestamp($1) AND tile_start <= to_timestamp($2)
ORDER BY subject_id, tile_start
"""

ASSIGNMENTS = """
SELECT subject_id,
       coalesce(date_part('epoch', lower(during)), '-Infinity') AS since,
       coalesce(date_part('epoch', upper(during)), 'Infinity') AS until
FROM device_assignments
WHERE during && tstzrange(to_timestamp($1), to_timestamp($2), '[]')
"""

SPAN_PENDING = (
    "SELECT DISTINCT subject_id FROM ("
    + PENDING.format(first="to_timestamp($1)", last="to_timestamp($2)")
    + ") p"
)


class Span(NamedTuple):
    """What screening needs of a span of hours: tile summaries (subject_id, packed),
    assignments (subject_id, since, until) and the subjects with tiles pending."""

    tiles: list[asyncpg.Record]
    assignments: list[asyncpg.Record]
    pending: list[int]


async def span(conn: asyncpg.Connection, first: float, last: float) -> Span:
    """For the hours starting in [first, last] (Unix times)."""
    return Span(
        await conn.fetch(TILE_SUMMARIES, first, last),
        await conn.fetch(ASSIGNMENTS, first, last + 3600),
        [r[0] for r in await conn.fetch(SPAN_PENDING, first, last)],
    )


TILE_TRACKS = """
SELECT subject_id, track FROM track_tiles
WHERE subject_id = ANY($1::bigint[])
  AND tile_start >= date_bin('1 hour', to_timestamp($2), TIMESTAMPTZ '2000-01-01 00:00:00+00')
  AND tile_start <= to_timestamp($3)
ORDER BY subject_id, tile_start
"""


async def tile_tracks(
    conn: asyncpg.Connection, subjects: Sequence[int], start: float, end: float
) -> dict[int, bytes]:
    """The packed exact fixes (t, x, y, acc as float8) of these subjects' tiles of the
    hours that hold [start, end] (Unix times), in time order, by subject."""
    rows = await conn.fetch(TILE_TRACKS, list(subjects), start, end)
    packed: dict[int, list[bytes]] = {}
    for r in rows:
        packed.setdefault(r["subject_id"], []).append(r["track"])
    return {s: b"".join(parts) for s, parts in packed.items()}


# The fixes as reported (lat, lon) of subjects at fix times (Unix), by the device each wore then.
REPORTED = """
SELECT k.subject_id, k.t, f.lat, f.lon
FROM unnest($1::bigint[], $2::float8[]) AS k (subject_id, t)
JOIN device_assignments a ON a.subject_id = k.subject_id AND a.during @> to_timestamp(k.t)
JOIN fixes f ON f.device_id = a.device_id AND f.fix_time = to_timestamp(k.t)
"""


async def reported(
    conn: asyncpg.Connection, wanted: Sequence[tuple[int, float]]
) -> dict[tuple[int, float], tuple[float, float]]:
    """The latitude and longitude, as reported, of each (subject_id, fix time) that the
    tiles give in grid metres only."""
    if not wanted:
        return {}
    rows = await conn.fetch(REPORTED, [w[0] for w in wanted], [w[1] for w in wanted])
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


async def refs(conn: asyncpg.Connection, subjects: Sequence[int]) -> dict[int, str]:
    rows = await conn.fetch("SELECT id, ref FROM subjects WHERE id = ANY($1::bigint[])", subjects)
    return {r["id"]: r["ref"] for r in rows}


async def record(
    conn: asyncpg.Connection,
    query_id: UUID,
    user_id: int,
    request: dict[str, Any],
    response: bytes,
    version: str,
) -> None:
    """Keep a query and its answer (the JSON bytes as sent) for the evidence pack."""
    await conn.execute(
        "INSERT INTO proximity_queries (id, user_id, request, response, version)"
        " VALUES ($1, $2, $3::jsonb, $4, $5)",
        query_id,
        user_id,
        json.dumps(request),
        response,
        version,
    )


@dataclass(frozen=True, slots=True)
class RecordedQuery:
    id: UUID
    user_id: int
    at: datetime
    request: dict[str, Any]
    response: dict[str, Any]
    version: str
    sent: bytes  # the answer as the API sent it, which `response` parses


async def recorded(conn: asyncpg.Connection, query_id: UUID) -> RecordedQuery | None:
    row = await conn.fetchrow(
        "SELECT id, user_id, at, request, response, version FROM proximity_queries WHERE id = $1",
        query_id,
    )
    if row is None:
        return None
    return RecordedQuery(
        row["id"],
        row["user_id"],
        row["at"],
        json.loads(row["request"]),
        json.loads(row["response"]),
        row["version"],
        row["response"],
    )
