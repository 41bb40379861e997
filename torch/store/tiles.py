"""Track tiles: each subject's track by the UTC hour, kept current from the fixes.

A tile holds a subject's fixes of one hour as a line on the British National
Grid whose measure is the fix time, with the times and accuracies beside it
and the longest interval between consecutive fixes. The crime-scene query
reads tiles, not fixes, for every subject whose track covers the window and
passes far from the scene (see torch.store.proximity).

Storing fixes queues the hours they fall in (`track_tiles_dirty`, in the same
transaction); `refresh` drains the queue in one statement, so it sees exactly
the fixes whose queue entries it removes. An hour whose new fixes all come
after its last one is extended; an hour that received a late fix is rebuilt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

HOUR = timedelta(hours=1)

# The queue entry for each hour of fixes that a statement stored (`stored`
# being the fixes it inserted, as a CTE); used by the ingest write.
MARK = """
INSERT INTO track_tiles_dirty (device_id, tile_start, first_new)
SELECT device_id, date_bin('1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00'), min(fix_time)
FROM stored GROUP BY 1, 2
"""

REFRESH = """
WITH drained AS (
    DELETE FROM track_tiles_dirty RETURNING device_id, tile_start, first_new
), touched AS (
    SELECT a.subject_id, d.tile_start, min(d.first_new) AS first_new
    FROM drained d
    JOIN device_assignments a ON a.device_id = d.device_id
     AND a.during && tstzrange(d.tile_start, d.tile_start + interval '1 hour')
    GROUP BY 1, 2
), plan AS (
    SELECT t.subject_id, t.tile_start, t.tile_start + interval '1 hour' AS tile_end,
           coalesce(t.first_new > o.last_at, false) AS appending,
           -- the fixes a tile lacks: those after its last fix when extending, else all
           CASE WHEN t.first_new > o.last_at THEN o.last_at
                ELSE t.tile_start - interval '1 microsecond' END AS after
    FROM touched t
    LEFT JOIN track_tiles o ON o.subject_id = t.subject_id AND o.tile_start = t.tile_start
), sources AS MATERIALIZED (
    -- the devices the subject wore in each tile's hour, and for how long
    SELECT p.subject_id, p.tile_start, p.after, p.tile_end, a.device_id, a.during
    FROM plan p
    JOIN device_assignments a ON a.subject_id = p.subject_id
     AND a.during && tstzrange(p.tile_start, p.tile_end)
), fresh AS (
    SELECT s.subject_id, s.tile_start, f.fix_time, f.position, f.acc,
           f.fix_time - lag(f.fix_time) OVER w AS step
    FROM sources s
    CROSS JOIN LATERAL (
        SELECT f.fix_time, f.position, f.acc FROM fixes f
        WHERE f.device_id = s.device_id AND f.fix_time > s.after AND f.fix_time < s.tile_end
          AND s.during @> f.fix_time
        OFFSET 0  -- along the primary key, per device and hour; never a scan of all fixes
    ) f
    WINDOW w AS (PARTITION BY s.subject_id, s.tile_start ORDER BY f.fix_time)
), built AS (
    SELECT subject_id, tile_start, count(*)::int AS n,
           min(fix_time) AS first_at, max(fix_time) AS last_at,
           coalesce(extract(epoch FROM max(step))::float8, 0) AS longest_s,
           array_agg(extract(epoch FROM fix_time)::float8 ORDER BY fix_time) AS ts,
           array_agg(acc ORDER BY fix_time) AS accs,
           ST_SetSRID(ST_MakeLine(
               ST_MakePointM(ST_X(position), ST_Y(position), extract(epoch FROM fix_time)::float8)
               ORDER BY fix_time), 27700) AS line
    FROM fresh GROUP BY 1, 2
), merged AS (
    SELECT b.subject_id, b.tile_start,
           CASE WHEN p.appending THEN o.n + b.n ELSE b.n END,
           CASE WHEN p.appending THEN o.first_at ELSE b.first_at END,
           b.last_at,
           CASE WHEN p.appending THEN o.first_x ELSE ST_X(ST_StartPoint(b.line)) END,
           CASE WHEN p.appending THEN o.first_y ELSE ST_Y(ST_StartPoint(b.line)) END,
           ST_X(ST_EndPoint(b.line)),
           ST_Y(ST_EndPoint(b.line)),
           CASE WHEN p.appending THEN least(o.min_x, ST_XMin(b.line)) ELSE ST_XMin(b.line) END,
           CASE WHEN p.appending THEN least(o.min_y, ST_YMin(b.line)) ELSE ST_YMin(b.line) END,
           CASE WHEN p.appending THEN greatest(o.max_x, ST_XMax(b.line)) ELSE ST_XMax(b.line) END,
           CASE WHEN p.appending THEN greatest(o.max_y, ST_YMax(b.line)) ELSE ST_YMax(b.line) END,
           CASE WHEN p.appending
                THEN greatest(o.longest_s, b.longest_s,
                              extract(epoch FROM b.first_at - o.last_at)::float8)
                ELSE b.longest_s END,
           CASE WHEN p.appending THEN o.ts || b.ts ELSE b.ts END,
           CASE WHEN p.appending THEN o.accs || b.accs ELSE b.accs END,
           CASE WHEN NOT p.appending THEN b.line
                -- ST_MakeLine merges a joint whose two points have the same x and y,
                -- whatever their times: add the first new point so that it survives.
                WHEN ST_X(ST_EndPoint(o.line)) = ST_X(ST_StartPoint(b.line))
                 AND ST_Y(ST_EndPoint(o.line)) = ST_Y(ST_StartPoint(b.line))
                THEN ST_MakeLine(ST_AddPoint(o.line, ST_StartPoint(b.line)), b.line)
                ELSE ST_MakeLine(o.line, b.line) END
    FROM built b
    JOIN plan p ON p.subject_id = b.subject_id AND p.tile_start = b.tile_start
    LEFT JOIN track_tiles o ON o.subject_id = b.subject_id AND o.tile_start = b.tile_start
), emptied AS (
    -- a rebuilt hour with no fixes left (its device was reassigned)
    DELETE FROM track_tiles o USING plan p
    WHERE NOT p.appending AND o.subject_id = p.subject_id AND o.tile_start = p.tile_start
      AND NOT EXISTS (SELECT 1 FROM built b
                      WHERE b.subject_id = p.subject_id AND b.tile_start = p.tile_start)
), written AS (
    INSERT INTO track_tiles (subject_id, tile_start, n, first_at, last_at,
                             first_x, first_y, last_x, last_y, min_x, min_y, max_x, max_y,
                             longest_s, ts, accs, line)
    SELECT * FROM merged
    ON CONFLICT (subject_id, tile_start) DO UPDATE SET
        n = EXCLUDED.n, first_at = EXCLUDED.first_at, last_at = EXCLUDED.last_at,
        first_x = EXCLUDED.first_x, first_y = EXCLUDED.first_y,
        last_x = EXCLUDED.last_x, last_y = EXCLUDED.last_y,
        min_x = EXCLUDED.min_x, min_y = EXCLUDED.min_y,
        max_x = EXCLUDED.max_x, max_y = EXCLUDED.max_y,
        longest_s = EXCLUDED.longest_s, ts = EXCLUDED.ts, accs = EXCLUDED.accs,
        line = EXCLUDED.line
    RETURNING 1
)
SELECT count(*) FROM written
"""

LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('torch_track_tiles'))"


async def refresh(conn: asyncpg.Connection) -> int | None:
    """Bring the tiles up to date with the fixes stored so far; the number of tiles
    written, or None when another process is doing it."""
    async with conn.transaction():
        if not await conn.fetchval(LOCK):
            return None
        await conn.execute("SET LOCAL work_mem = '64MB'")
        return int(await conn.fetchval(REFRESH))


async def pending(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM track_tiles_dirty"))


async def mark_hours(
    conn: asyncpg.Connection, device_ids: list[int], start: datetime, end: datetime | None
) -> None:
    """Queue every hour of these devices' fixes in [start, end): after assignments change."""
    await conn.execute(
        """
        INSERT INTO track_tiles_dirty (device_id, tile_start, first_new)
        SELECT device_id, date_bin('1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               min(fix_time)
        FROM fixes
        WHERE device_id = ANY($1::bigint[]) AND fix_time >= $2
          AND ($3::timestamptz IS NULL OR fix_time < $3)
        GROUP BY 1, 2
        """,
        device_ids,
        start,
        end,
    )


async def rebuild(
    conn: asyncpg.Connection, progress: Callable[[int, int], None] | None = None
) -> int:
    """Rebuild every tile from the fixes, a day at a time; the number of tiles written."""
    span = await conn.fetchrow("SELECT min(fix_time) AS lo, max(fix_time) AS hi FROM fixes")
    await conn.execute("TRUNCATE track_tiles")
    if span["lo"] is None:
        return 0
    day = span["lo"].replace(hour=0, minute=0, second=0, microsecond=0)
    days = (span["hi"] - day).days + 1
    written = 0
    for i in range(days):
        lo, hi = day + timedelta(days=i), day + timedelta(days=i + 1)
        async with conn.transaction():
            await conn.execute(
                """
                INSERT INTO track_tiles_dirty (device_id, tile_start, first_new)
                SELECT device_id,
                       date_bin('1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                       min(fix_time)
                FROM fixes WHERE fix_time >= $1 AND fix_time < $2 GROUP BY 1, 2
                """,
                lo,
                hi,
            )
        while (done := await refresh(conn)) is None:
            await asyncio.sleep(0.1)
        written += done
        if progress is not None:
            progress(i + 1, days)
    return written
