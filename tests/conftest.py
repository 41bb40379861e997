from __future__ import annotations

import json
import queue
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.services import (
    BROKER_STATE,
    LISTENER,
    MQTT_PORT,
    TORCH,
    Broker,
    Database,
    Publisher,
    Worker,
    mqtt_client,
    service_env,
)


@pytest.fixture(scope="session")
def broker(migrated: None) -> Iterator[Broker]:
    shutil.rmtree(BROKER_STATE, ignore_errors=True)
    b = Broker(BROKER_STATE)
    b.start()
    b.provision()
    yield b
    b.stop()
    shutil.rmtree(BROKER_STATE, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated() -> None:
    """The test database at the newest schema (each test then empties its tables)."""
    subprocess.run([TORCH, "db", "upgrade"], env=service_env(), check=True, capture_output=True)


@pytest.fixture
def db(migrated: None) -> Iterator[Database]:
    database = Database()
    database.reset()
    yield database
    database.close()


@pytest.fixture
def workers(broker: Broker, db: Database, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def make(worker_id: str = "w1", **env: str) -> Worker:
        w = Worker(tmp_path, f"{worker_id}-{tmp_path.name}", **env)
        started.append(w)
        return w.start()

    yield make
    for w in started:
        w.stop()


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    p = Publisher()
    yield p
    p.close()


@pytest.fixture
def device(db: Database) -> Callable[..., int]:
    """Register a device (and a subject wearing it); returns the device id."""

    def make(serial: str = "T1", ref: str | None = None) -> int:
        subject = db.fetchval(
            "INSERT INTO subjects (ref) VALUES ($1) RETURNING id", ref or f"IOM-{serial}"
        )
        device_id = db.fetchval("INSERT INTO devices (serial) VALUES ($1) RETURNING id", serial)
        db.execute(
            "INSERT INTO device_assignments (device_id, subject_id, during)"
            " VALUES ($1, $2, tstzrange($3, NULL))",
            device_id,
            subject,
            datetime(2026, 1, 1, tzinfo=UTC),
        )
        return int(device_id)

    return make


@pytest.fixture
def alerts_heard() -> Iterator[queue.Queue[dict[str, Any]]]:
    """Every alert published on torch/alerts/#, as the listener account hears it."""
    heard: queue.Queue[dict[str, Any]] = queue.Queue()
    client = mqtt_client(f"test-alerts-{uuid.uuid4().hex[:6]}", LISTENER)
    client.on_message = lambda _c, _u, m: heard.put({"topic": m.topic, **json.loads(m.payload)})
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe("torch/alerts/#", qos=1)
    client.connect("127.0.0.1", MQTT_PORT)
    client.loop_start()
    yield heard
    client.disconnect()
    client.loop_stop()
