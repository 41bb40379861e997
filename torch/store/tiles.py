"""Track tiles: each subject's track by the UTC hour, kept current from the fixes.

A tile holds a subject's fixes of one hour on the British National Grid, packed
(`track`: time, easting, northing and accuracy as float8; `sketch`: easting and
northing as float4), with a summary: the first and last fix, the bounding box, the
longest interval between consecutive fixes, and where each five minutes of the hour
begin in `track` (`marks`). Six hours of tiles make a block
(`track_blocks`): their sketches end to end and each hour's summary. The
crime-scene query reads blocks and a few tiles, not fixes, for every subject
whose track covers the window (see torch.store.proximity and torch.approach).

Storing fixes queues the hours they fall in (`track_tiles_dirty`, in the same
transaction); `refresh` drains the queue in one statement, so it sees exactly
the fixes whose queue entries it removes. An hour is tiled once it is over: its
fixes come a few seconds apart for every tag at once, and a tile rewritten whole
each time it grew cost the write-ahead log and the commits of the ingest path
far more than the fixes themselves (the crime-scene query reads the hour still
running from its fixes). Until then each refresh keeps only the earliest of its
queue entries for each device. An hour whose new fixes all come after its last one
is extended; an hour that received a late fix is rebuilt. The blocks of the hours
written are rebuilt in the same transaction.
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

# A fix as a tile's `track` holds it (time, easting, northing, accuracy or NaN, as
# float8; torch.approach.fix_rows reads them), from the columns of `fixes`. The
# accuracy is as the fixes are read for a query (torch.store.proximity). Times here and
# in the queries are date_part('epoch', ...): the same float8 as extract(epoch ...)::float8
# (the nearest to the exact microseconds), without extract's numeric arithmetic, which cost
# a day's query 20 ms of PostgreSQL's time.
PACKED_FIX = """float8send(date_part('epoch', fix_time))
    || float8send(ST_X(position)) || float8send(ST_Y(position))
    || float8send(coalesce(acc::numeric::float8, 'NaN'))"""

# A tile marks where each five minutes of its hour begin in `track`: MARKS + 1 counts of
# the fixes before each span, the last of them every fix of the hour. A block holds
# BLOCK_HOURS hours, and marks where each begins in its sketch likewise.
MARK_S = 300
MARKS = 3600 // MARK_S
BLOCK_HOURS = 6

# The start of the hour still running.
RUNNING = "date_bin('1 hour', now(), TIMESTAMPTZ '2000-01-01 00:00:00+00')"

REFRESH = f"""
WITH drained AS (
    -- hours that are over, the oldest first
    DELETE FROM track_tiles_dirty
    WHERE ctid = ANY (ARRAY(SELECT ctid FROM track_tiles_dirty WHERE tile_start < {RUNNING}
                            ORDER BY tile_start LIMIT $1))
    RETURNING device_id, tile_start, first_new
), folded AS (
    -- the hour still running is tiled once it is over: of its entries (the ingest write
    -- adds one in each batch) only the earliest of each device stays
    DELETE FROM track_tiles_dirty
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM (
            SELECT ctid, row_number() OVER (PARTITION BY device_id, tile_start
                                            ORDER BY first_new, ctid) AS k
            FROM track_tiles_dirty WHERE tile_start >= {RUNNING}
        ) e
        WHERE k > 1))
), touched AS (
    -- the wearers of the device in the hour, and any wearer of it with a tile of that hour
    -- (an assignment ended earlier than it did: the tile may have lost its fixes)
    SELECT a.subject_id, d.tile_start, min(d.first_new) AS first_new
    FROM drained d
    JOIN device_assignments a ON a.device_id = d.device_id
     AND (a.during && tstzrange(d.tile_start, d.tile_start + interval '1 hour')
          OR EXISTS (SELECT 1 FROM track_tiles o
                     WHERE o.subject_id = a.subject_id AND o.tile_start = d.tile_start))
    GROUP BY 1, 2
), plan AS (
    SELECT t.subject_id, t.tile_start, t.tile_start + interval '1 hour' AS tile_end,
           coalesce(t.first_new > o.last_at, false) AS appending,
           -- the fixes a tile lacks: those after its last fix when extending, else all
           CASE WHEN t.first_new > o.last_at THEN o.last_at
                ELSE t.tile_start - interval '1 microsecond' END AS after,
           -- the sketch is relative to the tile's first fix: the old one when extending
           CASE WHEN t.first_new > o.last_at THEN o.first_x END AS origin_x,
           CASE WHEN t.first_new > o.last_at THEN o.first_y END AS origin_y
    FROM touched t
    LEFT JOIN track_tiles o ON o.subject_id = t.subject_id AND o.tile_start = t.tile_start
), sources AS MATERIALIZED (
    -- the devices the subject wore in each tile's hour, and for how long
    SELECT p.subject_id, p.tile_start, p.after, p.tile_end, p.origin_x, p.origin_y,
           a.device_id, a.during
    FROM plan p
    JOIN device_assignments a ON a.subject_id = p.subject_id
     AND a.during && tstzrange(p.tile_start, p.tile_end)
), fresh AS (
    SELECT s.subject_id, s.tile_start, f.fix_time, f.position, f.acc,
           f.fix_time - lag(f.fix_time) OVER w AS step,
           -- which five minutes of the hour (0 to 11)
           floor(date_part('epoch', f.fix_time - s.tile_start) / {MARK_S})::int AS slot,
           coalesce(s.origin_x, ST_X(first_value(f.position) OVER w)) AS origin_x,
           coalesce(s.origin_y, ST_Y(first_value(f.position) OVER w)) AS origin_y
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
           (array_agg(ST_X(position) ORDER BY fix_time))[1] AS first_x,
           (array_agg(ST_Y(position) ORDER BY fix_time))[1] AS first_y,
           (array_agg(ST_X(position) ORDER BY fix_time DESC))[1] AS last_x,
           (array_agg(ST_Y(position) ORDER BY fix_time DESC))[1] AS last_y,
           min(ST_X(position)) AS min_x, min(ST_Y(position)) AS min_y,
           max(ST_X(position)) AS max_x, max(ST_Y(position)) AS max_y,
           max(acc::numeric::float8) AS max_acc,
           array_agg(slot) AS slots,
           string_agg({PACKED_FIX}, ''::bytea ORDER BY fix_time) AS track,
           -- whether the sketch holds every position exactly (torch.grid's lattice)
           bool_and((ST_X(position) - origin_x)::float4::float8 = ST_X(position) - origin_x
                    AND (ST_Y(position) - origin_y)::float4::float8
                        = ST_Y(position) - origin_y) AS exact,
           string_agg(float4send((ST_X(position) - origin_x)::float4)
                      || float4send((ST_Y(position) - origin_y)::float4),
                      ''::bytea ORDER BY fix_time) AS sketch
    FROM fresh GROUP BY 1, 2
), merged AS (
    SELECT b.subject_id, b.tile_start,
           CASE WHEN p.appending THEN o.n + b.n ELSE b.n END,
           CASE WHEN p.appending THEN o.first_at ELSE b.first_at END,
           b.last_at,
           CASE WHEN p.appending THEN o.first_x ELSE b.first_x END,
           CASE WHEN p.appending THEN o.first_y ELSE b.first_y END,
           b.last_x, b.last_y,
           CASE WHEN p.appending THEN least(o.min_x, b.min_x) ELSE b.min_x END,
           CASE WHEN p.appending THEN least(o.min_y, b.min_y) ELSE b.min_y END,
           CASE WHEN p.appending THEN greatest(o.max_x, b.max_x) ELSE b.max_x END,
           CASE WHEN p.appending THEN greatest(o.max_y, b.max_y) ELSE b.max_y END,
           CASE WHEN p.appending
                THEN greatest(o.longest_s, b.longest_s,
                              extract(epoch FROM b.first_at - o.last_at)::float8)
                ELSE b.longest_s END,
           CASE WHEN p.appending THEN greatest(o.max_acc, b.max_acc) ELSE b.max_acc END,
           CASE WHEN p.appending THEN o.exact AND b.exact ELSE b.exact END,
           CASE WHEN p.appending THEN o.track || b.track ELSE b.track END,
           CASE WHEN p.appending THEN o.sketch || b.sketch ELSE b.sketch END,
           -- the old marks plus the new fixes (appended fixes come after the old ones);
           -- none where the old tile had none
           CASE WHEN NOT (p.appending AND o.marks IS NULL) THEN
               ARRAY(SELECT (CASE WHEN p.appending THEN o.marks[k + 1] ELSE 0 END
                             + (SELECT count(*) FROM unnest(b.slots) AS s (slot)
                                WHERE s.slot < k))::smallint
                     FROM generate_series(0, {MARKS}) AS k ORDER BY k)
           END
    FROM built b
    JOIN plan p ON p.subject_id = b.subject_id AND p.tile_start = b.tile_start
    LEFT JOIN track_tiles o ON o.subject_id = b.subject_id AND o.tile_start = b.tile_start
), emptied AS (
    -- a rebuilt hour with no fixes left (its device was reassigned)
    DELETE FROM track_tiles o USING plan p
    WHERE NOT p.appending AND o.subject_id = p.subject_id AND o.tile_start = p.tile_start
      AND NOT EXISTS (SELECT 1 FROM built b
                      WHERE b.subject_id = p.subject_id AND b.tile_start = p.tile_start)
    RETURNING o.subject_id, o.tile_start
), written AS (
    INSERT INTO track_tiles (subject_id, tile_start, n, first_at, last_at,
                             first_x, first_y, last_x, last_y, min_x, min_y, max_x, max_y,
                             longest_s, max_acc, exact, track, sketch, marks)
    SELECT * FROM merged
    ON CONFLICT (tile_start, subject_id) DO UPDATE SET
        n = EXCLUDED.n, first_at = EXCLUDED.first_at, last_at = EXCLUDED.last_at,
        first_x = EXCLUDED.first_x, first_y = EXCLUDED.first_y,
        last_x = EXCLUDED.last_x, last_y = EXCLUDED.last_y,
        min_x = EXCLUDED.min_x, min_y = EXCLUDED.min_y,
        max_x = EXCLUDED.max_x, max_y = EXCLUDED.max_y,
        longest_s = EXCLUDED.longest_s, max_acc = EXCLUDED.max_acc, exact = EXCLUDED.exact,
        track = EXCLUDED.track,
        sketch = EXCLUDED.sketch,
        marks = EXCLUDED.marks
    RETURNING subject_id, tile_start
)
SELECT subject_id, tile_start, true AS kept FROM written
UNION ALL
SELECT subject_id, tile_start, false FROM emptied
"""

# The six-hour blocks that hold the given hours (subject, hour start), rebuilt from
# their hourly tiles; a block whose hours are all gone is removed. An hour not yet over
# (a fix stamped ahead of the database's clock) waits in track_blocks_dirty until it is.
BLOCKS = f"""
WITH given AS (
    SELECT k.subject_id, k.tile_start, k.tile_start >= {RUNNING} AS open
    FROM unnest($1::bigint[], $2::timestamptz[]) AS k (subject_id, tile_start)
), deferred AS (
    INSERT INTO track_blocks_dirty (subject_id, tile_start)
    SELECT subject_id, tile_start FROM given WHERE open
    ON CONFLICT DO NOTHING
), due AS (
    DELETE FROM track_blocks_dirty
    WHERE tile_start < {RUNNING}
    RETURNING subject_id, tile_start
), keys AS (
    SELECT DISTINCT subject_id,
           date_bin('{BLOCK_HOURS} hours', tile_start, TIMESTAMPTZ '2000-01-01 00:00:00+00')
               AS block_start
    FROM (SELECT subject_id, tile_start FROM given WHERE NOT open
          UNION ALL SELECT subject_id, tile_start FROM due) k
), hours AS (
    SELECT k.subject_id, k.block_start, h.i, tt.n, tt.first_at, tt.last_at, tt.longest_s,
           tt.first_x, tt.first_y, tt.exact, tt.sketch
    FROM keys k
    CROSS JOIN generate_series(0, {BLOCK_HOURS - 1}) AS h (i)
    LEFT JOIN track_tiles tt ON tt.subject_id = k.subject_id
     AND tt.tile_start = k.block_start + h.i * interval '1 hour'
), built AS (
    SELECT subject_id, block_start,
           array_agg(coalesce(sum_n, 0)::smallint ORDER BY i) AS marks,
           coalesce(string_agg(float8send(date_part('epoch', block_start) + 3600 * i)
                               || float8send(n::float8)
                               || float8send(date_part('epoch', first_at))
                               || float8send(date_part('epoch', last_at))
                               || float8send(longest_s)
                               || float8send(first_x) || float8send(first_y)
                               || float8send(CASE WHEN exact THEN 1 ELSE 0 END),
                               ''::bytea ORDER BY i), ''::bytea) AS hours,
           coalesce(string_agg(sketch, ''::bytea ORDER BY i), ''::bytea) AS sketch,
           sum(n) AS n
    FROM (SELECT *, sum(n) OVER (PARTITION BY subject_id, block_start ORDER BY i
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS sum_n
          FROM hours
          UNION ALL  -- the last mark: every fix of the block
          SELECT subject_id, block_start, {BLOCK_HOURS},
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                 sum(n) FROM hours GROUP BY 1, 2) h
    GROUP BY 1, 2
), gone AS (
    DELETE FROM track_blocks b USING built w
    WHERE w.n IS NULL AND b.subject_id = w.subject_id AND b.block_start = w.block_start
)
INSERT INTO track_blocks (block_start, subject_id, marks, hours, sketch)
SELECT block_start, subject_id, marks, hours, sketch FROM built WHERE n IS NOT NULL
ON CONFLICT (block_start, subject_id) DO UPDATE SET
    marks = EXCLUDED.marks, hours = EXCLUDED.hours, sketch = EXCLUDED.sketch
"""

LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('torch_track_tiles'))"


# Queue entries of hours that are over (a device's hour each) taken by one refresh: a
# backlog (after a restore, a migration or an outage) is worked through a bounded
# statement at a time.
REFRESH_LIMIT = 10_000


async def refresh(conn: asyncpg.Connection, limit: int = REFRESH_LIMIT) -> int | None:
    """Bring the tiles up to date with the fixes stored so far, `limit` queued hours at a
    time; the number of tiles written, or None when another process is doing it."""
    async with conn.transaction():
        if not await conn.fetchval(LOCK):
            return None
        await conn.execute("SET LOCAL work_mem = '64MB'")
        changed = await conn.fetch(REFRESH, limit)
        await rebuild_blocks(conn, [(r["subject_id"], r["tile_start"]) for r in changed])
        return sum(1 for r in changed if r["kept"])


async def rebuild_blocks(conn: asyncpg.Connection, hours: list[tuple[int, datetime]]) -> None:
    """Bring the six-hour blocks holding these (subject, hour) tiles in line with them."""
    if hours:
        subjects, starts = zip(*hours, strict=True)
        await conn.execute(BLOCKS, list(subjects), list(starts))


async def pending(conn: asyncpg.Connection) -> int:
    """Queued hours that are over: those the next refreshes will tile."""
    return int(
        await conn.fetchval(f"SELECT count(*) FROM track_tiles_dirty WHERE tile_start < {RUNNING}")
    )


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
    await conn.execute("TRUNCATE track_tiles, track_blocks, track_blocks_dirty")
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
        while await pending(conn):
            done = await refresh(conn)
            if done is None:  # the worker is refreshing: let it
                await asyncio.sleep(0.1)
            written += done or 0
        if progress is not None:
            progress(i + 1, days)
    return written
