"""The broker lets each tag publish only as itself, and nobody in without an account."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from tests.factories import fix
from tests.services import (
    PASSWORDS,
    TORCH,
    Database,
    service_env,
    sign_in,
    torch_cli,
    wait_for,
    wearer,
)


def publish(client: mqtt.Client, topic: str, payload: str | dict[str, object]) -> ReasonCode:
    """Publish at QoS 1 and return the reason code of the broker's PUBACK."""
    acked = threading.Event()
    codes: list[ReasonCode] = []

    def on_publish(_c: object, _u: object, _mid: int, rc: ReasonCode, _p: object) -> None:
        codes.append(rc)
        acked.set()

    client.on_publish = on_publish
    client.publish(topic, payload if isinstance(payload, str) else json.dumps(payload), qos=1)
    assert acked.wait(10), "no PUBACK"
    return codes[0]


def device(serial: str, ref: str, db: Database) -> str:
    """A tag worn by a new subject; returns the broker password `torch device add` printed."""
    return wearer(ref, serial, "2026-01-01T00:00:00Z")


def test_nobody_connects_without_a_live_account(broker, db: Database) -> None:  # type: ignore[no-untyped-def]
    password = device("SEC-A", "IOM-SA", db)
    refused = [
        sign_in(None, None)[1],
        sign_in("SEC-A", "not-the-password")[1],
        sign_in("nobody", password)[1],
    ]
    assert [rc.getName() for rc in refused] == ["Not authorized"] * 3
    client, rc = sign_in("SEC-A", password)
    assert rc.getName() == "Success"
    client.disconnect()
    client.loop_stop()

    # a new password replaces the old one at once; a revoked account is refused
    new = torch_cli("device", "credentials", "SEC-A").stdout.splitlines()[-1]
    assert new != password
    assert sign_in("SEC-A", password)[1].getName() == "Not authorized"
    client, rc = sign_in("SEC-A", new)
    assert rc.getName() == "Success"
    client.disconnect()
    client.loop_stop()
    assert torch_cli("broker", "revoke", "SEC-A").stdout == "broker account SEC-A revoked\n"
    assert sign_in("SEC-A", new)[1].getName() == "Not authorized"


def test_a_service_password_kept_elsewhere_is_checked_against_its_account(  # type: ignore[no-untyped-def]
    broker, db: Database
) -> None:
    """`torch broker check`, as scripts/setup.sh uses it to find that the ingest worker's
    password file no longer holds its account's password (set again since)."""

    def check(password: str) -> tuple[int, str]:
        done = subprocess.run(
            [TORCH, "broker", "check", "svc-check", "--password-env", "CHECK_PW"],
            env=service_env(CHECK_PW=password),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout

    first = torch_cli("broker", "account", "svc-check", "--kind", "listener")
    password = first.stdout.splitlines()[-1]
    assert check(password) == (0, "broker account svc-check: $CHECK_PW is its password\n")
    assert check(password + "x") == (1, "broker account svc-check: $CHECK_PW is not its password\n")
    torch_cli("broker", "account", "svc-check", "--kind", "listener")  # a new password
    assert check(password)[0] == 1
    torch_cli("broker", "revoke", "svc-check")
    assert check(password) == (1, "no live broker account named svc-check\n")


def test_a_tag_cannot_publish_as_another(broker, db: Database, workers) -> None:  # type: ignore[no-untyped-def]
    a = device("SEC-A", "IOM-SA", db)
    device("SEC-B", "IOM-SB", db)
    workers()
    # each refusal costs the tag its connection, so each attempt signs in afresh
    attempts = [
        ("tags/SEC-B/fixes", fix(0)),
        ("owntracks/SEC/B", {"_type": "location"}),
        ("tags/SEC-A/fixes", fix(60)),
        (
            "owntracks/SEC/A",
            {"_type": "location", "tst": int(time.time()) - 60, "lat": 51.7, "lon": -0.3},
        ),
    ]
    answers = []
    for topic, payload in attempts:
        client, rc = sign_in("SEC-A", a)
        assert rc.getName() == "Success"
        answers.append(publish(client, topic, payload).getName())
        client.disconnect()
        client.loop_stop()
    assert answers == ["Not authorized", "Not authorized", "Success", "Success"]
    wait_for(lambda: db.count("fixes") == 2)
    rows = db.fetch("SELECT d.serial FROM fixes f JOIN devices d ON d.id = f.device_id")
    assert [r["serial"] for r in rows] == ["SEC-A", "SEC-A"]
    assert db.count("dead_letters") == 0  # the forged message never reached the worker


def test_a_tag_cannot_read_other_tags(broker, db: Database, publisher) -> None:  # type: ignore[no-untyped-def]
    a = device("SEC-A", "IOM-SA", db)
    client, _ = sign_in("SEC-A", a)
    granted = threading.Event()
    codes: list[list[ReasonCode]] = []

    def on_subscribe(_c: object, _u: object, _mid: int, rcs: list[ReasonCode], _p: object) -> None:
        codes.append(rcs)
        granted.set()

    client.on_subscribe = on_subscribe
    heard: list[str] = []
    client.on_message = lambda _c, _u, m: heard.append(m.topic)
    client.subscribe("tags/#", qos=1)
    assert granted.wait(10)
    publisher.send("tags/SEC-B/fixes", fix(0))
    publisher.flush()
    client.disconnect()
    client.loop_stop()
    assert heard == []


def test_the_worker_rejects_a_topic_whose_serial_is_not_a_device(  # type: ignore[no-untyped-def]
    broker, db: Database, workers, publisher
) -> None:
    workers()
    publisher.send("tags/GHOST-1/fixes", fix(0))
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 1)
    row = db.fetch("SELECT topic, reason_code FROM dead_letters")[0]
    assert (row["topic"], row["reason_code"]) == ("tags/GHOST-1/fixes", "unknown_serial")
    assert db.count("fixes") == 0


def test_oversized_payloads_are_refused_and_lose_nothing_beside_them(  # type: ignore[no-untyped-def]
    broker, db: Database, workers, publisher
) -> None:
    """Over the worker's limit (1 MiB): a dead letter with the reason; over the broker's
    (4 MiB): refused at the door. The good fix sent after each is stored."""
    db.execute("INSERT INTO devices (serial) VALUES ('SEC-A')")
    workers()
    big = json.dumps({**fix(0), "pad": "x" * (2 * 1024 * 1024)})
    publisher.send("tags/SEC-A/fixes", big)
    publisher.send("tags/SEC-A/fixes", fix(60))
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 1 and db.count("fixes") == 1)
    letter = db.fetch("SELECT reason_code, reason, octet_length(payload) AS n FROM dead_letters")[0]
    assert (letter["reason_code"], letter["n"]) == ("too_large", len(big))
    assert letter["reason"] == f"payload of {len(big)} bytes exceeds 1048576"

    client, _rc = sign_in("test-relay", PASSWORDS["test-relay"])
    gone = threading.Event()
    client.on_disconnect = lambda *_a: gone.set()
    client.publish("tags/SEC-A/fixes", "x" * (5 * 1024 * 1024), qos=1)
    assert gone.wait(10), "the broker kept a client that sent 5 MiB"
    client.loop_stop()
    publisher.send("tags/SEC-A/fixes", fix(120))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 2)
    assert db.count("dead_letters") == 1
