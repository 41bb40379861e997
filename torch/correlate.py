"""Bulk correlation: many crimes at once, each answered with the subjects present or possible.

Read a CSV of crimes (a bad row is reported by its line number and does not stop
the others), then run each crime through the proximity method: screened against
the track tiles (torch.screen), with the fixes read only of its suspects.
"""

from __future__ import annotations

import asyncio
import csv
import io
import multiprocessing
import multiprocessing.util
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from shapely import Point

from torch import approach, grid, memory, screen
from torch.fixes import service_time
from torch.nearby import SESSION
from torch.proximity import (
    Assessment,
    Params,
    Scene,
    accuracy_between,
    assess,
    closest_in,
    iso,
    judge_whole,
    params_of,
    spike_caveats,
)
from torch.settings import Settings
from torch.store import db
from torch.store import proximity as store

MAX_CRIMES = 10_000
COLUMNS = "crime_ref, offence, lat and lon (or easting and northing), from, to, radius_m"


@dataclass(frozen=True, slots=True)
class Crime:
    line: int
    crime_ref: str
    offence: str
    x: float
    y: float
    start: datetime
    end: datetime
    radius_m: float


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


def parse(
    text: str, area: tuple[float, float, float, float], max_window: timedelta
) -> tuple[list[Crime], list[RowError]]:
    # as spreadsheets write it: a byte-order mark first ("CSV UTF-8"), names in any case
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    named = reader.fieldnames or []
    reader.fieldnames = [(name or "").strip().lower() for name in named]
    header = set(reader.fieldnames)
    needed = {"crime_ref", "from", "to", "radius_m"}
    if not needed <= header or not ({"lat", "lon"} <= header or {"easting", "northing"} <= header):
        found = ",".join(named)
        found = found if len(found) <= 80 else found[:77] + "..."
        return [], [
            RowError(1, f"the header must name {COLUMNS} (comma-separated); it is {found!r}")
        ]
    crimes: list[Crime] = []
    errors: list[RowError] = []
    for row in reader:
        line = reader.line_num
        if len(crimes) + len(errors) >= MAX_CRIMES:
            errors.append(
                RowError(line, f"more than {MAX_CRIMES:,} crimes; the rest were not read")
            )
            break
        try:
            crimes.append(_crime(line, row, area, max_window))
        except ValueError as err:
            errors.append(RowError(line, str(err)))
    return crimes, errors


def _crime(
    line: int, row: dict[str, str], area: tuple[float, float, float, float], max_window: timedelta
) -> Crime:
    ref = _cell(row, "crime_ref")
    if not ref:
        raise ValueError("crime_ref is empty")
    x, y = _where(row, area)
    start, end = _when(row, "from"), _when(row, "to")
    if end <= start:
        raise ValueError("to must be after from")
    if end - start > max_window:
        raise ValueError(f"the window may be at most {max_window.days} days long")
    radius = _number(row, "radius_m")
    if not 0 <= radius <= 5000:
        raise ValueError(f"radius_m {radius:g} is not between 0 and 5000")
    return Crime(line, ref, _cell(row, "offence"), x, y, start, end, radius)


def _cell(row: dict[str, str], name: str) -> str:
    """A cell's text, trimmed; empty where the row is short or the column absent."""
    return (row.get(name) or "").strip()


def _number(row: dict[str, str], name: str) -> float:
    text = _cell(row, name)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None


def _where(row: dict[str, str], area: tuple[float, float, float, float]) -> tuple[float, float]:
    if not any(_cell(row, name) for name in ("lat", "lon", "easting", "northing")):
        raise ValueError("no place: give lat and lon, or easting and northing")
    if _cell(row, "lat") or _cell(row, "lon"):
        lat, lon = _number(row, "lat"), _number(row, "lon")
        west, south, east, north = area
        if not (west <= lon <= east and south <= lat <= north):
            raise ValueError(f"lat {lat:g}, lon {lon:g} is outside the service area")
        return grid.point_to_grid(lon, lat)
    e, n = _number(row, "easting"), _number(row, "northing")
    if not (0 <= e <= 700_000 and 0 <= n <= 1_300_000):
        raise ValueError(f"easting {e:g}, northing {n:g} is not on the British National Grid")
    return e, n


def _when(row: dict[str, str], name: str) -> datetime:
    try:
        return service_time(_cell(row, name))
    except ValueError as err:
        raise ValueError(f"{name} {err}") from None


Progress = Callable[[int], Awaitable[None]]


async def run(
    conn: asyncpg.Connection, crimes: list[Crime], params: Params, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """For each crime, in the order given, the subjects found present or possible.

    Crimes are screened in groups against the track tiles (torch.screen); only the
    suspects of each have their fixes read and assessed. Each group is read in one
    snapshot, so that tiles and fixes agree. The next crime's fixes are asked for before
    this one's are judged, so that PostgreSQL reads while Python computes.
    """
    return [row for rows in await _each(conn, crimes, params, progress) for row in rows]


async def _each(
    conn: asyncpg.Connection, crimes: list[Crime], params: Params, progress: Progress | None = None
) -> list[list[dict[str, Any]]]:
    """`run`'s findings, crime by crime."""
    windows = [
        screen.Window(c.x, c.y, c.radius_m, c.start.timestamp(), c.end.timestamp()) for c in crimes
    ]
    found: dict[int, list[dict[str, Any]]] = {}
    done = 0
    for group in screen.groups(windows, params.max_gap_s):
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            refs, who = await _suspects(conn, [windows[i] for i in group], params)
            reads = [(crimes[i], s, w) for i, (s, w) in zip(group, who, strict=True)]
            async with aclosing(_ahead(conn, reads, params)) as each:
                async for k, got in each:
                    i = group[k]
                    found[i] = _judge(crimes[i], got, refs, params)
                    done += 1
                    if progress is not None:
                        await progress(done)
    return [found[i] for i in range(len(crimes))]


# Crimes a worker process takes at a time (`run_shared`), in order of start, so that they
# share their tiles' reads; progress is told as each such chunk is done.
CHUNK = 250


async def run_shared(
    conn: asyncpg.Connection,
    url: str,
    crimes: list[Crime],
    params: Params,
    workers: int,
    progress: Progress | None = None,
    *,
    chunk: int = CHUNK,
    nice: int = 0,
) -> list[dict[str, Any]]:
    """What `run` finds, with the crimes shared among `workers` processes, each on a
    connection of its own to `url`: correlation is mostly Python's arithmetic, which one
    process does on one core only. Each chunk of crimes is read in snapshots of its own,
    as `run` reads its groups. The workers run `nice` steps below this process, so that
    an API's other requests come first. With one worker, or no more crimes than a chunk
    (not worth starting processes for), `run` on `conn`."""
    processes = processes_for(len(crimes), workers, chunk)
    if processes == 1:
        return await run(conn, crimes, params, progress)
    by_start = sorted(range(len(crimes)), key=lambda i: crimes[i].start)
    chunks = [by_start[k : k + chunk] for k in range(0, len(by_start), chunk)]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # a fork of a running event loop is unsafe
    pool = ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start_worker, initargs=(url, nice)
    )

    async def one(c: list[int]) -> tuple[list[int], list[list[dict[str, Any]]]]:
        return c, await loop.run_in_executor(pool, _run_chunk, [crimes[i] for i in c], params)

    found: dict[int, list[dict[str, Any]]] = {}
    tasks = [asyncio.ensure_future(one(c)) for c in chunks]
    broken = False
    try:
        for next_done in asyncio.as_completed(tasks):
            c, rows = await next_done
            found.update(zip(c, rows, strict=True))
            if progress is not None:
                await progress(len(found))
    except BrokenProcessPool:
        # a worker died or could not start: the pool fails every chunk itself, and a chunk
        # cancelled here meanwhile would make its thread fail setting that error
        broken = True
        raise
    finally:
        if not broken:
            for t in tasks:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # chunks under way finish in their processes, which then close their connections
        pool.shutdown(wait=False, cancel_futures=not broken)
    return [row for i in range(len(crimes)) for row in found[i]]


async def run_as_set(
    conn: asyncpg.Connection,
    settings: Settings,
    crimes: list[Crime],
    progress: Progress | None = None,
    *,
    nice: int = 0,
) -> list[dict[str, Any]]:
    """`run_shared` on the database, with the method's parameters and the worker processes
    that `settings` give."""
    return await run_shared(
        conn,
        settings.database_url.get_secret_value(),
        crimes,
        params_of(settings),
        settings.correlate_workers,
        progress,
        nice=nice,
    )


def processes_for(crimes: int, workers: int, chunk: int = CHUNK) -> int:
    """How many processes `run_shared` correlates this many crimes in: 1 (this one) where
    they are no more than a chunk, else up to `workers`, one for each chunk at most."""
    return 1 if workers <= 1 or crimes <= chunk else min(workers, -(-crimes // chunk))


# A worker process's own event loop and connection (`_start_worker`).
_worker: tuple[asyncio.AbstractEventLoop, asyncpg.Connection] | None = None


def _start_worker(url: str, nice: int) -> None:
    global _worker
    if nice:
        os.nice(nice)
    memory.keep_freed_memory()  # as the process that started it
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(
        db.connect(url, application_name="torch-correlate", settings=SESSION)
    )
    _worker = (loop, conn)
    multiprocessing.util.Finalize(None, _stop_worker, exitpriority=10)


def _stop_worker() -> None:
    if _worker is not None:
        loop, conn = _worker
        loop.run_until_complete(conn.close())
        loop.close()


def _run_chunk(crimes: list[Crime], params: Params) -> list[list[dict[str, Any]]]:
    """In a worker process: `run`'s findings for these crimes, crime by crime."""
    assert _worker is not None, "not in a worker process"
    loop, conn = _worker
    return loop.run_until_complete(_each(conn, crimes, params))


async def _suspects(
    conn: asyncpg.Connection, windows: list[screen.Window], params: Params
) -> tuple[dict[int, str], list[tuple[list[int], list[int]]]]:
    """The references of a group's subjects and, for each crime, its suspects and those
    of them whose tiles show a whole track."""
    g = params.max_gap_s
    data = await store.span(conn, *screen.span(windows, g))
    ids = sorted({r[0] for r in data.tiles} | {r[0] for r in data.assignments})
    index = {s: i for i, s in enumerate(ids)}
    tiles = screen.tiles_of([index[r[0]] for r in data.tiles], [r[1] for r in data.tiles])
    reach = screen.reach(tiles)
    held = np.array([index[r[0]] for r in data.assignments], np.int64)
    since = np.array([r[1] for r in data.assignments], float)
    until = np.array([r[2] for r in data.assignments], float)
    pending = np.zeros(len(ids), bool)
    pending[[index[s] for s in data.pending if s in index]] = True
    out = []
    for w in windows:
        worn = np.zeros(len(ids), bool)
        worn[held[(since <= w.end) & (until > w.start)]] = True
        pieces = np.bincount(held[(since <= w.end + g) & (until > w.start - g)], minlength=len(ids))
        tiled = (pieces == 1) & ~pending
        chosen, whole = screen.suspects(tiles, reach, w, worn, tiled, g, params.default_acc_m)
        out.append(([ids[i] for i in chosen.tolist()], [ids[i] for i in whole.tolist()]))
    return await store.refs(conn, ids), out


@dataclass(frozen=True, slots=True)
class Read:
    """What a crime's judging needs from the database: the packed tile tracks of the
    suspects with a whole track, and the full tracks of the others."""

    tiles: dict[int, bytes]
    tracks: list[store.SubjectTrack]


async def _ahead(
    conn: asyncpg.Connection, reads: list[tuple[Crime, list[int], list[int]]], params: Params
) -> AsyncGenerator[tuple[int, Read], None]:
    """Each crime's read, in order, the next one's first statement already sent while the
    caller judges this one. Closed early (a judging that failed), it leaves the connection
    with nothing in flight."""
    if not reads:
        return
    ahead = asyncio.ensure_future(_read(conn, *reads[0], params))
    try:
        for k in range(len(reads)):
            got = await ahead
            if k + 1 < len(reads):
                ahead = asyncio.ensure_future(_read(conn, *reads[k + 1], params))
                await asyncio.sleep(0)  # sent: PostgreSQL reads while the caller judges
            yield k, got
    finally:
        if not ahead.done():
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


async def _read(
    conn: asyncpg.Connection, c: Crime, suspects: list[int], whole: list[int], params: Params
) -> Read:
    lo = c.start.timestamp() - params.max_gap_s
    hi = c.end.timestamp() + params.max_gap_s
    tiles = await store.tile_tracks(conn, whole, lo, hi) if whole else {}
    rest = sorted(set(suspects) - set(whole))
    tracks = await store.tracks(conn, c.start, c.end, params.max_gap_s, rest) if rest else []
    return Read(tiles, tracks)


def _judge(c: Crime, got: Read, refs: dict[int, str], params: Params) -> list[dict[str, Any]]:
    """The suspects of a crime found present or possible there: those with a whole track
    judged on their tiles' fixes, the others assessed in full on the fixes."""
    scene = Scene(Point(c.x, c.y), c.radius_m, c.start.timestamp(), c.end.timestamp())
    judged: list[tuple[int, Assessment]] = []
    lo, hi = scene.start - params.max_gap_s, scene.end + params.max_gap_s
    for subject_id, packed in got.tiles.items():
        fixes = approach.fix_rows(packed)
        keep = (fixes[:, 0] >= lo) & (fixes[:, 0] <= hi)
        t, x, y, acc = fixes[keep].T
        closest = closest_in(t, x, y, scene, params)
        if closest is not None:
            u = float(accuracy_between(acc[closest.a], acc[closest.b], params))
            a = judge_whole(closest, u, scene, params)
            if a.verdict.places_at_scene:
                found = spike_caveats(t, x, y, acc, (closest.a, closest.b), params)
                a.caveats = [words for _, words in found]
            judged.append((subject_id, a))
    for tr in got.tracks:
        judged.append((tr.subject_id, assess(tr.fixes, scene, params)))
    out = []
    for subject_id, a in sorted(judged, key=lambda j: j[0]):
        if a.verdict.places_at_scene:
            out.append(
                {
                    "line": c.line,
                    "crime_ref": c.crime_ref,
                    "offence": c.offence,
                    "subject_id": subject_id,
                    "subject_ref": refs[subject_id],
                    "verdict": a.verdict.value,
                    "closest_m": None if a.closest_m is None else round(a.closest_m, 1),
                    "closest_at": None if a.closest_at is None else iso(a.closest_at),
                    # why the finding may not hold: it rests on a likely GPS outlier
                    "caveat": " ".join(f"{c[0].upper()}{c[1:]}." for c in a.caveats),
                }
            )
    return out


RESULT_COLUMNS = (
    "line",
    "crime_ref",
    "offence",
    "subject_id",
    "subject_ref",
    "verdict",
    "closest_m",
    "closest_at",
    "caveat",
)


# A cell a spreadsheet would read as a formula (OWASP's "CSV injection"): a crime's reference
# or offence comes from whatever system exported the crimes, and may hold text from anyone.
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def to_csv(found: list[dict[str, Any]]) -> str:
    """The findings as CSV; text that would start a formula is written with a leading `'`,
    which spreadsheets show as text (numbers and times are written as they are)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: _cell_text(v) for k, v in row.items()} for row in found)
    return out.getvalue()


def _cell_text(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA):
        return "'" + value
    return value
