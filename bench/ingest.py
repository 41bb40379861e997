"""Ingest throughput against the raw limits of Mosquitto and PostgreSQL, measured in one run.

    .venv/bin/python bench/ingest.py [--fixes 1000000]

Four figures, each from the first publish (or the first row sent) to the last
fix received (or committed), all processes on this machine:

1. raw subscriber: a Python paho subscriber at QoS 1 that parses each message
   and discards it: the most a Python process can take from Mosquitto;
2. raw COPY: PostgreSQL COPY of the same rows into the fixes table (with its
   indexes): the most the database can store;
3. the ingest worker, one fix per message;
4. the ingest worker, arrays of 10 fixes per message (a tag's buffered upload).

It uses its own database (torch_bench) and its own broker (port 18840).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pyproj import Transformer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import broker  # noqa: E402
from simulators.output import MqttSink  # noqa: E402

DATABASE_URL = os.environ.get(
    "TORCH_BENCH_DATABASE_URL", "postgresql://torch:torch@127.0.0.1:5432/torch_bench"
)
PORT = int(os.environ.get("TORCH_BENCH_MQTT_PORT", "18840"))
DEVICES = 2000
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the workload


def fix_at(i: int) -> tuple[str, dict[str, object]]:
    """Fix number i: device i % DEVICES, one second apart per device."""
    serial = f"B{i % DEVICES:05d}"
    ts = BASE + timedelta(seconds=i // DEVICES)
    lat = 51.70 + (i % 997) * 1e-4
    lon = -0.40 + (i % 991) * 1e-4
    return serial, {
        "ts": ts.isoformat(),
        "lat": round(lat, 6),
        "lon": round(lon, 6),
        "acc": 8.0,
        "batt": 80,
        "src": "gps",
    }


def messages(n: int, per_message: int) -> list[tuple[str, bytes]]:
    """n fixes as MQTT messages; an array message holds consecutive fixes of one device."""
    out = []
    if per_message == 1:
        for i in range(n):
            serial, fix = fix_at(i)
            out.append((f"tags/{serial}/fixes", json.dumps(fix).encode()))
        return out
    per_device = n // DEVICES
    for d in range(DEVICES):
        for start in range(0, per_device, per_message):
            items = [
                fix_at(d + DEVICES * k)[1]
                for k in range(start, min(start + per_message, per_device))
            ]
            out.append((f"tags/B{d:05d}/fixes", json.dumps(items).encode()))
    # interleave devices as a real fleet would
    out.sort(key=lambda m: (json.loads(m[1])[0]["ts"], m[0]))
    return out


def publish(msgs: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker takes it; returns the first publish time."""
    sink = MqttSink(
        "127.0.0.1", PORT, f"bench-pub-{os.getpid()}", "bench-relay", os.environ["BENCH_RELAY_PW"]
    )
    started = time.monotonic()
    for topic, payload in msgs:
        sink.send(topic, payload)
    sink.close()
    return started


# ----------------------------------------------------------- the raw subscriber


def raw_subscriber(expected: int) -> None:
    """Child process: receive at QoS 1, parse, discard; print the time of the last message."""
    got = 0
    done = __import__("threading").Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal got
        json.loads(msg.payload)
        got += 1
        if got == expected:
            done.set()

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe("tags/+/fixes", qos=1)
        print("ready", flush=True)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    client.username_pw_set("bench-ingest", os.environ["TORCH_MQTT_PASSWORD"])
    client.on_message = on_message
    client.on_connect = on_connect
    client.connect("127.0.0.1", PORT)
    client.loop_start()
    done.wait(900)
    print(f"{time.monotonic()} {got}", flush=True)
    client.loop_stop()


def measure_raw_subscriber(msgs: list[tuple[str, bytes]]) -> float:
    child = subprocess.Popen(
        [sys.executable, __file__, "--raw-subscriber", str(len(msgs))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    started = publish(msgs)
    ended, got = child.stdout.readline().split()
    child.wait()
    assert int(got) == len(msgs), f"raw subscriber got {got} of {len(msgs)}"
    return len(msgs) / (float(ended) - started)


# ------------------------------------------------------------------ raw COPY


async def measure_copy(n: int) -> float:
    from torch.store import ingest

    to_grid = Transformer.from_crs(4326, 27700, always_xy=True)
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute("TRUNCATE fixes")
        ids = await device_ids(conn)
        rows = []
        for i in range(n):
            serial, f = fix_at(i)
            x, y = to_grid.transform(f["lon"], f["lat"])
            rows.append(
                f"{ids[serial]}\t{f['ts']}\t{datetime.now(UTC).isoformat()}\t{f['lat']}\t"
                f"{f['lon']}\tSRID=27700;POINT({x} {y})\t8\t\\N\t\\N\t80\tgps\t\\N\n"
            )
        await ingest.ensure_partitions(
            conn, {(BASE + timedelta(seconds=n // DEVICES)).date(), BASE.date()}
        )
        data = "".join(rows).encode()
        started = time.monotonic()
        await conn.copy_to_table(
            "fixes",
            source=io.BytesIO(data),
            columns=[
                "device_id",
                "fix_time",
                "received_at",
                "lat",
                "lon",
                "position",
                "acc",
                "speed",
                "heading",
                "batt",
                "src",
                "strap",
            ],
        )
        elapsed = time.monotonic() - started
        await conn.execute("TRUNCATE fixes")
        return n / elapsed
    finally:
        await conn.close()


# ------------------------------------------------------------- the worker run


async def device_ids(conn: asyncpg.Connection) -> dict[str, int]:
    return {r["serial"]: r["id"] for r in await conn.fetch("SELECT serial, id FROM devices")}


async def wait_for_fix(serial: str, ts: str, timeout: float = 900) -> float:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        device = await conn.fetchval("SELECT id FROM devices WHERE serial = $1", serial)
        when = datetime.fromisoformat(ts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await conn.fetchval(
                "SELECT 1 FROM fixes WHERE device_id = $1 AND fix_time = $2", device, when
            ):
                return time.monotonic()
            await asyncio.sleep(0.02)
        raise TimeoutError("the last fix never arrived")
    finally:
        await conn.close()


async def count_fixes() -> int:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM fixes"))
    finally:
        await conn.close()


def measure_worker(
    msgs: list[tuple[str, bytes]], n: int, batch_size: int, workers: int = 1
) -> float:
    """Fixes a second through `workers` workers; more than one share one subscription
    ($share/bench/...), and each must have stored its own part, none twice."""
    asyncio.run(truncate())
    ids = [f"bench-{os.getpid()}-{k}" for k in range(workers)]
    procs = []
    for worker_id in ids:
        env = dict(
            os.environ,
            TORCH_DATABASE_URL=DATABASE_URL,
            TORCH_ADMIN_DATABASE_URL=DATABASE_URL,
            TORCH_MQTT_PORT=str(PORT),
            TORCH_WORKER_ID=worker_id,
            TORCH_BATCH_SIZE=str(batch_size),
            TORCH_MQTT_USERNAME="bench-ingest",
            TORCH_WORKER_HTTP_PORT="0",
            TORCH_LOG_FORMAT="text",
        )
        if workers > 1:
            env["TORCH_MQTT_SHARE_GROUP"] = "bench"
        worker = subprocess.Popen(
            [str(ROOT / ".venv/bin/torch"), "ingest"], env=env, stderr=subprocess.PIPE, text=True
        )
        assert worker.stderr is not None
        while "subscribed to" not in worker.stderr.readline():
            pass
        procs.append(worker)
    try:
        last_topic, last_payload = msgs[-1]
        last = json.loads(last_payload)
        last_ts = (last[-1] if isinstance(last, list) else last)["ts"]
        started = publish(msgs)
        asyncio.run(wait_for_fix(last_topic.split("/")[1], last_ts))
        # Batches commit side by side, so the last fix published may not be the last
        # committed: count until every fix is there.
        while (stored := asyncio.run(count_fixes())) < n:
            time.sleep(0.02)
        ended = time.monotonic()
        assert stored == n, f"stored {stored} of {n}"
        return n / (ended - started)
    finally:
        shares = []
        for worker in procs:
            worker.terminate()
            _, out = worker.communicate(timeout=60)
            found = re.findall(r"stored Written\(fixes=(\d+), duplicates=(\d+)", out)
            shares.append((int(found[-1][0]), int(found[-1][1])) if found else (0, 0))
        for worker_id in ids:
            end_session(f"torch-{worker_id}")
        if workers > 1:
            log(
                "    shares: "
                + ", ".join(f"{f:,} fixes ({d} duplicates)" for f, d in shares)
                + f"; {sum(f for f, _ in shares):,} in all"
            )


def end_session(client_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set("bench-ingest", os.environ["TORCH_MQTT_PASSWORD"])
    client.connect("127.0.0.1", PORT, clean_start=True)  # session expiry 0: gone on disconnect
    client.disconnect()


async def truncate() -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute("TRUNCATE fixes, device_state, dead_letters")
    finally:
        await conn.close()


async def register_devices() -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.executemany(
            "INSERT INTO devices (serial, model) VALUES ($1, 'bench') ON CONFLICT DO NOTHING",
            [(f"B{d:05d}",) for d in range(DEVICES)],
        )
    finally:
        await conn.close()


# -------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixes", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-size", type=int, default=2000, help="TORCH_BATCH_SIZE of the worker"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run the worker phases N times")
    parser.add_argument(
        "--phases", default="raw,copy,single,array", help="which of raw,copy,single,array to run"
    )
    parser.add_argument(
        "--workers", default="1", help="worker counts to run the worker phases with, e.g. 1,2"
    )
    parser.add_argument("--raw-subscriber", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_subscriber:
        return raw_subscriber(args.raw_subscriber)

    n = args.fixes - args.fixes % (DEVICES * 10)
    state = broker.fresh(PORT)
    env = dict(os.environ, TORCH_DATABASE_URL=DATABASE_URL, TORCH_ADMIN_DATABASE_URL=DATABASE_URL)
    subprocess.run(
        [str(ROOT / ".venv/bin/torch"), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    # passwords reach the child processes in their environment, never on a command line
    os.environ["TORCH_MQTT_PASSWORD"] = broker.account(
        "bench-ingest", "ingest", state, DATABASE_URL
    )
    os.environ["BENCH_RELAY_PW"] = broker.account("bench-relay", "relay", state, DATABASE_URL)
    asyncio.run(register_devices())

    log(f"building {n:,} fixes for {DEVICES:,} devices ...")
    singles, arrays = messages(n, 1), messages(n, 10)
    phases = set(args.phases.split(","))
    counts = [int(c) for c in args.workers.split(",")]
    by_count: dict[tuple[str, int], float] = {}
    figures = dict.fromkeys(
        ("raw_subscriber", "raw_copy", "worker_single", "worker_array10"), math.nan
    )
    if "raw" in phases:
        log("1/4 raw subscriber (parse and discard, QoS 1) ...")
        figures["raw_subscriber"] = measure_raw_subscriber(singles)
        log(f"    {figures['raw_subscriber']:,.0f} messages/s")
    if "copy" in phases:
        log("2/4 raw PostgreSQL COPY into fixes ...")
        figures["raw_copy"] = asyncio.run(measure_copy(n))
        log(f"    {figures['raw_copy']:,.0f} rows/s")
    for name, msgs, step in (
        ("worker_single", singles, "3/4 ingest worker, one fix per message"),
        ("worker_array10", arrays, "4/4 ingest worker, arrays of 10"),
    ):
        if name.split("_")[1].rstrip("10") not in phases:
            continue
        for count in counts:
            runs = []
            for r in range(args.repeat):
                log(f"{step}, {count} worker(s) (run {r + 1} of {args.repeat}) ...")
                runs.append(measure_worker(msgs, n, args.batch_size, count))
                log(f"    {runs[-1]:,.0f} fixes/s")
            by_count[name, count] = sorted(runs)[len(runs) // 2]  # the median run
        figures[name] = by_count[name, counts[0]]

    print(
        f"fixes: {n:,} ({DEVICES:,} devices), worker batch size {args.batch_size}, "
        f"median of {args.repeat} worker runs"
    )
    print(f"raw subscriber, QoS 1:         {figures['raw_subscriber']:>9,.0f} messages/s")
    print(f"raw COPY into fixes:           {figures['raw_copy']:>9,.0f} rows/s")
    print(
        f"worker, 1 fix per message:     {figures['worker_single']:>9,.0f} fixes/s"
        f"  = {figures['worker_single'] / figures['raw_subscriber']:.0%} of raw subscriber"
        "  (target 80%)"
    )
    print(
        f"worker, arrays of 10:          {figures['worker_array10']:>9,.0f} fixes/s"
        f"  = {figures['worker_array10'] / figures['raw_copy']:.0%} of raw COPY"
        "  (target 50,000 fixes/s)"
    )
    for count in counts[1:]:
        for name, what in (
            ("worker_single", "1 fix per message"),
            ("worker_array10", "arrays of 10"),
        ):
            if (name, count) in by_count:
                ratio = by_count[name, count] / by_count[name, counts[0]]
                print(
                    f"{count} workers, {what + ':':20} {by_count[name, count]:>9,.0f} fixes/s"
                    f"  = {ratio:.2f} x {counts[0]} worker(s)"
                )


if __name__ == "__main__":
    main()
