"""A minimal publisher: N tags walking around Hertfordshire town centres, one fix a second."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from torch.errors import Conflict
from torch.settings import Settings
from torch.store import db, registry

TOWNS = [(51.6565, -0.3903), (51.7527, -0.3394), (51.9038, -0.1966), (51.7959, -0.0781)]


async def _register(settings: Settings, serials: list[str]) -> None:
    conn = await db.connect(settings.database_url.get_secret_value())
    try:
        for i, serial in enumerate(serials):
            ref = f"SIM-{i + 1:04d}"
            for add in (lambda: registry.add_subject(conn, ref, None),
                        lambda: registry.add_device(conn, serial, "sim")):  # fmt: skip
                try:
                    await add()
                except Conflict:
                    pass
            try:
                await registry.assign(conn, serial, ref, datetime(2020, 1, 1, tzinfo=UTC), None)
            except Conflict:
                pass
    finally:
        await conn.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    rng = random.Random(args.seed)
    serials = [f"SIM{i + 1:05d}" for i in range(args.tags)]
    asyncio.run(_register(settings, serials))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"torch-sim-{args.seed}")
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    where = {s: TOWNS[i % len(TOWNS)] for i, s in enumerate(serials)}
    sent = 0
    try:
        while True:
            for serial in serials:
                lat, lon = where[serial]
                angle = rng.uniform(0, 2 * math.pi)
                lat += 1.4 * math.cos(angle) / 111_320
                lon += 1.4 * math.sin(angle) / (111_320 * math.cos(math.radians(lat)))
                where[serial] = (lat, lon)
                fix = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), "lat": round(lat, 6),
                       "lon": round(lon, 6), "acc": 8, "src": "gps"}  # fmt: skip
                client.publish(f"tags/{serial}/fixes", json.dumps(fix), qos=1)
                sent += 1
            print(f"\rsent {sent} fixes from {len(serials)} tags", end="", flush=True)
            time.sleep(1)
    except KeyboardInterrupt:
        print()
    finally:
        client.loop_stop()
        client.disconnect()
    return 0
