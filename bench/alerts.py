"""Alert latency under load, and the cost of the zone check per fix.

    .venv/bin/python bench/alerts.py [--zones 10000] [--rate 5000] [--seconds 60]

Empties the fixes, tiles and alerts of torch_bench (so every run starts alike; this
wipes what bench/query.py loaded), registers 2,000 tagged subjects with --zones
exclusion zones between them (500 m squares 2-4 km from each subject's home), starts
the ingest worker and the API on their own broker (port 18850), and publishes
the subjects' fixes at --rate a second (each wanders around home, never near
a zone). Meanwhile a probe tag walks into its own exclusion zone every 4 s:
two fixes inside open a breach, two outside close it. For each breach it
prints the time from publishing the second fix inside to the alert arriving on
MQTT (torch/alerts/#) and on the SSE stream (GET /v1/alerts/stream).

Then it times the zone check alone: the worker's guard with the same zones,
fed batches of 2,000 fixes, in microseconds a fix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import broker  # noqa: E402
from bench.serve import up  # noqa: E402
from ingest.guard import Guard  # noqa: E402
from simulators.output import MqttSink  # noqa: E402
from torch import grid  # noqa: E402
from torch.breach import Rules  # noqa: E402
from torch.fixes import FixReport  # noqa: E402
from torch.intake import Batch, StoredFix  # noqa: E402

DATABASE_URL = os.environ.get(
    "TORCH_BENCH_DATABASE_URL", "postgresql://torch:torch@127.0.0.1:5432/torch_bench"
)
PORT = 18850
API_PORT = 18051
TAGS = 2000
CENTRE = (522000.0, 215000.0)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def home(i: int) -> tuple[float, float]:
    rng = random.Random(i)
    return CENTRE[0] + rng.uniform(-20000, 20000), CENTRE[1] + rng.uniform(-15000, 15000)


def square(x: float, y: float, side: float) -> dict[str, object]:
    corners = [(x, y), (x + side, y), (x + side, y + side), (x, y + side), (x, y)]
    return {
        "type": "Polygon",
        "coordinates": [[list(grid.point_from_grid(cx, cy)) for cx, cy in corners]],
    }


async def setup(zones: int) -> int:
    """Subjects, tags and zones; returns the probe subject's id."""
    from shapely import box

    from torch.store import zones as zone_store
    from torch.zones import Kind

    conn = await asyncpg.connect(DATABASE_URL)
    try:
        # every run starts from the same state: no fixes, tiles or alerts of earlier runs
        # (a day partition grown by earlier runs, or a tile queue left unrefreshed, made runs
        # incomparable)
        await conn.execute(
            "TRUNCATE fixes, device_state, track_tiles, track_tiles_dirty, track_blocks,"
            " track_blocks_dirty, alert_outbox,"
            " alert_actions, alerts, breach_episodes, zone_versions, zones CASCADE"
        )
        serials = [f"A{i:05d}" for i in range(TAGS)] + ["APROBE"]
        refs = [f"IOM-A{i:05d}" for i in range(TAGS)] + ["IOM-APROBE"]
        await conn.execute(
            "INSERT INTO subjects (ref) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", refs
        )
        await conn.execute(
            "INSERT INTO devices (serial, model) SELECT unnest($1::text[]), 'bench-alerts'"
            " ON CONFLICT DO NOTHING",
            serials,
        )
        await conn.execute(
            """
            INSERT INTO device_assignments (device_id, subject_id, during)
            SELECT d.id, s.id, tstzrange(now() - interval '1 day', NULL)
            FROM unnest($1::text[], $2::text[]) AS i(serial, ref)
            JOIN devices d ON d.serial = i.serial JOIN subjects s ON s.ref = i.ref
            WHERE NOT EXISTS (SELECT 1 FROM device_assignments a WHERE a.device_id = d.id)
            """,
            serials,
            refs,
        )
        ids = {r["ref"]: r["id"] for r in await conn.fetch("SELECT id, ref FROM subjects")}
        user = await conn.fetchval(
            "INSERT INTO users (name, role) VALUES ('bench-alerts', 'probation')"
            " ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role RETURNING id"
        )
        rng = random.Random(5)
        since = datetime.now(UTC) - timedelta(hours=1)
        for z in range(zones):
            i = z % TAGS
            hx, hy = home(i)
            angle, away = rng.uniform(0, 2 * math.pi), rng.uniform(2000, 4000)
            x, y = hx + away * math.cos(angle), hy + away * math.sin(angle)
            d = zone_store.Definition(
                Kind.EXCLUSION, f"zone {z}", square(x, y, 500), None,
                box(x, y, x + 500, y + 500), None, since, None,
            )  # fmt: skip
            await zone_store.create(conn, ids[f"IOM-A{i:05d}"], d, user)
            if z % 1000 == 999:
                log(f"zones: {z + 1:,} of {zones:,}")
        px, py = CENTRE
        d = zone_store.Definition(
            Kind.EXCLUSION, "probe zone", square(px, py, 200), None,
            box(px, py, px + 200, py + 200), None, since, None,
        )  # fmt: skip
        await zone_store.create(conn, ids["IOM-APROBE"], d, user)
        return int(ids["IOM-APROBE"])
    finally:
        await conn.close()


def fix(x: float, y: float, t: datetime, acc: float = 8.0) -> bytes:
    lon, lat = grid.point_from_grid(x, y)
    return json.dumps({"ts": t.isoformat(), "lat": lat, "lon": lon, "acc": acc}).encode()


def background(rate: int, seconds: float, sent: Any) -> None:
    """Each tag wanders within 300 m of home; `rate` fixes a second in all. Runs in its own
    process, with positions worked out beforehand, so that making the load costs the
    measuring process nothing and the machine little."""
    rng = random.Random(9)
    places = []
    for k in range(20 * TAGS):
        i = k % TAGS
        hx, hy = home(i)
        lon, lat = grid.point_from_grid(hx + rng.uniform(-300, 300), hy + rng.uniform(-300, 300))
        places.append(
            (f"tags/A{i:05d}/fixes", f'", "lat": {lat:.7f}, "lon": {lon:.7f}, "acc": 8}}')
        )
    sink = MqttSink(
        "127.0.0.1",
        PORT,
        f"bench-alerts-load-{os.getpid()}",
        "bench-relay",
        os.environ["BENCH_RELAY_PW"],
    )
    count, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        topic, rest = places[count % len(places)]
        sink.send(topic, '{"ts": "' + datetime.now(UTC).isoformat() + rest)
        count += 1
        ahead = count / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    sink.close()
    sent.value = count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()

    state = broker.fresh(PORT)
    env = dict(
        os.environ,
        TORCH_DATABASE_URL=DATABASE_URL,
        TORCH_ADMIN_DATABASE_URL=DATABASE_URL,
        TORCH_MQTT_PORT=str(PORT),
        TORCH_API_PORT=str(API_PORT),
        TORCH_WORKER_ID=f"bench-alerts-{os.getpid()}",
        TORCH_SILENT_AFTER_S=str(10 * 365 * 86400),  # other benches' tags are silent here
    )
    torch_cli = str(ROOT / ".venv/bin/torch")
    subprocess.run([torch_cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    # passwords reach the child processes in their environment, never on a command line
    env["TORCH_MQTT_USERNAME"] = "bench-ingest"
    env["TORCH_MQTT_PASSWORD"] = broker.account("bench-ingest", "ingest", state, DATABASE_URL)
    os.environ["BENCH_RELAY_PW"] = broker.account("bench-relay", "relay", state, DATABASE_URL)
    listener_pw = broker.account("bench-listener", "listener", state, DATABASE_URL)
    log(f"registering {TAGS:,} subjects and {args.zones:,} zones ...")
    asyncio.run(setup(args.zones))
    token = subprocess.run(
        [torch_cli, "user", "add", f"bench{os.getpid()}", "--role", "probation"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.split()[-1]  # fmt: skip

    worker = subprocess.Popen([torch_cli, "ingest"], env=env, stderr=subprocess.PIPE, text=True)
    api = subprocess.Popen(
        [torch_cli, "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert worker.stderr is not None
    while "zones loaded" not in (line := worker.stderr.readline()):
        if not line:
            raise SystemExit("the worker stopped")
    threading.Thread(target=lambda: [None for _ in worker.stderr], daemon=True).start()  # type: ignore[union-attr]
    up(API_PORT)

    mqtt_at: dict[str, float] = {}
    sse_at: dict[str, float] = {}
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-alerts-sub-{os.getpid()}")

    def heard(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        mqtt_at.setdefault(json.loads(m.payload)["episode_id"], time.time())

    listener.on_message = heard
    listener.username_pw_set("bench-listener", listener_pw)
    listener.connect("127.0.0.1", PORT)
    listener.subscribe("torch/alerts/IOM-APROBE", qos=1)
    listener.loop_start()

    def stream() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the API is stopped at the end
            follow()

    def follow() -> None:
        with httpx.stream(
            "GET",
            f"http://127.0.0.1:{API_PORT}/v1/alerts/stream",
            headers={"Authorization": f"Bearer {token}"},
            timeout=None,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if data.get("subject_ref") == "IOM-APROBE" and "episode_id" in data:
                        sse_at.setdefault(data["episode_id"], time.time())

    threading.Thread(target=stream, daemon=True).start()
    spawn = multiprocessing.get_context("spawn")  # not a fork of a process with threads
    sent = spawn.Value("q", 0)
    loader = spawn.Process(target=background, args=(args.rate, args.seconds, sent))
    loader.start()
    time.sleep(3)  # let the load settle

    probe = MqttSink(
        "127.0.0.1",
        PORT,
        f"bench-alerts-probe-{os.getpid()}",
        "bench-relay",
        os.environ["BENCH_RELAY_PW"],
    )
    px, py = CENTRE
    sent_at: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < args.seconds - 8:
        now = datetime.now(UTC)  # two fixes inside half a second apart, then two outside
        probe.send("tags/APROBE/fixes", fix(px + 100, py + 100, now))
        probe.send("tags/APROBE/fixes", fix(px + 110, py + 100, now + timedelta(seconds=0.5)))
        sent_at.append(time.time())
        time.sleep(2)
        now = datetime.now(UTC)
        probe.send("tags/APROBE/fixes", fix(px - 300, py, now))
        probe.send("tags/APROBE/fixes", fix(px - 310, py, now + timedelta(seconds=0.5)))
        time.sleep(2)
    probe.close()
    loader.join()
    time.sleep(3)
    worker.terminate()
    worker.wait(60)
    api.kill()  # its SSE stream to this process would keep it waiting
    api.wait(10)
    listener.loop_stop()

    stages = asyncio.run(probe_episodes())
    episodes = [s.episode_id for s in stages]
    pairs = list(zip(sent_at, episodes, strict=False))
    to_mqtt = [mqtt_at[e] - s for s, e in pairs if e in mqtt_at]
    to_sse = [sse_at[e] - s for s, e in pairs if e in sse_at]
    fixes_per_s = sent.value / args.seconds
    cost = asyncio.run(zone_check_cost())
    print(
        f"{args.zones:,} zones; background {fixes_per_s:,.0f} fixes/s for {args.seconds:.0f} s;"
        f" {len(sent_at)} probe breaches, {len(episodes)} alerts raised"
    )
    print(f"publish to alert on MQTT: {percentiles(to_mqtt)} ({len(to_mqtt)} alerts)")
    print(f"publish to alert on SSE:  {percentiles(to_sse)} ({len(to_sse)} alerts)")
    print(f"zone check: {cost:.1f} us a fix (2,000-fix batches, {args.zones:,} zones)")
    print("where the time goes (p50, p99):")
    steps = [(s, st) for s, st in zip(sent_at, stages, strict=False) if st.published is not None]
    breakdown = {
        "publish -> received by the worker": [st.received - s for s, st in steps],
        "received -> alert committed": [st.committed - st.received for _, st in steps],
        "committed -> broker's PUBACK": [
            st.published - st.committed for _, st in steps if st.published is not None
        ],
    }
    for step, values in breakdown.items():
        print(f"  {step + ':':35} {percentiles(values)}")


class Stages(NamedTuple):
    episode_id: str
    received: float  # the worker took the fix that opened the episode off the broker
    committed: float  # the alert and its outbox entry were committed
    published: float | None  # the broker acknowledged the alert


async def probe_episodes() -> list[Stages]:
    """The probe's episodes in order, with the clock times of each step of their alert."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        rows = await conn.fetch(
            """
            SELECT e.id,
                   extract(epoch FROM (SELECT max(f.received_at) FROM fixes f
                       WHERE f.device_id = d.id AND f.fix_time <= e.entered_at
                         + interval '1 second' AND f.fix_time >= e.entered_at)) AS received,
                   extract(epoch FROM o.created_at) AS committed,
                   extract(epoch FROM o.published_at) AS published
            FROM breach_episodes e
            JOIN subjects s ON s.id = e.subject_id
            JOIN devices d ON d.serial = 'APROBE'
            JOIN alerts a ON a.episode_id = e.id
            JOIN alert_outbox o ON o.alert_id = a.id
            WHERE s.ref = 'IOM-APROBE'
            ORDER BY e.entered_at
            """
        )
        return [
            Stages(
                str(r["id"]),
                float(r["received"]),
                float(r["committed"]),
                None if r["published"] is None else float(r["published"]),
            )
            for r in rows
        ]
    finally:
        await conn.close()


async def zone_check_cost() -> float:
    """The guard's check of 2,000-fix batches, none near a zone, without the database."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        guard = Guard(Rules())
        await guard.reload(conn)
        devices = {
            r["serial"]: r["id"]
            for r in await conn.fetch("SELECT id, serial FROM devices WHERE model = 'bench-alerts'")
        }
    finally:
        await conn.close()
    rng = random.Random(3)
    batches = []
    now = datetime.now(UTC)
    for b in range(20):
        fixes = []
        for k in range(2000):
            i = (b * 2000 + k) % TAGS
            hx, hy = home(i)
            lon, lat = grid.point_from_grid(
                hx + rng.uniform(-300, 300), hy + rng.uniform(-300, 300)
            )
            report = FixReport(f"A{i:05d}", now + timedelta(seconds=b * 2000 + k), lat, lon, 8.0)
            fixes.append(StoredFix(devices[f"A{i:05d}"], now, report))
        batches.append(Batch(fixes=fixes))
    started = time.perf_counter()
    found = 0
    for batch in batches:
        for subject_id, track in guard._tracks(batch).items():
            for f in track:
                for zone_id in guard.zones_of[subject_id]:
                    found += len(
                        guard._watch(subject_id, zone_id).step(f, guard._version(zone_id, f.t))
                    )
    elapsed = time.perf_counter() - started
    assert found == 0, "the background tags never come near a zone"
    return elapsed / (20 * 2000) * 1e6


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:,.0f} ms, p99 {q[98] * 1000:,.0f} ms"


if __name__ == "__main__":
    main()
