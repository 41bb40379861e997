"""Where simulated messages go: an MQTT broker, or a JSON Lines file; and how fast."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from torch.decode import topic_serial
from torch.errors import TorchError

CONNECT_TIMEOUT_S = 10.0  # for the broker's answer to a connection


class Sink(Protocol):
    def send(self, topic: str, payload: str | bytes) -> None: ...
    def close(self) -> None: ...


class MqttSink:
    """Publishes at QoS 1, as fast as the broker acknowledges.

    paho numbers messages with 16 bits, so at most `window` messages are left
    unacknowledged at once; beyond that, send() waits for the broker.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        window: int = 20_000,
    ) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._window = window
        self.sent = 0
        self.acked = 0
        self._answer: ReasonCode | None = None
        self._answered = threading.Event()
        self._connect(host, port)
        self._client.loop_start()
        # paho would retry a refused connection for ever, and every message wait with it
        if not self._answered.wait(CONNECT_TIMEOUT_S):
            self._stop()
            raise TorchError(f"the broker at {host}:{port} did not answer {client_id}")
        if self._answer is not None and self._answer.is_failure:
            self._stop()
            raise TorchError(
                f"the broker at {host}:{port} refused {username or client_id}: {self._answer}"
                " (has it taken up the accounts? `torch broker sync` says where it wrote them)"
            )

    def _connect(self, host: str, port: int) -> None:
        """A broker starting again refuses connections for a moment: keep trying for
        CONNECT_TIMEOUT_S, as a tag would, before giving up."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                self._client.connect(host, port)
                return
            except ConnectionRefusedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if not self._answered.is_set():
            self._answer = reason
            self._answered.set()

    def _stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_publish(self, *_: object) -> None:
        self.acked += 1

    def send(self, topic: str, payload: str | bytes) -> None:
        while self.sent - self.acked >= self._window:
            time.sleep(0.001)
        self._client.publish(topic, payload, qos=1)
        self.sent += 1

    def close(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        self._stop()


class TagSinks:
    """Each tag on its own connection, with its own broker account (user name: its serial),
    as real tags connect: the broker lets each publish only on its own topics."""

    def __init__(self, host: str, port: int, passwords: dict[str, str], prefix: str) -> None:
        self._host, self._port, self._prefix = host, port, prefix
        self._passwords = passwords
        self._sinks: dict[str, MqttSink] = {}

    def send(self, topic: str, payload: str | bytes) -> None:
        serial = topic_serial(topic)
        if serial is None or serial not in self._passwords:
            raise ValueError(f"no broker account for the tag that publishes on {topic}")
        sink = self._sinks.get(serial)
        if sink is None:
            sink = self._sinks[serial] = MqttSink(
                self._host,
                self._port,
                f"{self._prefix}-{serial}",
                serial,
                self._passwords[serial],
                window=1000,
            )
        sink.send(topic, payload)

    def close(self) -> None:
        for sink in self._sinks.values():
            sink.close()


class JsonlSink:
    """One JSON object a line: {"topic": ..., "payload": ...}, the payload exactly as published."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8")

    def send(self, topic: str, payload: str | bytes) -> None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        self._file.write(
            json.dumps({"topic": topic, "payload": text}, separators=(",", ":")) + "\n"
        )

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: Path) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                yield row["topic"], row["payload"]


class Pacer:
    """Holds simulated time to `pace` simulated seconds per wall-clock second (0: no waiting)."""

    def __init__(self, pace: float, sim_start: float) -> None:
        self.pace = pace
        self.sim_start = sim_start
        self.wall_start = time.monotonic()

    def wait_for(self, sim_t: float) -> None:
        if self.pace <= 0:
            return
        due = self.wall_start + (sim_t - self.sim_start) / self.pace
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class Progress:
    """A status line on stderr every few seconds: rate, messages and fixes sent, simulated time."""

    def __init__(
        self, every: float = 2.0, stream: object = sys.stderr, simulated: bool = True
    ) -> None:
        self.every = every
        self.stream = stream
        self.simulated = simulated  # False: a file replayed, whose times and fixes are not known
        self.started = self.last = time.monotonic()
        self.messages = 0
        self.fixes = 0

    def count(self, fixes: int, sim_t: float) -> None:
        self.messages += 1
        self.fixes += fixes
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print(sim_t, end="\r")

    def done(self, sim_t: float) -> None:
        self._print(sim_t, end="\n")

    def _print(self, sim_t: float, end: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        if self.simulated:
            stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(sim_t))
            line = (
                f"sent {self.messages:,} messages, {self.fixes:,} fixes "
                f"({self.fixes / elapsed:,.0f} fixes/s); simulated time {stamp}Z"
            )
        else:
            line = f"sent {self.messages:,} messages ({self.messages / elapsed:,.0f} a second)"
        print(line, end=end, file=self.stream, flush=True)  # type: ignore[call-overload]


def drain(
    messages: Iterable[tuple[float, str, str, int]], sink: Sink, pacer: Pacer, progress: Progress
) -> None:
    """Send (sim time, topic, payload, fixes in it) in order, paced, with progress."""
    last = pacer.sim_start
    for sim_t, topic, payload, fixes in messages:
        pacer.wait_for(sim_t)
        sink.send(topic, payload)
        progress.count(fixes, sim_t)
        last = sim_t
    sink.close()
    progress.done(last)
