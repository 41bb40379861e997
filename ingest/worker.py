"""The MQTT side of the ingest worker (paho-mqtt 2.x).

The paho network thread only hands messages to an inbox; the asyncio loop takes
them in batches, stores each batch in one transaction and, once it has
committed, acknowledges its messages (manual PUBACK). A message is therefore
acknowledged only when its fixes are durable: a crash at any point leaves it
with the broker, which delivers it again (and duplicates are stored once).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NamedTuple, cast

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.alerts import AlertPublisher
from ingest.health import HealthServer
from ingest.metrics import IngestMetrics
from ingest.pipeline import Item, Pipeline, limits_from
from torch import memory
from torch.breach import Rules
from torch.intake import Message
from torch.settings import Settings
from torch.store import db

log = logging.getLogger("torch.ingest")


class Delivery(NamedTuple):
    message: Message
    mid: int
    qos: int
    session: int  # which connection delivered it; a PUBACK is only valid on that one


class Inbox:
    """Hands deliveries from the paho thread to the batcher."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Delivery] = queue.SimpleQueue()

    def __len__(self) -> int:
        return self._queue.qsize()

    def put(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def take(self, max_items: int, wait: float, linger: float) -> list[Delivery]:
        """Up to max_items: waits `wait` s for the first, then at most `linger` s more."""
        try:
            batch = [self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()]
        except queue.Empty:
            return []
        deadline = time.monotonic() + linger
        while len(batch) < max_items:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch


class NoTopicCallbacks:
    """Stands in for paho's table of per-topic callbacks (`message_callback_add`), which
    the worker does not use.

    paho looks every message up in that table with a recursive generator that leaves
    a reference cycle behind (paho.mqtt.matcher.MQTTMatcher.iter_match). At 5,000
    messages a second the cycle collector then freed 100,000 objects every 3 s and
    held the interpreter for 100-270 ms each time, in the middle of alert delivery.
    """

    def iter_match(self, topic: str) -> Iterator[object]:
        return iter(())


def client(settings: Settings, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """An MQTT v5 client of the worker's, with its broker account, reconnecting by itself."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.mqtt_username:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        c.username_pw_set(settings.mqtt_username, password)
    c.reconnect_delay_set(min_delay=1, max_delay=5)
    return c


class Subscriber:
    """A persistent MQTT v5 session at QoS 1 with manual acknowledgement."""

    def __init__(self, settings: Settings, inbox: Inbox) -> None:
        self._settings = settings
        self._inbox = inbox
        self._session = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._client = client(settings, f"torch-{settings.worker_id}", manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client._on_message_filtered = NoTopicCallbacks()  # type: ignore[assignment]

    def topics(self) -> list[str]:
        s = self._settings
        filters = [s.fix_topics, s.event_topics, s.owntracks_topics, s.victim_topics]
        if s.mqtt_share_group:
            return [f"$share/{s.mqtt_share_group}/{f}" for f in filters]
        return filters

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.mqtt_session_expiry_s
        self._client.connect_async(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            keepalive=self._settings.mqtt_keepalive_s,
            clean_start=False,  # resume the session, and the messages queued for it
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            session = self._session
        for d in deliveries:
            if d.qos > 0 and d.session == session:
                self._client.ack(d.mid, d.qos)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        with self._lock:
            self._session += 1
        client.subscribe([(t, 1) for t in self.topics()])
        log.info(
            "connected to %s:%d (session %s)",
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            "resumed" if flags.session_present else "new",
        )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _props: Properties | None,
    ) -> None:
        """The broker has the subscriptions: from now on it queues for this session (on a new
        session, what was published before this is not the worker's)."""
        topics = self.topics()
        refused = [t for t, r in zip(topics, reasons, strict=False) if r.is_failure]
        for topic in refused:
            log.error("broker refused the subscription to %s", topic)
        log.info("subscribed to %d topics", len(topics) - len(refused))
        self.connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self.connected.clear()
        if reason.value != 0:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put(
            Delivery(
                Message(msg.topic, cast(bytes, msg.payload), datetime.now(UTC)),
                msg.mid,
                msg.qos,
                self._session,
            )
        )


class AlertLink:
    """The worker's second MQTT connection, which only publishes alerts.

    On the subscriber's connection an alert and its PUBACK queued behind the thousands
    of messages a second coming in, and the paho thread that hands them over: at 5,000
    fixes/s the broker's acknowledgement took 70 ms at the median and 0.6 s at p99.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = client(settings, f"torch-{settings.worker_id}-alerts")
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def start(self) -> None:
        s = self._settings
        self._client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    async def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """Publish at QoS 1 and return once the broker has acknowledged it. Always called
        from the same event loop (the alert publisher's)."""
        self._loop = asyncio.get_running_loop()
        done = self._loop.create_future()
        info = self._client.publish(topic, payload, qos=1)
        # the acknowledgement is resolved on this loop, so not before this line has run
        self._waiting[info.mid] = done
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError:
            raise TimeoutError(f"the broker did not acknowledge an alert on {topic}") from None
        finally:
            self._waiting.pop(info.mid, None)

    def _on_connect(self, *args: object) -> None:
        reason = cast(ReasonCode, args[3])  # (client, userdata, flags, reason code, properties)
        if reason.is_failure:
            log.error("broker refused the alert connection: %s", reason)
            return
        self.connected.set()

    def _on_disconnect(self, *args: object) -> None:
        self.connected.clear()

    def _on_publish(self, *args: object) -> None:
        mid = cast(int, args[2])  # (client, userdata, mid, reason code, properties)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._acknowledged, mid)

    def _acknowledged(self, mid: int) -> None:
        done = self._waiting.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(None)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inbox = Inbox()
        self._subscriber = Subscriber(settings, self._inbox)
        self.metrics = IngestMetrics()
        self.metrics.inbox.set_function(lambda: len(self._inbox))
        self.metrics.broker_connected.set_function(lambda: self._subscriber.connected.is_set())
        self._alert_link = AlertLink(settings)
        self.metrics.alert_link_connected.set_function(lambda: self._alert_link.connected.is_set())
        self._pipeline = Pipeline(
            settings.database_url.get_secret_value(),
            settings.worker_id,
            limits_from(settings),
            connections=settings.db_connections,
            battery_low_pct=settings.battery_low_pct,
            rules=Rules(
                open_after=settings.breach_open_after,
                close_after=settings.breach_close_after,
                inside_s=settings.breach_inside_s,
                max_gap_s=settings.proximity_max_gap_s,
                default_acc_m=settings.proximity_default_acc_m,
                max_speed_ms=settings.proximity_max_speed_ms,
            ),
            observer=self.metrics,
        )
        self._stopping = asyncio.Event()
        self._alerts = AlertPublisher(
            settings.database_url.get_secret_value(),
            settings.worker_id,
            self._alert_link.publish,
            settings.alert_poll_ms / 1000,
            on_published=self.metrics.alert_published,
        )
        self._health = HealthServer(settings, self._readiness, self.metrics.registry)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self._health.start()
        self._subscriber.start()
        log.info("ingest worker %s started", self._settings.worker_id)
        reporter = asyncio.create_task(self._report())
        state = asyncio.create_task(self._flush_state())
        if self._settings.publish_alerts:  # otherwise the outbox waits for a worker that does
            self._alert_link.start()
            self._alerts.start()
        sweeper = asyncio.create_task(self._sweep())
        tiler = asyncio.create_task(self._refresh_tiles())
        try:
            await self._consume()
        finally:
            reporter.cancel()
            state.cancel()
            self._alerts.stop()
            self._alert_link.stop()
            sweeper.cancel()
            tiler.cancel()
            self._subscriber.stop()
            await self._pipeline.close()
            await self._health.stop()
            log.info("ingest worker stopped; stored %s", self._pipeline.totals)

    async def _readiness(self) -> dict[str, str]:
        """Ready: the database answers, the broker session is up and, where this worker
        publishes alerts, its publisher runs with its own broker session up."""
        checks = {}
        try:
            await self._pipeline.ping()
            checks["database"] = "ok"
        except (TimeoutError, *db.RETRYABLE, asyncpg.PostgresError) as err:
            checks["database"] = f"unavailable ({type(err).__name__})"
        checks["broker"] = "ok" if self._subscriber.connected.is_set() else "disconnected"
        if self._settings.publish_alerts:
            if not self._alerts.running:
                checks["alerts"] = "stopped"
            else:
                checks["alerts"] = "ok" if self._alert_link.connected.is_set() else "disconnected"
        return checks

    async def _consume(self) -> None:
        """Take, decode, commit, acknowledge; until asked to stop, then drain and return.

        Up to `db_connections` batches commit at once, on their own connections,
        while the next is decoded; each batch is acknowledged only after it and
        every batch before it have committed, so acknowledgements go out in the
        order the messages came in.
        """
        s = self._settings
        committing: deque[asyncio.Task[None]] = deque()
        while True:
            draining = self._stopping.is_set()
            deliveries = await asyncio.to_thread(
                self._inbox.take, s.batch_size, 0 if draining else 0.5, s.flush_interval_ms / 1000
            )
            if not deliveries:
                if draining:
                    break
                continue
            items = self._pipeline.decode([d.message for d in deliveries])
            while len(committing) >= s.db_connections:
                await committing.popleft()
            previous = committing[-1] if committing else None
            committing.append(asyncio.create_task(self._commit(items, deliveries, previous)))
        for task in committing:
            await task

    async def _commit(
        self, items: list[Item], deliveries: list[Delivery], previous: asyncio.Task[None] | None
    ) -> None:
        await self._pipeline.store(items)
        if previous is not None:
            await previous
        self._subscriber.ack(deliveries)

    async def _flush_state(self) -> None:
        warned = False
        while True:
            await asyncio.sleep(self._settings.state_flush_ms / 1000)
            await self._pipeline.flush_state()
            await self._pipeline.reload_zones()
            watching = self._pipeline.watching()
            if self._settings.mqtt_share_group and watching and not warned:
                log.warning(
                    "%d subjects have zones or protected persons, and this worker shares its"
                    " subscription (TORCH_MQTT_SHARE_GROUP): it checks only the fixes it"
                    " receives, so a breach may be raised twice or missed; run one worker",
                    watching,
                )
                warned = True

    async def _refresh_tiles(self) -> None:
        while True:
            await asyncio.sleep(self._settings.tiles_refresh_ms / 1000)
            await self._pipeline.refresh_tiles()

    async def _sweep(self) -> None:
        s = self._settings
        while True:
            try:
                await self._pipeline.sweep(s.silent_after_s, s.escalate_after_s)
                self.metrics.open_alerts(await self._pipeline.open_alerts())
            except (*db.RETRYABLE, asyncpg.PostgresError) as err:
                log.warning("alert sweep failed (%s); will try again", type(err).__name__)
            await asyncio.sleep(s.sweep_ms / 1000)

    async def _report(self, every: float = 10.0) -> None:
        last = self._pipeline.totals.fixes
        while True:
            await asyncio.sleep(every)
            t = self._pipeline.totals
            log.info(
                "%.0f fixes/s; stored %d fixes, %d duplicates, %d events, %d dead letters",
                (t.fixes - last) / every,
                t.fixes,
                t.duplicates,
                t.events,
                t.dead_letters,
            )
            last = t.fixes


def run(settings: Settings) -> None:
    memory.collect_less()  # each batch makes tens of thousands of short-lived objects
    asyncio.run(Worker(settings).run())
