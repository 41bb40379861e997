"""No fix is lost or doubled through floods, crashes, restarts and several workers."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest

from tests.factories import fix, fixes_topic
from tests.services import Database, Publisher, restart_postgres, wait_for

pytestmark = pytest.mark.slow

SERIALS = [f"R{i:02d}" for i in range(20)]


def register(device: Callable[..., int]) -> None:
    for serial in SERIALS:
        device(serial)


def stream(
    n_fixes: int, per_message: int = 1, duplicate_every: int = 0
) -> list[tuple[str, object]]:
    """Messages holding n_fixes distinct fixes, round-robin over SERIALS, some sent twice.

    Each serial's fixes are a second apart, so (serial, time) is unique per fix.
    """
    messages: list[tuple[str, object]] = []
    next_second = dict.fromkeys(SERIALS, 0)
    for m, start in enumerate(range(0, n_fixes, per_message)):
        serial = SERIALS[m % len(SERIALS)]
        count = min(per_message, n_fixes - start)
        items = [fix(next_second[serial] + k) for k in range(count)]
        next_second[serial] += count
        payload = items[0] if per_message == 1 else items
        messages.append((fixes_topic(serial), payload))
        if duplicate_every and (m + 1) % duplicate_every == 0:
            messages.append((fixes_topic(serial), payload))
    return messages


def publish_in_background(
    publisher: Publisher, messages: list[tuple[str, object]], per_second: float
) -> threading.Thread:
    def run() -> None:
        pause = 1 / per_second
        for topic, payload in messages:
            publisher.send(topic, payload)
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def distinct_fixes(messages: list[tuple[str, object]]) -> int:
    seen = set()
    for topic, payload in messages:
        for item in payload if isinstance(payload, list) else [payload]:
            seen.add((topic, item["ts"]))  # type: ignore[index]
    return len(seen)


def test_stream_has_distinct_times_per_serial() -> None:
    messages = stream(1000, per_message=5, duplicate_every=7)
    assert distinct_fixes(messages) == 1000
    assert len(messages) == 200 + 200 // 7


def test_broker_queues_a_flood_for_a_stopped_worker(
    db: Database, workers, publisher, device
) -> None:  # type: ignore[no-untyped-def]
    register(device)
    worker = workers()
    assert worker.terminate() == 0
    messages = stream(5000)  # five times Mosquitto's default per-client queue
    publisher.send_all(messages)
    publisher.flush()
    assert db.count("fixes") == 0
    worker.start()
    wait_for(lambda: db.count("fixes") == 5000, timeout=60)
    time.sleep(1)
    assert db.count("fixes") == 5000


def test_kill_9_mid_stream_loses_nothing(db: Database, workers, publisher, device) -> None:  # type: ignore[no-untyped-def]
    register(device)
    worker = workers(TORCH_BATCH_SIZE="200")
    messages = stream(4000, per_message=2, duplicate_every=9)
    sender = publish_in_background(publisher, messages, per_second=1500)
    wait_for(lambda: db.count("fixes") > 800)
    worker.kill()
    stored_at_kill = db.count("fixes")
    worker.start()
    sender.join()
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 4000, timeout=60)
    assert 0 < stored_at_kill < 4000
    time.sleep(1)
    assert db.count("fixes") == distinct_fixes(messages) == 4000


def test_postgres_restart_mid_stream_loses_nothing(
    db: Database, workers, publisher, device
) -> None:  # type: ignore[no-untyped-def]
    register(device)
    worker = workers(TORCH_BATCH_SIZE="200")
    messages = stream(3000)
    sender = publish_in_background(publisher, messages, per_second=1000)
    wait_for(lambda: db.count("fixes") > 500)
    restart_postgres()
    db.reconnect()
    sender.join()
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 3000, timeout=60)
    assert "database unavailable" in worker.log.read_text()
    time.sleep(1)
    assert db.count("fixes") == 3000


def test_broker_restart_mid_stream_loses_nothing(
    db: Database, broker, workers, publisher, device
) -> None:  # type: ignore[no-untyped-def]
    register(device)
    workers(TORCH_BATCH_SIZE="200")
    messages = stream(3000)
    sender = publish_in_background(publisher, messages, per_second=1000)
    wait_for(lambda: db.count("fixes") > 500)
    broker.restart()
    sender.join()
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 3000, timeout=60)
    time.sleep(1)
    assert db.count("fixes") == 3000


def test_sigterm_drains_the_batch_and_exits_cleanly(
    db: Database, workers, publisher, device
) -> None:  # type: ignore[no-untyped-def]
    register(device)
    worker = workers(TORCH_FLUSH_INTERVAL_MS="2000", TORCH_BATCH_SIZE="100000")
    publisher.send_all(stream(500))
    publisher.flush()
    time.sleep(0.5)  # received, and waiting in a batch that would flush in 2 s
    started = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - started < 1.9  # it did not wait for the flush interval
    assert db.count("fixes") == 500  # everything received was stored before exit
    assert "ingest worker stopped; stored Written(fixes=500," in worker.log.read_text()


def test_two_workers_share_a_stream_without_loss_or_double(
    db: Database, workers, publisher, device
) -> None:  # type: ignore[no-untyped-def]
    register(device)
    a = workers("wa", TORCH_MQTT_SHARE_GROUP="ingest", TORCH_BATCH_SIZE="100")
    b = workers("wb", TORCH_MQTT_SHARE_GROUP="ingest", TORCH_BATCH_SIZE="100")
    messages = stream(4000)
    publisher.send_all(messages)
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 4000, timeout=60)
    a.terminate()
    b.terminate()
    shares = [_stored(w.log.read_text()) for w in (a, b)]
    assert sum(s[0] for s in shares) == 4000  # every fix stored by exactly one worker
    assert [s[1] for s in shares] == [0, 0]  # and none delivered to both
    assert min(s[0] for s in shares) > 0  # both took part


SHARED_WARNING = "this worker shares its subscription (TORCH_MQTT_SHARE_GROUP)"


def test_a_worker_on_a_shared_subscription_warns_once_subjects_are_watched(
    db: Database, workers, device
) -> None:  # type: ignore[no-untyped-def]
    """Each of several workers checks only the fixes it receives: harmless with nothing to
    check, a warning once a subject has a zone or a protected person (here, a link)."""
    register(device)
    w = workers("ws", TORCH_MQTT_SHARE_GROUP="ingest", TORCH_STATE_FLUSH_MS="200")
    time.sleep(1)  # a few rounds of taking zones and links up
    assert SHARED_WARNING not in w.log.read_text()
    db.execute("INSERT INTO victims (ref) VALUES ('VIC-W')")
    db.execute(
        "INSERT INTO victim_links (subject_id, victim_id, warning_m, breach_m)"
        " SELECT min(s.id), min(v.id), 2000, 500 FROM subjects s, victims v"
    )
    wait_for(lambda: SHARED_WARNING in w.log.read_text())
    time.sleep(1)
    log = w.log.read_text()
    assert log.count(SHARED_WARNING) == 1
    assert "1 subjects have zones or protected persons" in log


def _stored(log: str) -> tuple[int, int]:
    found = re.findall(r"stopped; stored Written\(fixes=(\d+), duplicates=(\d+)", log)
    return int(found[-1][0]), int(found[-1][1])


def test_a_simulated_tag_that_finds_the_broker_down_tries_again_until_it_is_up(
    broker,  # type: ignore[no-untyped-def]
) -> None:
    """A broker starting again refuses connections for a moment (the demo's, after a crash
    in a reload): a simulated tag keeps trying for a while, as a tag would, and its fix
    goes through."""
    from simulators.output import CONNECT_TIMEOUT_S, MqttSink
    from tests.services import MQTT_PORT, PASSWORDS, RELAY

    broker.stop()
    later = threading.Timer(1.5, broker.start)
    later.start()
    started = time.monotonic()
    try:
        sink = MqttSink("127.0.0.1", MQTT_PORT, "sim-retry", RELAY, PASSWORDS[RELAY])
    finally:
        later.join()
    assert 1.5 <= time.monotonic() - started < CONNECT_TIMEOUT_S
    sink.send(fixes_topic("T1"), '{"ts": "2026-11-30T12:00:00Z", "lat": 51.75, "lon": -0.34}')
    sink.close(timeout=10)
    assert (sink.sent, sink.acked) == (1, 1)
