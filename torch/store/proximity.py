"""Reads for the crime-scene query, and the record of each query asked."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from torch.proximity import TrackFix


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
        SELECT a.subject_id, extract(epoch FROM f.fix_time)::float8 AS t,
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


# Per subject who wore a device in the window: when the track tiles show a
# track over the whole window (no interval longer than max_gap from max_gap
# before it to max_gap after it, one assignment, no changes pending), the
# closest approach computed on the tiles: the least distance to the scene of
# each tile's line and of each link between tiles, clipped to the window by
# their measure (the fix time), the time there, and the accuracy of the two
# fixes around it. Ties go to the earlier part, as in torch.proximity.
SUMMARIES = """
WITH wearers AS (
    SELECT a.subject_id, count(*) AS pieces, bool_or(a.during && tstzrange($2, $3, '[]')) AS worn
    FROM device_assignments a
    WHERE a.during && tstzrange($2 - make_interval(secs => $4), $3 + make_interval(secs => $4),
                                '[]')
    GROUP BY a.subject_id
), pending AS (
    SELECT a.subject_id
    FROM track_tiles_dirty d
    JOIN device_assignments a ON a.device_id = d.device_id
     AND a.during && tstzrange(d.tile_start, d.tile_start + interval '1 hour')
    WHERE d.tile_start >= date_bin('1 hour', $2 - make_interval(secs => $4),
                                   TIMESTAMPTZ '2000-01-01 00:00:00+00')
      AND d.tile_start <= $3 + make_interval(secs => $4)
), tiles AS (
    SELECT tt.subject_id, tt.tile_start, tt.first_at, tt.last_at, tt.longest_s,
           tt.first_x, tt.first_y, tt.accs[1] AS first_acc,
           -- a lower bound of the distance: that of the tile's bounding box
           ST_MakeEnvelope(tt.min_x, tt.min_y, tt.max_x, tt.max_y, 27700)
               <#> ST_GeomFromWKB($1, 27700) AS lb,
           -- distances actually reached: those of the tile's first and last fix in the window
           CASE WHEN tt.first_at BETWEEN $2 AND $3
                THEN ST_Distance(ST_SetSRID(ST_MakePoint(tt.first_x, tt.first_y), 27700),
                                 ST_GeomFromWKB($1, 27700)) END AS first_d,
           CASE WHEN tt.last_at BETWEEN $2 AND $3
                THEN ST_Distance(ST_SetSRID(ST_MakePoint(tt.last_x, tt.last_y), 27700),
                                 ST_GeomFromWKB($1, 27700)) END AS last_d,
           lag(tt.last_at) OVER w AS prev_at, lag(tt.last_x) OVER w AS prev_x,
           lag(tt.last_y) OVER w AS prev_y, lag(tt.accs[tt.n]) OVER w AS prev_acc
    FROM wearers s
    JOIN track_tiles tt ON tt.subject_id = s.subject_id
    WHERE s.worn AND s.pieces = 1
      AND tt.tile_start >= date_bin('1 hour', $2 - make_interval(secs => $4),
                                    TIMESTAMPTZ '2000-01-01 00:00:00+00')
      AND tt.tile_start <= $3 + make_interval(secs => $4)
      AND tt.last_at >= $2 - make_interval(secs => $4)
      AND tt.first_at <= $3 + make_interval(secs => $4)
    WINDOW w AS (PARTITION BY tt.subject_id ORDER BY tt.tile_start)
), linked AS (
    -- the segment from the last fix of the tile before to the first of this one,
    -- clipped to the window, where it falls in the window
    SELECT tl.*, l.part AS link, ST_Distance(l.part, ST_GeomFromWKB($1, 27700)) AS link_d
    FROM tiles tl
    LEFT JOIN LATERAL (
        SELECT CASE WHEN tl.prev_at >= $2 AND tl.first_at <= $3 THEN g.line
                    ELSE ST_GeometryN(ST_LocateBetween(g.line, $6, $7), 1) END AS part
        FROM (SELECT ST_SetSRID(ST_MakeLine(
                  ST_MakePointM(tl.prev_x, tl.prev_y, extract(epoch FROM tl.prev_at)::float8),
                  ST_MakePointM(tl.first_x, tl.first_y, extract(epoch FROM tl.first_at)::float8)),
                  27700) AS line) g
        WHERE tl.prev_at IS NOT NULL AND tl.prev_at < $3 AND tl.first_at > $2
        OFFSET 0  -- evaluated once per row, not once per use
    ) l ON true
), judged AS (
    -- whole: the subject's track has no interval longer than max_gap from the first
    -- fix at or before the window to the last at or after it; ub: a distance the
    -- track reaches in the window, so that only tiles whose box is nearer need reading
    SELECT tl.*,
           bool_and(tl.longest_s <= $4 AND (tl.prev_at IS NULL
                    OR tl.first_at - tl.prev_at <= make_interval(secs => $4))) OVER s
           AND min(tl.first_at) OVER s <= $2 AND max(tl.last_at) OVER s >= $3
           AND tl.subject_id NOT IN (SELECT subject_id FROM pending) AS whole,
           coalesce(min(least(tl.first_d, tl.last_d, tl.link_d)) OVER s, 'Infinity') AS ub
    FROM linked tl
    WINDOW s AS (PARTITION BY tl.subject_id)
), parts AS (
    SELECT tl.subject_id, tl.tile_start, false AS link, tl.first_at AS starts,
           ST_Distance(CASE WHEN tl.first_at >= $2 AND tl.last_at <= $3 THEN tt.line
                            ELSE ST_GeometryN(ST_LocateBetween(tt.line, $6, $7), 1) END,
                       ST_GeomFromWKB($1, 27700)) AS d
    FROM judged tl
    JOIN track_tiles tt ON tt.subject_id = tl.subject_id AND tt.tile_start = tl.tile_start
    WHERE tl.whole AND tl.first_at <= $3 AND tl.last_at >= $2 AND tl.lb <= tl.ub
    UNION ALL
    SELECT subject_id, tile_start, true, prev_at, link_d
    FROM judged
    WHERE whole AND link IS NOT NULL
), best AS (
    SELECT DISTINCT ON (subject_id) subject_id, tile_start, link, d
    FROM parts ORDER BY subject_id, d, starts
), chosen AS MATERIALIZED (
    -- the winning part again, with what its closest point needs
    SELECT b.subject_id, b.d, b.link, tt.ts, tt.accs, tt.n, g.part,
           ST_ClosestPoint(g.part, ST_GeomFromWKB($1, 27700)) AS cp,  -- once: materialised
           p.last_acc AS prev_acc, tt.accs[1] AS first_acc
    FROM best b
    JOIN track_tiles tt ON tt.subject_id = b.subject_id AND tt.tile_start = b.tile_start
    LEFT JOIN LATERAL (
        SELECT q.last_x, q.last_y, q.last_at, q.accs[q.n] AS last_acc FROM track_tiles q
        WHERE b.link AND q.subject_id = b.subject_id AND q.tile_start < b.tile_start
        ORDER BY q.tile_start DESC LIMIT 1
    ) p ON true,
    LATERAL (
        SELECT CASE WHEN b.link THEN ST_GeometryN(ST_LocateBetween(ST_SetSRID(ST_MakeLine(
                        ST_MakePointM(p.last_x, p.last_y, extract(epoch FROM p.last_at)::float8),
                        ST_MakePointM(tt.first_x, tt.first_y,
                                      extract(epoch FROM tt.first_at)::float8)), 27700),
                        $6, $7), 1)
                    WHEN tt.first_at >= $2 AND tt.last_at <= $3 THEN tt.line
                    ELSE ST_GeometryN(ST_LocateBetween(tt.line, $6, $7), 1) END AS part
        OFFSET 0
    ) g
), closest AS (
    SELECT b.subject_id, b.d, ST_X(b.cp) AS x, ST_Y(b.cp) AS y, m.m,
           CASE WHEN b.link THEN greatest(coalesce(b.prev_acc, $5), coalesce(b.first_acc, $5))
                -- at a fix, the part that ends there; else the two fixes around
                WHEN k.i > 1 AND b.ts[k.i] = m.m
                THEN greatest(coalesce(b.accs[k.i - 1], $5), coalesce(b.accs[k.i], $5))
                ELSE greatest(coalesce(b.accs[k.i], $5),
                              coalesce(b.accs[least(k.i + 1, b.n)], $5)) END AS u
    FROM chosen b,
         LATERAL (SELECT CASE WHEN ST_GeometryType(b.part) = 'ST_Point' THEN ST_M(b.part)
                              WHEN ST_NPoints(b.part) = 1 THEN ST_M(ST_PointN(b.part, 1))
                              ELSE ST_InterpolatePoint(b.part, b.cp) END AS m) m,
         LATERAL (SELECT width_bucket(m.m, b.ts) AS i) k
)
SELECT s.id, s.ref, c.d, c.x, c.y, c.m, c.u::float8 AS u
FROM wearers w JOIN subjects s ON s.id = w.subject_id LEFT JOIN closest c ON c.subject_id = s.id
WHERE w.worn
ORDER BY s.id
"""


@dataclass(frozen=True, slots=True)
class Summary:
    """A subject who wore a device in the window; the closest approach when the track
    tiles show a track over the whole window, else None for each."""

    subject_id: int
    ref: str
    closest_m: float | None
    x: float | None
    y: float | None
    t: float | None
    acc: float | None


async def summaries(
    conn: asyncpg.Connection,
    scene_wkb: bytes,
    start: datetime,
    end: datetime,
    max_gap_s: float,
    default_acc_m: float,
) -> list[Summary]:
    rows = await conn.fetch(
        SUMMARIES,
        scene_wkb,
        start,
        end,
        max_gap_s,
        default_acc_m,
        start.timestamp(),
        end.timestamp(),
    )
    return [Summary(*r) for r in rows]


async def record(
    conn: asyncpg.Connection,
    query_id: UUID,
    user_id: int,
    request: dict[str, Any],
    response: bytes,
    version: str,
) -> None:
    """Keep a query and its answer (JSON, as sent) for the evidence pack."""
    await conn.execute(
        "INSERT INTO proximity_queries (id, user_id, request, response, version)"
        " VALUES ($1, $2, $3::jsonb, $4::text::jsonb, $5)",
        query_id,
        user_id,
        json.dumps(request),
        response.decode(),
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
    )
