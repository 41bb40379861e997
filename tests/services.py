"""Real services for the tests: the test database, a private broker, worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "TORCH_TEST_DATABASE_URL", "postgresql://torch:torch@127.0.0.1:5432/torch_test"
)
# The services run as torch_app, which does not own the tables (the harness uses the owner).
APP_DATABASE_URL = os.environ.get(
    "TORCH_TEST_APP_DATABASE_URL", "postgresql://torch_app:torch@127.0.0.1:5432/torch_test"
)
MQTT_PORT = int(os.environ.get("TORCH_TEST_MQTT_PORT", "18830"))
TORCH = str(ROOT / ".venv" / "bin" / "torch")
# Not under pytest's private tmp: the broker drops root for the mosquitto user.
BROKER_STATE = Path(f"/tmp/torch-test-broker-{MQTT_PORT}")

# The test session's service accounts on the broker, with passwords made for this session;
# the tags' own accounts come from `torch device add` or the simulator.
INGEST, RELAY, LISTENER = "test-ingest", "test-relay", "test-listener"
ACCOUNTS = {INGEST: "ingest", RELAY: "relay", LISTENER: "listener"}
PASSWORDS = {name: secrets.token_urlsafe(24) for name in ACCOUNTS}

DATA_TABLES = (
    "victim_episodes",
    "victim_fixes",
    "victim_links",
    "victim_officers",
    "victims",
    "proximity_queries",
    "audit_log",
    "api_tokens",
    "users",
    "track_tiles",
    "track_blocks",
    "track_blocks_dirty",
    "track_tiles_dirty",
    "fixes",
    "device_state",
    "device_events",
    "dead_letters",
    "device_assignments",
    "devices",
    "subjects",
)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {predicate}")
        time.sleep(every)


def service_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TORCH_DATABASE_URL=APP_DATABASE_URL,
        TORCH_ADMIN_DATABASE_URL=DATABASE_URL,
        TORCH_MQTT_HOST="127.0.0.1",
        TORCH_MQTT_PORT=str(MQTT_PORT),
        TORCH_MQTT_USERNAME=INGEST,
        TORCH_MQTT_PASSWORD=PASSWORDS[INGEST],
        TORCH_BROKER_DIR=str(BROKER_STATE),
        TORCH_WORKER_HTTP_PORT="0",  # workers side by side: each on a free port (in its log)
        TORCH_LOG_FORMAT="json",
        # bulk correlation shares a large job among processes even on a one-processor host
        TORCH_CORRELATE_WORKERS="2",
    )
    env.update(extra)
    return env


# The commands that register people, tags and users: quick, with nothing to run beside
# them, they run in the tests' own process (`cli_here`); every other command as a process.
IN_PROCESS = frozenset({"subject", "device", "assign", "unassign", "assignments", "team",
                        "force", "user", "victim"})  # fmt: skip


def torch_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`torch ARGS` with the services' environment: its exit code and what it printed."""
    if args and args[0] in IN_PROCESS:
        result = cli_here(*args)
    else:
        result = subprocess.run(
            [TORCH, *args], env=service_env(), capture_output=True, text=True, timeout=60
        )
    if check and result.returncode != 0:
        raise AssertionError(f"torch {' '.join(args)} failed: {result.stderr}")
    return result


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


def cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`torch ARGS` run in this process as `torch_cli` runs it as one. The fixtures run
    hundreds of registry commands a session: as processes, each spent half a second
    starting for a few milliseconds of work, and that was most of the suite's time. On a
    thread of its own, where the command's asyncio.run finds no loop running (the browser
    tests' Playwright runs one in theirs)."""
    from torch import cli

    out, err = io.StringIO(), io.StringIO()
    codes: list[int] = []

    def run() -> None:
        try:
            codes.append(cli.main(list(args)))
        except SystemExit as exit_:  # argparse's refusals: 2, with the usage
            codes.append(
                0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
            )

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # the command sets up its own logging
    try:
        with (
            _environ(service_env()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            thread = threading.Thread(target=run, name="torch-cli")
            thread.start()
            thread.join()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    if not codes:
        raise AssertionError(f"torch {' '.join(args)} raised: {err.getvalue()}")
    return subprocess.CompletedProcess(["torch", *args], codes[0], out.getvalue(), err.getvalue())


class Database:
    """Synchronous access to the test database for assertions and fixtures."""

    def __init__(self, url: str = DATABASE_URL) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._run(asyncpg.connect(url))

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def reconnect(self) -> None:
        self._conn.terminate()
        self._conn = self._run(asyncpg.connect(DATABASE_URL))

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(self._run(self._conn.fetch(sql, *args)))

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self._run(self._conn.fetchval(sql, *args))

    def execute(self, sql: str, *args: Any) -> str:
        return str(self._run(self._conn.execute(sql, *args)))

    def count(self, table: str) -> int:
        return int(self.fetchval(f"SELECT count(*) FROM {table}"))

    def reset(self) -> None:
        self.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
        self.execute("DELETE FROM teams WHERE name <> 'default'")  # the default team stays

    def close(self) -> None:
        self._conn.terminate()
        self._loop.close()


class Broker:
    """A Mosquitto of our own, with the project's configuration, on a test port."""

    def __init__(self, state: Path, port: int = MQTT_PORT) -> None:
        self.state, self.port = state, port

    def _do(self, action: str) -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "broker.sh"), action, str(self.state), str(self.port)],
            check=True,
        )

    def start(self) -> None:
        self._do("start")

    def provision(self) -> None:
        """The session's service accounts, in the database and in the broker's files."""
        from torch import broker
        from torch.store import broker as accounts

        async def go() -> None:
            conn = await asyncpg.connect(DATABASE_URL)
            try:
                for name, kind in ACCOUNTS.items():
                    await accounts.set_account(
                        conn, name, broker.AccountKind(kind), PASSWORDS[name]
                    )
                await broker.sync(conn, self.state)
            finally:
                await conn.close()

        asyncio.run(go())
        time.sleep(0.2)  # the broker reloads its files on SIGHUP

    def stop(self) -> None:
        self._do("stop")

    def restart(self) -> None:
        self._do("restart")


class Worker:
    """`torch ingest` as a real process, so that it can be killed for real."""

    def __init__(self, log_dir: Path, worker_id: str, **env: str) -> None:
        self.worker_id = worker_id
        self.log = log_dir / f"{worker_id}.log"
        self._env = service_env(TORCH_WORKER_ID=worker_id, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> Worker:
        self._starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [TORCH, "ingest"], env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(lambda: self.log.read_text().count("subscribed to") >= self._starts)
        return self

    @property
    def http(self) -> str:
        """The base URL of this life's health and metrics server, from its log."""
        ports = re.findall(r"health and metrics on http://127.0.0.1:(\d+)", self.log.read_text())
        return f"http://127.0.0.1:{ports[-1]}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        forget_session(f"torch-{self.worker_id}")


def mqtt_client(client_id: str, account: str = RELAY, password: str | None = None) -> mqtt.Client:
    """An MQTT v5 client that signs in as one of the session's accounts (or a tag's)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(account, password or PASSWORDS[account])
    return client


def forget_session(client_id: str) -> None:
    """End a persistent session so the broker stops queueing for it."""
    client = mqtt_client(client_id, INGEST)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", MQTT_PORT, clean_start=True, properties=props)
    client.disconnect()


def sign_in(user: str | None, password: str | None) -> tuple[mqtt.Client, ReasonCode]:
    """Connect and wait for the broker's answer; returns the client (running) and it."""
    client = mqtt_client(f"test-sec-{uuid.uuid4().hex[:8]}", "x", "x")
    if user is None:
        client.username_pw_set(None, None)
    else:
        client.username_pw_set(user, password)
    answered = threading.Event()
    codes: list[ReasonCode] = []

    def on_connect(_c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        codes.append(rc)
        answered.set()

    client.on_connect = on_connect
    client.reconnect_delay_set(60, 60)  # one attempt is what is under test
    client.connect("127.0.0.1", MQTT_PORT)
    client.loop_start()
    assert answered.wait(10), "the broker did not answer"
    return client, codes[0]


class Publisher:
    """A tag-side client: QoS 1 with a persistent session, so it survives broker restarts."""

    def __init__(self) -> None:
        self.client = mqtt_client(f"test-pub-{uuid.uuid4().hex[:8]}", RELAY)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.max_queued_messages_set(0)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._acked: set[int] = set()
        self._pending: list[int] = []
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self._acked.add(mid)
        self.client.connect("127.0.0.1", MQTT_PORT, clean_start=False, properties=props)
        self.client.loop_start()

    def send(self, topic: str, payload: Any) -> None:
        """Queue at QoS 1; while the broker is away paho keeps it and sends it on reconnect."""
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self._pending.append(self.client.publish(topic, body, qos=1).mid)

    def send_all(self, messages: Iterable[tuple[str, Any]]) -> None:
        for topic, payload in messages:
            self.send(topic, payload)

    def flush(self, timeout: float = 60) -> None:
        """Wait until the broker has acknowledged everything sent."""
        wait_for(lambda: self._acked.issuperset(self._pending), timeout)
        self._pending.clear()
        self._acked.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def restart_postgres() -> None:
    """Restart the PostgreSQL cluster that serves the test database (port 5432)."""
    line = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    version, name = next(
        (f[0], f[1]) for f in (row.split() for row in line.stdout.splitlines()) if f[2] == "5432"
    )
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "pg_ctlcluster", version, name, "restart"], check=True)


class Api:
    """`torch api` as a real process on a test port."""

    def __init__(self, log: Path, port: int = 18001, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [TORCH, "api"],
                env=service_env(TORCH_API_PORT=str(port), **env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._up, timeout=30)

    def _up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # a client still streaming keeps uvicorn waiting
            self.proc.kill()
            self.proc.wait(10)


def wearer(ref: str, serial: str, since: str, team: str | None = None) -> str:
    """A subject (in `team`, else the default one) wearing a new tag from `since` (RFC 3339),
    through the CLI; returns the tag's broker password, which `torch device add` prints last."""
    torch_cli("subject", "add", ref, *(("--team", team) if team else ()))
    password = torch_cli("device", "add", serial).stdout.splitlines()[-1]
    torch_cli("assign", serial, ref, "--from", since)
    return password


def add_user(name: str, role: str, team: str = "default") -> str:
    """Create a user (in `team`) through the CLI; returns the bearer token it prints last."""
    out = torch_cli("user", "add", name, "--role", role, "--team", team).stdout
    return out.strip().splitlines()[-1]
