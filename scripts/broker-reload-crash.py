"""Reload a Mosquitto with the project's configuration while its accounts change, and report
whether it survives.

Mosquitto 2.0.11 (Debian 12's) has been seen to crash in such reloads: a general protection
fault while tags and the ingest worker were signed in and some of their passwords had just
changed. This reproduces that on a broker of its own (a temporary state directory, its own
port): twenty tags publish at QoS 1 to a worker-like subscriber with a persistent session;
each round gives every tag a new password (each signs in again with it), every third round the
subscriber too, and sends SIGHUP. Run it against a new Mosquitto before relying on reloads
with clients connected:

    .venv/bin/python scripts/broker-reload-crash.py --rounds 60

It exits 0 if the broker survived every round, 1 if it died (and prints the end of its log).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torch.broker import Account, AccountKind, password_hash, write_files  # noqa: E402

TAGS = 20
WORKER = "crash-ingest"


def serial(i: int) -> str:
    return f"RC{i:04d}"


def client(name: str, password: str, port: int, **connect: object) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.username_pw_set(name, password)
    c.connect("127.0.0.1", port, **connect)  # type: ignore[arg-type]
    c.loop_start()
    return c


def accounts(round_: int, worker_round: int) -> list[Account]:
    tags = [
        Account(serial(i), AccountKind.DEVICE, password_hash(f"tag-{i}-{round_}"))
        for i in range(TAGS)
    ]
    return [*tags, Account(WORKER, AccountKind.INGEST, password_hash(f"worker-{worker_round}"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--port", type=int, default=18997)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="torch-reload-crash-"))
    broker = [str(ROOT / "scripts/broker.sh"), "start", str(state), str(args.port)]
    subprocess.run(broker, check=True)
    write_files(state, accounts(0, 0))
    pid = int((state / "mosquitto.pid").read_text())
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)

    session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    session.SessionExpiryInterval = 3600
    worker = client(WORKER, "worker-0", args.port, clean_start=False, properties=session)
    worker.on_connect = lambda c, *_: c.subscribe("tags/#", qos=1)
    worker.subscribe("tags/#", qos=1)
    tags = [client(serial(i), f"tag-{i}-0", args.port) for i in range(TAGS)]
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            for i, tag in enumerate(tags):
                tag.publish(f"tags/{serial(i)}/fixes", b'{"lat": 51.75, "lon": -0.34}', qos=1)
            time.sleep(0.002)

    threading.Thread(target=publish, daemon=True).start()
    worker_round = 0
    survived = True
    for round_ in range(1, args.rounds + 1):
        time.sleep(0.5)
        if round_ % 3 == 1:
            worker_round = round_
        write_files(state, accounts(round_, worker_round))
        for i, tag in enumerate(tags):
            tag.username_pw_set(serial(i), f"tag-{i}-{round_}")
        worker.username_pw_set(WORKER, f"worker-{worker_round}")
        if not alive(pid):
            survived = False
            break
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.3)
        survived = alive(pid)
        print(f"round {round_}: broker {'up' if survived else 'DIED'}", flush=True)
        if not survived:
            break
    stop.set()
    for c in [*tags, worker]:
        c.loop_stop()
    if survived:
        subprocess.run([*broker[:1], "stop", *broker[2:]], check=True)
        print(f"the broker survived {args.rounds} reloads")
        return 0
    log = (state / "mosquitto.log").read_text().splitlines()
    print(f"the broker died; the end of its log ({state}/mosquitto.log):", *log[-5:], sep="\n  ")
    return 1


if __name__ == "__main__":
    sys.exit(main())
