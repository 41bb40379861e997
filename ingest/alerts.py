"""Publishing the alert outbox on MQTT, from a thread of its own.

The ingest loop spends tens of milliseconds at a time decoding a batch or checking
it against zones; a publisher sharing that loop waits behind each of those steps at
every await. On its own thread, with its own event loop and connections, it waits at
most the interpreter's switch interval (5 ms) for its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

import asyncpg

from torch.store import breaches, db

log = logging.getLogger("torch.ingest.alerts")

Send = Callable[[str, bytes], Awaitable[None]]


class AlertPublisher:
    """Publishes each alert from the outbox once the broker has it (QoS 1 PUBACK), as soon
    as it commits (a notification on torch_alerts wakes it) and every `poll_s` in any case.
    An entry is marked published only after its PUBACK, so a crash before that publishes
    it again after the restart."""

    def __init__(
        self,
        database_url: str,
        worker_id: str,
        send: Send,
        poll_s: float,
        on_published: Callable[[str], None] | None = None,
    ) -> None:
        self._url = database_url
        self._name = f"torch-{worker_id}-alerts"
        self._send = send
        self._poll_s = poll_s
        self._on_published = on_published  # given each payload once the broker has it
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raised = db.Wakeup(database_url, breaches.ALERTS_CHANNEL, f"{self._name}-listen")
        self._stopping = False
        self.published = 0

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="alert-publisher", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._run(ready))
        except Exception:
            # the worker's /readyz says "stopped" from now on (`running`)
            log.exception("the alert publisher stopped: alerts wait in the outbox")
        finally:
            ready.set()

    @property
    def running(self) -> bool:
        """Whether its thread is publishing: it ends only when stopped, or on a fault."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # its loop closed as it ended meanwhile
                self._loop.call_soon_threadsafe(self._stop_now)
        if self._thread is not None:
            self._thread.join(timeout)

    def _stop_now(self) -> None:
        self._stopping = True
        self._raised.wake()

    async def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        ready.set()
        listener = asyncio.create_task(self._raised.run())
        conn: asyncpg.Connection | None = None
        try:
            while not self._stopping:
                ticket = self._raised.ticket()
                try:
                    if conn is None or conn.is_closed():
                        conn = await db.connect(self._url, application_name=self._name)
                    while await self._publish(conn):
                        pass
                except (TimeoutError, *db.RETRYABLE, asyncpg.PostgresError) as err:
                    log.warning("alerts not published yet (%s); will try again", err)
                    if conn is not None:
                        conn.terminate()
                        conn = None
                await self._raised.wait(ticket, self._poll_s)
        finally:
            listener.cancel()
            if conn is not None:
                await conn.close()

    async def _publish(self, conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            waiting = await breaches.unpublished(conn)
            for row in waiting:
                await self._send(row["topic"], row["payload"].encode())
            if waiting:
                await breaches.published(conn, [r["id"] for r in waiting])
        if self._on_published is not None:
            for row in waiting:
                self._on_published(row["payload"])
        self.published += len(waiting)
        return len(waiting)
