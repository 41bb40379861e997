"""Soak: hours of steady load while the worker is killed and the services restarted.

    .venv/bin/python bench/soak.py [--minutes 60] [--rate 2000] [--out .run/soak]

2,000 tags each publish a fix a second (2,000 fixes/s) at QoS 1 through a broker of its own
(port 18850) into a PostgreSQL cluster of its own (Debian's `pg_createcluster`, cluster `soak`
on port 55432, so restarting it disturbs nothing else). Meanwhile:

- the ingest worker is killed with SIGKILL at random (every 5 minutes on average) and started
  again a few seconds later;
- PostgreSQL is restarted once (a third of the way through) and Mosquitto once (two thirds);
- the memory of each process is sampled every 10 s: the worker's and Mosquitto's resident set,
  and PostgreSQL's proportional set summed over all its processes (shared buffers counted once).

At the end it waits for the worker to catch up and checks, against what the publisher sent and
the broker acknowledged, that every fix was stored exactly once. It writes the samples
(`rss.csv`), a plot (`rss.svg`) and the workers' logs into --out, and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import broker  # noqa: E402
from torch import grid  # noqa: E402

PG_PORT = int(os.environ.get("TORCH_SOAK_PG_PORT", "55432"))
MQTT_PORT = int(os.environ.get("TORCH_SOAK_MQTT_PORT", "18850"))
CLUSTER = "soak"
OWNER_URL = f"postgresql://torch:torch@127.0.0.1:{PG_PORT}/torch_soak"
APP_URL = f"postgresql://torch_app:torch@127.0.0.1:{PG_PORT}/torch_soak"
TORCH = str(ROOT / ".venv/bin/torch")
WORKER_ID = "soak"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the services


def pg_version() -> str:
    return sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]


def as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    prefix = (
        ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else ["sudo", "-u", "postgres"]
    )
    return subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)


def psql(sql: str, db: str = "postgres") -> None:
    as_postgres(
        "psql", "-X", "-q", "-p", str(PG_PORT), "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql
    )


def fresh_database() -> None:
    """The soak cluster (created on first use), started, with an empty torch_soak database."""
    version = pg_version()
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if not any(f[:2] == [version, CLUSTER] for f in (line.split() for line in listed.splitlines())):
        log(f"creating PostgreSQL cluster {version}/{CLUSTER} on port {PG_PORT}")
        subprocess.run(
            ["pg_createcluster", version, CLUSTER, "--port", str(PG_PORT)],
            check=True,
            capture_output=True,
        )
    subprocess.run(["pg_ctlcluster", version, CLUSTER, "start"], capture_output=True)
    psql("DROP DATABASE IF EXISTS torch_soak")
    psql(
        "DO $$ BEGIN"
        " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'torch') THEN"
        "  CREATE ROLE torch LOGIN PASSWORD 'torch'; END IF;"
        " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'torch_app') THEN"
        "  CREATE ROLE torch_app LOGIN PASSWORD 'torch'; END IF; END $$"
    )
    psql("CREATE DATABASE torch_soak OWNER torch")
    psql("CREATE EXTENSION postgis; CREATE EXTENSION btree_gist", db="torch_soak")


def restart_postgres() -> None:
    subprocess.run(["pg_ctlcluster", pg_version(), CLUSTER, "restart"], check=True)


def postgres_pids() -> list[int]:
    """The postmaster of the soak cluster and its children."""
    data = Path(f"/var/lib/postgresql/{pg_version()}/{CLUSTER}/postmaster.pid")
    try:
        main = int(data.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [main]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == main:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def pss_mb(pids: list[int]) -> float | None:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024 if total else None


async def register(tags: int) -> None:
    conn = await asyncpg.connect(OWNER_URL)
    try:
        serials = [f"S{i:05d}" for i in range(tags)]
        refs = [f"IOM-S{i:05d}" for i in range(tags)]
        await conn.execute("INSERT INTO subjects (ref) SELECT unnest($1::text[])", refs)
        await conn.execute(
            "INSERT INTO devices (serial, model) SELECT unnest($1::text[]), 'soak'", serials
        )
        await conn.execute(
            """
            INSERT INTO device_assignments (device_id, subject_id, during)
            SELECT d.id, s.id, tstzrange(now() - interval '1 day', NULL)
            FROM unnest($1::text[], $2::text[]) AS i(serial, ref)
            JOIN devices d ON d.serial = i.serial JOIN subjects s ON s.ref = i.ref
            """,
            serials,
            refs,
        )
    finally:
        await conn.close()


class Worker:
    """`torch ingest`, the same worker id (and so the same broker session) every life."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self._env, self._logs = env, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0

    def start(self) -> None:
        self.lives += 1
        with (self._logs / f"worker-{self.lives:02d}.log").open("wb") as out:
            self.proc = subprocess.Popen([TORCH, "ingest"], env=self._env, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)


# ----------------------------------------------------------------- the publisher


def publish(
    tags: int, rate: int, seconds: float, password: str, sent: Any, acked: Any, done: Any
) -> None:
    """Child process: every tag a fix each tags/rate seconds, stamped with the clock, each
    within 200 m of its home, for `seconds`; then waits until the broker has acknowledged
    every message (through its restarts: a persistent session, resent on reconnect)."""
    rng = random.Random(11)
    walks = []
    for i in range(tags):
        hx, hy = 510_000 + (i % 50) * 600, 200_000 + (i // 50) * 600
        steps = []
        for k in range(60):
            a = 2 * math.pi * k / 60
            lon, lat = grid.point_from_grid(
                hx + 200 * math.cos(a) + rng.uniform(-5, 5), hy + 200 * math.sin(a)
            )
            steps.append(f'", "lat": {lat:.7f}, "lon": {lon:.7f}, "acc": 8, "batt": 90}}')
        walks.append((f"tags/S{i:05d}/fixes", steps))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-pub", protocol=mqtt.MQTTv5)
    client.username_pw_set("soak-relay", password)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(1, 2)
    count = {"acked": 0}

    def on_publish(*_: object) -> None:
        count["acked"] += 1

    client.on_publish = on_publish
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(
        "127.0.0.1", MQTT_PORT, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props
    )
    client.loop_start()
    period = tags / rate
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    began = time.monotonic() + 1
    n = 0
    rounds = int(seconds / period)
    for r in range(rounds):
        stamp = (start + timedelta(seconds=r * period)).isoformat()
        for topic, steps in walks:
            wait = began + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            client.publish(topic, '{"ts": "' + stamp + steps[r % 60], qos=1)
            n += 1
            if n % 1000 == 0:
                sent.value, acked.value = n, count["acked"]
    sent.value = n
    while count["acked"] < n:
        acked.value = count["acked"]
        time.sleep(0.2)
    acked.value = count["acked"]
    client.disconnect()
    client.loop_stop()
    done.set()


# ------------------------------------------------------------------- measuring


@dataclass
class Samples:
    rows: list[tuple[float, float | None, float | None, float | None]] = field(
        default_factory=list
    )  # minutes, worker RSS, Mosquitto RSS, PostgreSQL PSS (MB)
    events: list[tuple[float, str]] = field(default_factory=list)


async def newest_lag() -> float | None:
    """Seconds between now and the newest fix stored (the worker's lag behind the tags)."""
    try:
        conn = await asyncpg.connect(OWNER_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return None
    try:
        lag = await conn.fetchval(
            "SELECT extract(epoch FROM now() - max(fix_time)) FROM fixes"
            " WHERE fix_time > now() - interval '10 minutes'"
        )
        return None if lag is None else float(lag)
    except (OSError, asyncpg.PostgresError):
        return None
    finally:
        await conn.close()


async def stored() -> tuple[int, int, int]:
    """Fixes stored, distinct (device, fix time) among them, and dead letters."""
    conn = await asyncpg.connect(OWNER_URL)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (device_id, fix_time)) AS d FROM fixes"
        )
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
        return int(row["n"]), int(row["d"]), int(dead)
    finally:
        await conn.close()


async def wal_bytes() -> int:
    """The WAL the soak cluster has written since it was made."""
    conn = await asyncpg.connect(OWNER_URL)
    try:
        return int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
    finally:
        await conn.close()


async def sizes() -> dict[str, int]:
    """Bytes on disk: the fixes (all partitions, indexes included), and the track tiles and
    blocks (with their TOAST and indexes)."""
    conn = await asyncpg.connect(OWNER_URL)
    try:
        fixes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            " WHERE inhparent = 'fixes'::regclass"
        )
        tiles = await conn.fetchval(
            "SELECT pg_total_relation_size('track_tiles') + pg_total_relation_size('track_blocks')"
        )
        return {"fixes": int(fixes or 0), "tiles": int(tiles or 0)}
    finally:
        await conn.close()


def plot(samples: Samples, path: Path) -> None:
    """Three panels (worker, Mosquitto, PostgreSQL) of memory against time, with the events."""
    names = ["ingest worker (RSS)", "Mosquitto (RSS)", "PostgreSQL, all processes (PSS)"]
    colours = {"kill": "#c0392b", "postgres": "#2471a3", "mosquitto": "#1e8449"}
    width, panel, left, top = 900, 170, 70, 30
    end = max((r[0] for r in samples.rows), default=1.0) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + 3 * panel + 40}"'
        ' font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">TORCH soak: memory over {end:.0f} minutes'
        " (red: worker killed, blue: PostgreSQL restarted, green: Mosquitto restarted)</text>",
    ]
    plot_w = width - left - 20
    for k, name in enumerate(names):
        y0 = top + k * panel
        values = [(r[0], v) for r in samples.rows if (v := r[k + 1]) is not None]
        peak = max((v for _, v in values), default=1.0) * 1.15 or 1.0
        h = panel - 35

        def xy(t: float, v: float, y0: float = y0, h: int = h, peak: float = peak) -> str:
            return f"{left + plot_w * t / end:.1f},{y0 + 10 + h * (1 - v / peak):.1f}"

        out.append(
            f'<rect x="{left}" y="{y0 + 10}" width="{plot_w}" height="{h}" fill="none"'
            ' stroke="#999"/>'
        )
        out.append(f'<text x="{left + 6}" y="{y0 + 24}">{name}</text>')
        for frac in (0, 0.5, 1):
            v = peak * frac
            out.append(
                f'<text x="{left - 6}" y="{y0 + 14 + h * (1 - frac):.0f}"'
                f' text-anchor="end">{v:.0f} MB</text>'
            )
        for t, kind in samples.events:
            x = left + plot_w * t / end
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + 10}" y2="{y0 + 10 + h}"'
                f' stroke="{colours[kind]}" stroke-width="1" opacity="0.7"/>'
            )
        segment: list[str] = []
        last_t = None
        for t, v in values:  # a break in the line where the process was down
            if last_t is not None and t - last_t > 0.5 and segment:
                out.append(_polyline(segment))
                segment = []
            segment.append(xy(t, v))
            last_t = t
        if segment:
            out.append(_polyline(segment))
    bottom = top + 3 * panel
    for m in range(0, int(end) + 1, max(5, int(end) // 12 or 1)):
        x = left + plot_w * m / end
        out.append(f'<text x="{x:.0f}" y="{bottom + 5}" text-anchor="middle">{m} min</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def _polyline(points: list[str]) -> str:
    return f'<polyline fill="none" stroke="#333" stroke-width="1.2" points="{" ".join(points)}"/>'


# ------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=int, default=2000, help="fixes a second, all tags")
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--kill-every", type=float, default=5, help="mean minutes between kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / ".run/soak")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    rng = random.Random(args.seed)

    fresh_database()
    state = broker.fresh(MQTT_PORT)
    env = dict(
        os.environ,
        TORCH_DATABASE_URL=APP_URL,
        TORCH_ADMIN_DATABASE_URL=OWNER_URL,
        TORCH_MQTT_HOST="127.0.0.1",
        TORCH_MQTT_PORT=str(MQTT_PORT),
        TORCH_WORKER_ID=WORKER_ID,
        TORCH_BROKER_DIR=str(state),
    )
    subprocess.run([TORCH, "db", "upgrade"], env=env, check=True, capture_output=True)
    # passwords reach the child processes in their environment, never on a command line
    env["TORCH_MQTT_USERNAME"] = "soak-ingest"
    env["TORCH_MQTT_PASSWORD"] = broker.account("soak-ingest", "ingest", state, OWNER_URL)
    relay = broker.account("soak-relay", "relay", state, OWNER_URL)
    asyncio.run(register(args.tags))
    wal_before = asyncio.run(wal_bytes())

    events: list[tuple[float, str]] = [(seconds / 3, "postgres"), (2 * seconds / 3, "mosquitto")]
    t = 0.0
    while (t := t + rng.expovariate(1 / (args.kill_every * 60))) < seconds - 60:
        events.append((t, "kill"))
    events.sort()
    log(
        f"soak: {args.rate:,} fixes/s from {args.tags:,} tags for {args.minutes:g} min;"
        f" {sum(e[1] == 'kill' for e in events)} worker kills, PostgreSQL restarted at"
        f" {seconds / 180:.0f} min, Mosquitto at {seconds / 90:.0f} min; output in {args.out}"
    )

    worker = Worker(env, args.out)
    worker.start()
    sent, acked = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)
    done = multiprocessing.Event()
    publisher = multiprocessing.Process(
        target=publish, args=(args.tags, args.rate, seconds, relay, sent, acked, done)
    )
    publisher.start()
    samples = Samples()
    began = time.monotonic()
    pidfile = state / "mosquitto.pid"
    next_sample = next_report = 0.0
    try:
        while not done.is_set():
            now = time.monotonic() - began
            while events and events[0][0] <= now:
                _, kind = events.pop(0)
                samples.events.append((now / 60, kind))
                if kind == "kill":
                    worker.kill()
                    time.sleep(rng.uniform(1, 10))
                    worker.start()
                elif kind == "postgres":
                    restart_postgres()
                else:
                    subprocess.run(
                        [str(ROOT / "scripts/broker.sh"), "restart", str(state), str(MQTT_PORT)],
                        check=True,
                    )
                what = "worker killed and restarted" if kind == "kill" else f"{kind} restarted"
                log(f"  {now / 60:5.1f} min: {what}")
            if now >= next_sample:
                mosquitto = int(pidfile.read_text()) if pidfile.exists() else None
                samples.rows.append(
                    (
                        now / 60,
                        rss_mb(worker.proc.pid if worker.proc else None),
                        rss_mb(mosquitto),
                        pss_mb(postgres_pids()),
                    )
                )
                next_sample += 10
            if now >= next_report:
                lag = asyncio.run(newest_lag())
                last = samples.rows[-1]
                log(
                    f"[{now / 60:5.1f}/{args.minutes:g} min] published {sent.value:,},"
                    f" acknowledged {acked.value:,}; newest fix stored"
                    f" {'n/a' if lag is None else f'{lag:.1f} s'} ago; RSS worker"
                    f" {last[1] or 0:.0f} MB, Mosquitto {last[2] or 0:.0f} MB, PostgreSQL"
                    f" {last[3] or 0:.0f} MB"
                )
                next_report += 60
            time.sleep(0.5)
        publisher.join()
        expected = sent.value
        log(f"published {expected:,} fixes, all acknowledged; waiting for the worker to store them")
        last_n, last_change = -1, time.monotonic()
        while True:
            n, distinct, dead = asyncio.run(stored())
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            if distinct >= expected or time.monotonic() - last_change > 180:
                break
            time.sleep(5)
    finally:
        worker.stop()
        if publisher.is_alive():
            publisher.terminate()
    with (args.out / "rss.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minutes", "worker_rss_mb", "mosquitto_rss_mb", "postgres_pss_mb"])
        w.writerows(samples.rows)
    plot(samples, args.out / "rss.svg")
    report(args, samples, expected, n, distinct, dead, worker.lives)
    wal = asyncio.run(wal_bytes()) - wal_before
    disk = asyncio.run(sizes())
    print(
        f"WAL written: {wal / 1e9:.2f} GB, {wal / max(n, 1):,.0f} bytes a fix stored;"
        f" on disk: fixes {disk['fixes'] / max(n, 1):,.0f} bytes a fix (indexes included),"
        f" track tiles and blocks {disk['tiles'] / max(n, 1):,.0f} bytes a fix"
    )


def report(
    args: argparse.Namespace,
    samples: Samples,
    expected: int,
    n: int,
    distinct: int,
    dead: int,
    lives: int,
) -> None:
    kills = sum(kind == "kill" for _, kind in samples.events)
    print(
        f"soak: {args.minutes:g} min at {args.rate:,} fixes/s, {args.tags:,} tags;"
        f" {kills} worker kills ({lives} lives), PostgreSQL and Mosquitto restarted once each"
    )
    print(f"fixes published and acknowledged by the broker: {expected:,}")
    print(f"fixes stored: {n:,}; distinct (device, fix time): {distinct:,}; dead letters: {dead}")
    print(f"lost: {expected - distinct:,}; stored twice: {n - distinct:,}")
    # memory: each process's median and peak in each tenth of the run (flat is the goal; the
    # worker starts again from nothing after each kill, so its peak per tenth is what counts)
    names = ["worker RSS", "Mosquitto RSS", "PostgreSQL PSS"]
    print("memory (MB), median / peak in each tenth of the run:")
    print("  minutes      " + "".join(f"{n:>20}" for n in names))
    tenth = args.minutes / 10
    for k in range(10):
        part = [r for r in samples.rows if k * tenth <= r[0] < (k + 1) * tenth]
        cells = []
        for col in range(1, 4):
            vals = sorted(v for r in part if (v := r[col]) is not None)
            cells.append(f"{vals[len(vals) // 2]:.0f} / {vals[-1]:.0f}" if vals else "n/a")
        print(f"  {k * tenth:5.1f}-{(k + 1) * tenth:5.1f}  " + "".join(f"{c:>20}" for c in cells))
    print(f"samples: {args.out / 'rss.csv'}; plot: {args.out / 'rss.svg'}")


if __name__ == "__main__":
    main()
