"""All pairs: which of 2,000 subjects were within a distance of each other over 24 hours.

    .venv/bin/python bench/associations.py [--distance 25] [--minutes 5] [--runs 5]

Uses the history that `bench/query.py` loads into torch_bench (2,000 tags, one fix a
minute; run that first, or with --reuse if it is there), and times the association query
over one day in the middle of it: reading every subject's track, screening the pairs, and
solving the candidates exactly. The history's tags keep to their own homes, so --plant
meetings are planted in the tracks read (20 minutes, 5 m apart) and every run checks that
exactly those are found. Prints each step's time and the whole (median of --runs).
Target: under 5 s for 2,000 subjects over 24 hours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torch import association, memory  # noqa: E402

DATABASE_URL = os.environ.get(
    "TORCH_BENCH_DATABASE_URL", "postgresql://torch:torch@127.0.0.1:5432/torch_bench"
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def middle_day(conn: asyncpg.Connection) -> tuple[datetime, datetime]:
    first, last = await conn.fetchrow("SELECT min(tile_start), max(tile_start) FROM track_tiles")
    if first is None or last - first < timedelta(days=2):
        raise SystemExit("no history in torch_bench: run bench/query.py first")
    mid = (first + (last - first) / 2).replace(minute=0, second=0, microsecond=0)
    return mid - timedelta(hours=12), mid + timedelta(hours=12)


async def run(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    start, end = await middle_day(conn)
    rules = association.Rules(args.distance, args.minutes * 60)
    steps: dict[str, list[float]] = {"read tracks": [], "pairs solved": [], "whole": []}
    for r in range(args.runs):
        t0 = time.perf_counter()
        tracks, _ = await association.load(conn, start, end, rules.max_gap_s)
        t1 = time.perf_counter()
        planted = plant(tracks, args.plant, start.timestamp())
        found = association.episodes(tracks, start.timestamp(), end.timestamp(), rules)
        t2 = time.perf_counter()
        steps["read tracks"].append(t1 - t0)
        steps["pairs solved"].append(t2 - t1)
        steps["whole"].append(t2 - t0)
        fixes = sum(len(t.t) for t in tracks)
        pairs = len({(e.a, e.b) for e in found})
        check(found, planted)
        log(f"run {r + 1} of {args.runs}: {t2 - t0:.2f} s ({len(found)} episodes, {pairs} pairs)")
    await conn.close()
    n = len(tracks)
    print(
        f"{n:,} subjects ({n * (n - 1) // 2:,} pairs), {fixes:,} fixes, {start:%Y-%m-%d %H:%M}"
        f" to {end:%Y-%m-%d %H:%M} UTC; within {args.distance:g} m for {args.minutes:g} min"
    )
    print(f"episodes found: {len(found)} ({pairs} pairs); planted: {args.plant} meetings")
    for step, values in steps.items():
        spread = f"min {min(values):.2f}, max {max(values):.2f}"
        median = statistics.median(values)
        print(f"{step + ':':14} median {median:.2f} s ({spread}) over {len(values)} runs")
    print("target: under 5 s for the whole")


def plant(
    tracks: list[association.Track], count: int, start: float
) -> dict[tuple[int, int], float]:
    """Make `count` pairs meet: for 20 minutes from a random hour, subject b's fixes are
    moved to 5 m east of where a is then. Returns the pairs and when each meeting starts."""
    rng = np.random.default_rng(3)
    order = rng.permutation(len(tracks))
    planted = {}
    for k in range(count):
        a, b = tracks[order[2 * k]], tracks[order[2 * k + 1]]
        t0 = start + 3600 * float(rng.integers(2, 21)) + float(rng.integers(0, 3000))
        inside = (b.t >= t0) & (b.t <= t0 + 1200)
        b.x[inside] = np.interp(b.t[inside], a.t, a.x) + 5.0
        b.y[inside] = np.interp(b.t[inside], a.t, a.y)
        planted[min(a.subject_id, b.subject_id), max(a.subject_id, b.subject_id)] = t0
    return planted


def check(found: list[association.Episode], planted: dict[tuple[int, int], float]) -> None:
    """Every planted meeting found, as one episode of about 20 minutes; nothing else (the
    history's tags keep to their own homes)."""
    by_pair = {(e.a, e.b): e for e in found}
    assert len(found) == len(by_pair) == len(planted), (len(found), len(planted))
    for pair, t0 in planted.items():
        e = by_pair[pair]
        assert t0 - 120 <= e.start <= t0 + 60 and 1140 <= e.end - e.start <= 1320, (pair, e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distance", type=float, default=25)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plant", type=int, default=50, help="meetings planted in the tracks")
    args = parser.parse_args()
    memory.keep_freed_memory()
    np.seterr(all="ignore")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
