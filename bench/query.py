"""Crime-scene query speed: p50/p95/p99 through the API and for the SQL alone.

    .venv/bin/python bench/query.py [--tags 2000] [--days 10.5] [--queries 200]

Loads `tags` devices with one fix a minute for `days` into the torch_bench
database (generated inside PostgreSQL: each wearer moves around a home in
Hertfordshire), then runs `queries` random crime-scene queries of radius 200 m
through the API, half with one-hour and half with 24-hour windows, and prints
the latencies with the sizes of the fixes table and its indexes. The default
(2,000 tags, 10.5 days) is 30 million fixes; loading takes a while, and
`--reuse` skips it when the data is already there. `--check N` first compares N
answers, every verdict, with the method run on every fix of every subject.

Measured in the same run, the raw limits the figures are set against:
- PostgreSQL: a round trip (`SELECT 1`), and for each query the stored fixes of every
  tile of the hours its window reaches, read as they are on two connections: what an
  answer with no summaries would read;
- HTTP: a bare ASGI app on the API's server (uvicorn, httptools, uvloop) answering the
  same requests with as many bytes as the API's one-hour answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shapely import Point  # noqa: E402

from bench.serve import up  # noqa: E402
from torch import approach, correlate, grid, memory, nearby  # noqa: E402
from torch.proximity import Assessment, Params, Scene, assess  # noqa: E402
from torch.settings import processors  # noqa: E402
from torch.store import proximity as proximity_store  # noqa: E402
from torch.store import tiles  # noqa: E402

DATABASE_URL = os.environ.get(
    "TORCH_BENCH_DATABASE_URL", "postgresql://torch:torch@127.0.0.1:5432/torch_bench"
)
API_PORT = 18050
START = datetime(2026, 11, 1, tzinfo=UTC)

LOAD_DAY = """
INSERT INTO fixes (device_id, fix_time, received_at, lat, lon, position, acc, src)
SELECT d.id, t, t, ST_Y(ll), ST_X(ll), p,
       5 + (k * 7 + extract(minute FROM t)::int) % 25, 'gps'
FROM devices d
-- k: the tag's number in its serial (Q00001 is 1), not its id, which the sequence gives:
-- the same history in every database, however many loads came before
CROSS JOIN LATERAL (SELECT substr(d.serial, 2)::int AS k) AS tag
CROSS JOIN generate_series($1::timestamptz,
                           $1::timestamptz + interval '1 day' - interval '1 minute',
                           interval '1 minute') AS t
CROSS JOIN LATERAL (
    -- each wearer circles a home, 0.4 to 3 km out, at its own pace
    SELECT extract(epoch FROM t) / (900 + k % 700) AS a, 400 + k % 2600 AS r) AS orbit
CROSS JOIN LATERAL (
    -- on torch.grid's lattice of 1/1024 m, as the ingest worker stores positions
    SELECT ST_SnapToGrid(ST_SetSRID(ST_MakePoint(505000 + (k * 7919) % 40000 + r * cos(a),
                                                 195000 + (k * 104729) % 45000 + r * sin(a)),
                                    27700), 1.0 / 1024) AS p
) AS pos
CROSS JOIN LATERAL (SELECT ST_Transform(pos.p, 4326) AS ll) AS geo
WHERE d.model = 'bench-query'
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def load(tags: int, days: float, resume: bool) -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        if not resume:
            await start_empty(conn, tags)
        whole = int(days)
        for day in range(whole + (1 if days > whole else 0)):
            begin = START + timedelta(days=day)
            if resume and await conn.fetchval(DAY_LOADED, begin):
                continue  # each day is one statement: there or not at all
            await conn.execute("SELECT torch_ensure_fix_partitions($1, $1)", begin.date())
            started = time.monotonic()
            await conn.execute(LOAD_DAY, begin)
            log(f"loaded day {day + 1} of {days:g} ({time.monotonic() - started:.0f} s)")
        await conn.execute("ANALYZE fixes")
        # The ingest worker keeps the tiles as fixes arrive; fixes loaded in bulk
        # have them built in one pass.
        started = time.monotonic()
        made = await tiles.rebuild(
            conn, lambda done, total: log(f"track tiles: day {done} of {total}")
        )
        await conn.execute("VACUUM ANALYZE track_tiles")
        await conn.execute("VACUUM ANALYZE track_blocks")
        log(f"built {made:,} track tiles ({time.monotonic() - started:.0f} s)")
    finally:
        await conn.close()


DAY_LOADED = """
SELECT EXISTS (SELECT 1 FROM fixes WHERE fix_time >= $1 AND fix_time < $1 + interval '1 day')
"""


async def start_empty(conn: asyncpg.Connection, tags: int) -> None:
    """No fixes, tiles or alerts; `tags` subjects, each wearing its own tag."""
    await conn.execute(
        "TRUNCATE fixes, track_tiles, track_blocks, track_tiles_dirty, device_state,"
        " device_assignments, devices, subjects CASCADE"
    )
    await conn.execute(
        "INSERT INTO devices (serial, model) SELECT 'Q' || lpad(g::text, 5, '0'), 'bench-query'"
        " FROM generate_series(1, $1) g",
        tags,
    )
    await conn.execute(
        "INSERT INTO subjects (ref)"
        " SELECT 'IOM-Q' || lpad(g::text, 5, '0') FROM generate_series(1, $1) g",
        tags,
    )
    await conn.execute(
        "INSERT INTO device_assignments (device_id, subject_id, during)"
        " SELECT d.id, s.id, tstzrange($1, NULL) FROM devices d JOIN subjects s"
        " ON substr(s.ref, 6) = substr(d.serial, 2)",
        START - timedelta(days=1),
    )


async def sizes() -> list[str]:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        rows = await conn.fetch("""
            SELECT count(*) AS partitions,
                   sum(pg_table_size(c.oid)) AS heap,
                   sum(pg_indexes_size(c.oid)) AS indexes
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'fixes'::regclass""")
        n = await conn.fetchval("SELECT count(*) FROM fixes")
        r = rows[0]
        out = [
            f"fixes: {n:,} rows in {r['partitions']} daily partitions; table "
            f"{r['heap'] / 2**30:.2f} GiB, indexes {r['indexes'] / 2**30:.2f} GiB",
        ]
        for table in ("track_tiles", "track_blocks"):
            t = await conn.fetchrow(
                f"SELECT count(*) AS n, pg_table_size('{table}') AS heap,"
                f" pg_indexes_size('{table}') AS indexes FROM {table}"
            )
            out.append(
                f"{table}: {t['n']:,} rows; table {t['heap'] / 2**30:.2f} GiB, "
                f"indexes {t['indexes'] / 2**30:.2f} GiB"
            )
        return out
    finally:
        await conn.close()


def scenes(n: int, days: float, seed: int = 7) -> list[tuple[float, float, datetime, timedelta]]:
    from torch import grid

    rng = random.Random(seed)
    out = []
    for i in range(n):
        window = timedelta(hours=1 if i % 2 == 0 else 24)
        span = timedelta(days=days) - window
        start = START + timedelta(seconds=rng.uniform(0, span.total_seconds()))
        lon, lat = grid.point_from_grid(rng.uniform(505000, 545000), rng.uniform(195000, 240000))
        out.append((lat, lon, start, window))
    return out


class Timed(asyncpg.Connection):  # type: ignore[misc]
    """A connection that notes when each of its statements was in flight (in `spans`,
    shared by every such connection)."""

    spans: ClassVar[list[tuple[float, float]]] = []

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetch(*args, **kwargs))

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetchval(*args, **kwargs))

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetchrow(*args, **kwargs))

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().execute(*args, **kwargs))

    async def _timed(self, statement: Awaitable[Any]) -> Any:
        started = time.monotonic()
        try:
            return await statement
        finally:
            Timed.spans.append((started, time.monotonic()))


def in_flight(spans: list[tuple[float, float]]) -> float:
    """How long at least one of these statements was in flight."""
    total, reached = 0.0, -math.inf
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return total


@contextlib.asynccontextmanager
async def two_connections(
    connection_class: type[asyncpg.Connection] = asyncpg.Connection,
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """Two connections with the API's session settings: what an answer reads over."""
    conn = await asyncpg.connect(
        DATABASE_URL, server_settings=nearby.SESSION, connection_class=connection_class
    )
    try:
        spare = await asyncpg.connect(
            DATABASE_URL, server_settings=nearby.SESSION, connection_class=connection_class
        )
        try:
            yield conn, spare
        finally:
            await spare.close()
    finally:
        await conn.close()


def scene_of(lat: float, lon: float, start: datetime, window: timedelta) -> Scene:
    """The benchmark's scene: radius 200 m around (lat, lon), for `window` from `start`."""
    geometry = Point(*grid.point_to_grid(lon, lat))
    return Scene(geometry, 200, start.timestamp(), (start + window).timestamp())


async def sql_only(
    queries: list[tuple[float, float, datetime, timedelta]],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each answer with no HTTP (torch.nearby.answer on two connections, as the API), and
    the SQL alone: the time in it with a statement in flight on either connection."""
    times: dict[str, list[float]] = {"1h": [], "24h": []}
    sql: dict[str, list[float]] = {"1h": [], "24h": []}
    async with two_connections(Timed) as (conn, spare):
        for lat, lon, start, window in queries:
            Timed.spans.clear()
            t = time.monotonic()
            await nearby.answer(conn, scene_of(lat, lon, start, window), Params(), spare)
            times[kind(window)].append(time.monotonic() - t)
            sql[kind(window)].append(in_flight(Timed.spans))
    return times, sql


def agrees(fast: Assessment, full: Assessment) -> bool:
    """The answer from the tiles is the method's on every fix: the same verdict, gaps,
    coverage and evidence, and the same closest approach (where the track comes as close
    twice, either moment)."""
    if (fast.closest_m is None) != (full.closest_m is None):
        return False
    if fast.closest_m is not None and abs(fast.closest_m - (full.closest_m or 0.0)) > 1e-6:
        return False
    return (
        fast.verdict == full.verdict
        and fast.coverage == full.coverage
        and [(g.start, g.end, g.reachable) for g in fast.gaps]
        == [(g.start, g.end, g.reachable) for g in full.gaps]
        and fast.evidence == full.evidence
    )


async def check(n: int, days: float) -> tuple[int, int]:
    """Answers to n scenes (half of an hour, half of a day) compared with the method run on
    every fix of every subject: how many verdicts were compared, and how many differ."""
    compared = differ = 0
    async with two_connections() as (conn, spare):
        for i, (lat, lon, start, window) in enumerate(scenes(n, days, seed=99), 1):
            scene = scene_of(lat, lon, start, window)
            fast = await nearby.verdicts(conn, scene, Params(), spare)
            full = await proximity_store.tracks(conn, start, start + window, Params().max_gap_s)
            for v, track in zip(fast, full, strict=True):
                compared += 1
                differ += not agrees(v.assessment, assess(track.fixes, scene, Params()))
            log(f"checked {i} of {n}: {compared:,} verdicts, {differ} differ")
    return compared, differ


def crimes(n: int, days: float, seed: int = 11) -> list[correlate.Crime]:
    """Random crimes over the loaded days: radius 200 m, windows of 1 to 12 hours."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        window = timedelta(hours=rng.uniform(1, 12))
        start = START + timedelta(
            seconds=rng.uniform(0, (timedelta(days=days) - window).total_seconds())
        )
        x, y = rng.uniform(505000, 545000), rng.uniform(195000, 240000)
        out.append(
            correlate.Crime(i + 2, f"BENCH/{i}", "burglary", x, y, start, start + window, 200)
        )
    return out


async def bulk(found: list[correlate.Crime], workers: int) -> tuple[float, int]:
    """Seconds to correlate the crimes as the API does, shared among `workers` processes
    (torch.correlate.run_shared; one: on one connection of this process), and the
    findings."""
    conn = await asyncpg.connect(DATABASE_URL, server_settings=nearby.SESSION)
    try:
        started = time.monotonic()
        done = await correlate.run_shared(conn, DATABASE_URL, found, Params(), workers)
        return time.monotonic() - started, len(done)
    finally:
        await conn.close()


def kind(window: timedelta) -> str:
    return "1h" if window.total_seconds() == 3600 else "24h"


def body_of(i: int, lat: float, lon: float, start: datetime, window: timedelta) -> dict[str, Any]:
    return {
        "crime_ref": f"BENCH/{i}",
        "reason": "query benchmark",
        "scene": {"type": "Point", "coordinates": [lon, lat]},
        "radius_m": 200,
        "from": start.isoformat(),
        "to": (start + window).isoformat(),
    }


def http(
    queries: list[tuple[float, float, datetime, timedelta]], token: str, port: int = API_PORT
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """The time of each query through HTTP, and the size of each answer, by window."""
    times: dict[str, list[float]] = {"1h": [], "24h": []}
    sizes: dict[str, list[int]] = {"1h": [], "24h": []}
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=600,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        for i, (lat, lon, start, window) in enumerate(queries, 1):
            t = time.monotonic()
            response = client.post("/v1/proximity", json=body_of(i, lat, lon, start, window))
            elapsed = time.monotonic() - t
            response.raise_for_status()
            times[kind(window)].append(elapsed)
            sizes[kind(window)].append(len(response.content))
            if port == API_PORT:
                log(
                    f"query {i} of {len(queries)}: {window.total_seconds() / 3600:.0f} h window,"
                    f" {elapsed * 1000:,.0f} ms, {len(response.json()['results'])} verdicts"
                )
    return times, sizes


# ------------------------------------------------------------------ raw limits

# Every tile of the hours starting in [$1, $2] (Unix times), its fixes as stored.
RAW_TILES = """
SELECT subject_id, track FROM track_tiles
WHERE tile_start >= to_timestamp($1) AND tile_start <= to_timestamp($2)
"""


async def raw_postgres(
    queries: list[tuple[float, float, datetime, timedelta]],
) -> tuple[list[float], dict[str, list[float]], dict[str, list[int]]]:
    """PostgreSQL's raw limits, on two connections with the API's session settings:
    round trips of `SELECT 1`, and for each query the time to read the stored fixes of
    every tile of the hours its window reaches (max_gap either side), the first hours on
    one connection and the rest on the other, with the bytes read."""
    trips: list[float] = []
    times: dict[str, list[float]] = {"1h": [], "24h": []}
    read: dict[str, list[int]] = {"1h": [], "24h": []}
    async with two_connections() as (conn, spare):
        for _ in range(200):
            t = time.monotonic()
            await conn.fetchval("SELECT 1")
            trips.append(time.monotonic() - t)
        for i, (_lat, _lon, start, window) in enumerate(queries, 1):
            end = start + window
            plan = approach.plan(start.timestamp(), end.timestamp(), Params().max_gap_s, math.inf)
            first, last = plan.first_hour, plan.last_hour  # the hours the window reaches
            mid = first + 3600 * math.ceil((last - first + 3600) / 7200)  # the spare's first
            t = time.monotonic()
            mine, theirs = await asyncio.gather(
                conn.fetch(RAW_TILES, first, mid - 3600), spare.fetch(RAW_TILES, mid, last)
            )
            times[kind(window)].append(time.monotonic() - t)
            read[kind(window)].append(sum(len(r[1]) for r in mine + theirs))
            if i % 20 == 0:
                log(f"raw PostgreSQL: {i} of {len(queries)} windows read")
    return trips, times, read


RAW_HTTP_PORT = 18059


def raw_http_server(size: int) -> None:
    """A bare ASGI app on the API's server and options, answering every request with
    `size` bytes of JSON (after reading the request's body)."""
    import uvicorn

    body = b"[" + b" " * (size - 2) + b"]"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % size)]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=RAW_HTTP_PORT,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_config=None,
        access_log=False,
    )


def raw_http(queries: list[tuple[float, float, datetime, timedelta]], size: int) -> list[float]:
    """The time of each of these requests to `raw_http_server` answering `size` bytes."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--raw-http", str(size)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        up(RAW_HTTP_PORT)
        times, _ = http(queries, "none", RAW_HTTP_PORT)
        return times["1h"] + times["24h"]
    finally:
        server.terminate()
        server.wait(10)


def percentiles(values: list[float], digits: int = 1) -> str:
    if len(values) < 2:
        return "n/a"
    q = [v * 1000 for v in statistics.quantiles(values, n=100, method="inclusive")]
    return f"p50 {q[49]:,.{digits}f} ms, p95 {q[94]:,.{digits}f} ms, p99 {q[98]:,.{digits}f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--days", type=float, default=10.5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--crimes", type=int, default=10_000, help="for bulk correlation (0: none)")
    parser.add_argument(
        "--bulk-workers",
        type=int,
        default=processors(),
        help="processes bulk correlation shares its crimes among (default: the processors)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep the data already loaded")
    parser.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="first compare N answers with the method run on every fix (slow: 2-15 s each)",
    )
    parser.add_argument("--load-only", action="store_true", help="load the data and stop")
    parser.add_argument(
        "--resume", action="store_true", help="load only the days not yet loaded, then the tiles"
    )
    parser.add_argument("--raw-http", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_http:
        return raw_http_server(args.raw_http)
    memory.keep_freed_memory()  # as the API and `torch correlate` do
    memory.collect_less()  # as the API does
    env = dict(
        os.environ,
        TORCH_DATABASE_URL=DATABASE_URL,
        TORCH_ADMIN_DATABASE_URL=DATABASE_URL,
        TORCH_API_PORT=str(API_PORT),
    )
    subprocess.run(
        [str(ROOT / ".venv/bin/torch"), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    if not args.reuse:
        asyncio.run(load(args.tags, args.days, args.resume))
    if args.load_only:
        return
    if args.check:
        compared, differ = asyncio.run(check(args.check, args.days))
        print(
            f"checked: {compared:,} verdicts of {args.check} answers,"
            f" {differ} differ from the method on every fix"
        )
    name = f"bench{os.getpid()}"
    token = subprocess.run(
        [str(ROOT / ".venv/bin/torch"), "user", "add", name, "--role", "officer"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    api = subprocess.Popen(
        [str(ROOT / ".venv/bin/torch"), "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        up(API_PORT)
        queries = scenes(args.queries, args.days)
        through_api, answered = http(queries, token)
        # on the API's event loop
        answers, sql = uvloop.run(sql_only(queries))
        took, found = (
            uvloop.run(bulk(crimes(args.crimes, args.days), args.bulk_workers))
            if args.crimes
            else (0, 0)
        )
    finally:
        api.terminate()
        api.wait(10)
    trips, raw_reads, raw_bytes = uvloop.run(raw_postgres(queries))
    size = round(statistics.median(answered["1h"]))
    bare = raw_http(queries, size)
    for line in asyncio.run(sizes()):
        print(line)
    print(f"{args.tags:,} subjects; {args.queries} queries of radius 200 m")
    for window in ("1h", "24h"):
        print(f"{window:>3} windows, HTTP: {percentiles(through_api[window])}")
        print(f"{window:>3} windows, no HTTP: {percentiles(answers[window])}")
        print(f"{window:>3} windows, SQL alone: {percentiles(sql[window])}")
    print("raw limits, measured in this run:")
    print(f"  PostgreSQL, a round trip (SELECT 1): {percentiles(trips, 3)}")
    for window in ("1h", "24h"):
        megabytes = statistics.median(raw_bytes[window]) / 1e6
        print(
            f"  PostgreSQL, {window:>3} windows, every stored fix of the hours reached"
            f" ({megabytes:,.1f} MB, two connections): {percentiles(raw_reads[window])}"
        )
        raw = statistics.median(raw_reads[window])
        print(
            f"  {window:>3} windows, p50 against that read: SQL alone"
            f" {statistics.median(sql[window]) / raw:.2f} x, no HTTP"
            f" {statistics.median(answers[window]) / raw:.2f} x,"
            f" HTTP {statistics.median(through_api[window]) / raw:.2f} x"
        )
    print(
        f"  HTTP, a bare app on the API's server answering {size / 1e3:,.0f} kB"
        f" (a one-hour answer's size): {percentiles(bare)}"
    )
    if args.crimes:
        print(
            f"bulk correlation: {args.crimes:,} crimes (1-12 h windows, 200 m) in {took:,.1f} s "
            f"({args.crimes / took:,.0f} crimes/s), {found:,} findings;"
            f" {args.bulk_workers} worker process{'es' if args.bulk_workers != 1 else ''}"
        )


if __name__ == "__main__":
    main()
