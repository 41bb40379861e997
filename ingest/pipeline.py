"""Store decoded messages, surviving database outages and isolating bad batches.

decode -> resolve serials -> assemble -> one transaction -> caller acks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Protocol

import asyncpg

from ingest.guard import Guard
from torch.breach import Rules
from torch.decode import Limits, decode
from torch.fixes import Decoded, RejectCode
from torch.intake import (
    Batch,
    DeadLetter,
    DeviceState,
    Message,
    StoredFix,
    assemble,
    merge_newest,
    serials,
    victim_refs,
)
from torch.settings import Settings
from torch.store import breaches, db, deadletters, ingest, registry, tiles, victims

log = logging.getLogger("torch.ingest")

Item = tuple[Message, Decoded]


class Observer(Protocol):
    """Told of every committed batch (the worker's metrics)."""

    def stored(
        self, messages: int, batches: Sequence[Batch], written: ingest.Written, seconds: float
    ) -> None: ...


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_future=timedelta(seconds=settings.max_future_s),
        max_age=timedelta(days=settings.max_age_days),
        max_payload_bytes=settings.max_payload_bytes,
        area=settings.service_area,
    )


# one worker sweeps at a time
SWEEP_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('torch_sweep'))"


class Pipeline:
    """Owns the worker's database connections and the caches that spare them look-ups."""

    def __init__(
        self,
        database_url: str,
        worker_id: str,
        limits: Limits,
        connections: int = 1,
        rules: Rules | None = None,
        battery_low_pct: int = 15,
        observer: Observer | None = None,
    ) -> None:
        self._url = database_url
        self._worker_id = worker_id
        self._limits = limits
        self._connections = connections
        self._pool: asyncpg.Pool | None = None
        self._device_ids: dict[str, int] = {}
        self._victim_ids: dict[str, int] = {}  # protected persons' references
        self._days: set[date] = set()  # days whose partition is known to exist
        self._state: dict[int, DeviceState] = {}  # newest fix per device, not yet written
        self.totals = ingest.Written(0, 0, 0, 0)
        self.alerts = 0
        self._guard = None if rules is None else Guard(rules, battery_low_pct)
        self._issued = 0  # batches handed to store(), and checked against zones
        self._checked = 0
        self._turns = asyncio.Condition()
        self._observer = observer

    async def close(self) -> None:
        await self.flush_state()
        await self.refresh_tiles()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def decode(self, messages: Sequence[Message]) -> list[Item]:
        return [(m, decode(m.topic, m.payload, m.received_at, self._limits)) for m in messages]

    async def store(self, items: Sequence[Item]) -> ingest.Written:
        """Store decoded messages in one transaction; returns once they are committed.

        Waits out database outages. A batch the database refuses for its
        content is split, so that only the offending message is dead-lettered.
        """
        turn = self._issued  # taken before any await: the order the batches came in
        self._issued += 1
        stored: list[Batch] = []
        started = time.perf_counter()
        written = await self._store_items(items, stored)
        if self._observer is not None:
            self._observer.stored(len(items), stored, written, time.perf_counter() - started)
        async with self._turns:
            await self._turns.wait_for(lambda: self._checked == turn)
        try:
            await self._check(stored)
        finally:
            async with self._turns:
                self._checked += 1
                self._turns.notify_all()
        self.totals += written
        return written

    async def _check(self, stored: Sequence[Batch]) -> None:
        """Check the fixes just committed against their subjects' zones, in batch order, and
        store the episodes and alerts found (with their outbox entries) in one transaction.
        The messages are acknowledged only after this, so a crash in between loses nothing:
        the broker delivers them again."""
        if self._guard is None:
            return
        delay = 0.2
        while True:
            try:
                if not self._guard.primed:
                    async with self._connection() as conn:
                        await self._guard.reload(conn)
                concerned = [b for b in stored if self._guard.concerns(b)]
                if not concerned:
                    return
                async with self._connection() as conn, conn.transaction():
                    for batch in concerned:
                        self.alerts += await self._guard.check(conn, batch)
                return
            except db.RETRYABLE as err:
                delay = await self._wait_out(err, delay)

    async def sweep(self, silent_after_s: float, escalate_after_s: float) -> int:
        """Raise no_comms and no_fix for silent tags, check again the stored fixes queued for
        it, and escalate alerts left unacknowledged; one worker at a time. Returns alerts
        raised or escalated."""
        async with self._connection() as conn:
            async with conn.transaction():
                if not await conn.fetchval(SWEEP_LOCK):
                    return 0
                silent = await breaches.sweep_silent(conn, silent_after_s)
                raised = silent + await breaches.escalate(conn, escalate_after_s)
            return raised + await self._recheck(conn)

    async def _recheck(self, conn: asyncpg.Connection) -> int:
        """The spans of stored fixes queued to be checked again, in a transaction of their
        own: one that cannot be checked stays queued, and holds up no other alert."""
        if self._guard is None:
            return 0
        try:
            async with conn.transaction():
                if not await conn.fetchval(SWEEP_LOCK):
                    return 0
                return await self._guard.recheck(conn)
        except (*db.RETRYABLE, asyncpg.PostgresError):
            raise
        except Exception:
            log.exception("stored fixes queued to be checked again could not be; will try again")
            return 0

    async def open_alerts(self) -> dict[tuple[str, str], int]:
        """Alerts not closed, by (type, status)."""
        async with self._connection() as conn:
            return await breaches.open_counts(conn)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raises unless the database answers a query within `timeout` seconds."""
        async with asyncio.timeout(timeout), self._connection() as conn:
            await conn.fetchval("SELECT 1")

    def watching(self) -> int:
        """How many subjects have zones or links to protected persons checked here."""
        if self._guard is None:
            return 0
        return len(set(self._guard.zones_of) | set(self._guard.victims.links_of))

    async def reload_zones(self) -> None:
        """Take up zone and assignment changes (the worker calls this every second)."""
        if self._guard is None:
            return
        try:
            async with self._connection() as conn:
                await self._guard.reload(conn)
        except (*db.RETRYABLE, asyncpg.PostgresError) as err:
            log.warning("zones not reloaded (%s); will try again", type(err).__name__)

    async def replay(self, serial: str | None, chunk: int = 500) -> ingest.Written:
        """Replay unknown-serial dead letters whose device is now registered."""
        totals = ingest.Written(0, 0, 0, 0)
        while True:
            async with self._connection() as conn, conn.transaction():
                claimed = await deadletters.claim_replayable(conn, serial, chunk)
                if not claimed:
                    return totals
                batch = await self._prepare(conn, self.decode([m for _, m in claimed]))
                written = await ingest.write_batch(conn, batch, self._worker_id)
            await self._check([batch])
            merge_newest(self._state, batch.fixes)
            totals += written
            log.info("replayed %d dead letters: %s", len(claimed), written)

    async def flush_state(self) -> None:
        """Write each device's newest fix since the last flush (device_state is a cache).

        The worker calls this about once a second rather than in every batch:
        one row per device per second instead of one per batch.
        """
        if not self._state:
            return
        states, self._state = self._state, {}
        try:
            async with self._connection() as conn:
                await ingest.write_device_state(conn, states.values())
        except (*db.RETRYABLE, asyncpg.PostgresError) as err:
            merge_newest(
                self._state, (StoredFix(s.device_id, s.seen, s.fix) for s in states.values())
            )
            log.warning("device state not written (%s); will try again", type(err).__name__)

    async def refresh_tiles(self) -> None:
        """Bring the track tiles up to date with the fixes committed so far."""
        try:
            async with self._connection() as conn:
                await tiles.refresh(conn)
        except (*db.RETRYABLE, asyncpg.PostgresError) as err:
            log.warning("track tiles not refreshed (%s); will try again", type(err).__name__)

    async def _store_items(self, items: Sequence[Item], stored: list[Batch]) -> ingest.Written:
        delay = 0.2
        refused_once = False
        while True:
            try:
                async with self._connection() as conn:
                    batch = await self._prepare(conn, items)  # partitions commit on their own
                    async with conn.transaction():
                        written = await ingest.write_batch(conn, batch, self._worker_id)
                merge_newest(self._state, batch.fixes)
                stored.append(batch)
                return written
            except db.RETRYABLE as err:
                delay = await self._wait_out(err, delay)
            except asyncpg.PostgresError as err:
                if not refused_once:  # a stale cache (a dropped partition) gets one more try
                    refused_once = True
                    self._device_ids.clear()
                    self._victim_ids.clear()
                    self._days.clear()
                    continue
                return await self._isolate(items, err, stored)

    async def _isolate(
        self, items: Sequence[Item], err: asyncpg.PostgresError, stored: list[Batch]
    ) -> ingest.Written:
        if len(items) > 1:
            half = len(items) // 2
            left = await self._store_items(items[:half], stored)
            right = await self._store_items(items[half:], stored)
            return left + right
        msg, _ = items[0]
        log.error("database refused a message on %s: %s", msg.topic, err)
        letter = DeadLetter(
            msg.received_at,
            msg.topic,
            msg.payload,
            RejectCode.STORE_ERROR,
            f"the database refused it: {err}",
        )
        delay = 0.2
        while True:
            try:
                async with self._connection() as conn, conn.transaction():
                    await ingest.write_dead_letters(conn, [letter], self._worker_id)
                stored.append(Batch(dead_letters=[letter]))
                return ingest.Written(0, 0, 0, 1)
            except db.RETRYABLE as err:
                delay = await self._wait_out(err, delay)

    async def _wait_out(self, err: BaseException, delay: float) -> float:
        """Back off after a connection-level failure; returns the next, longer delay."""
        if self._pool is not None:
            self._pool.expire_connections()
        log.warning("database unavailable (%s); retrying in %.1f s", type(err).__name__, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, 5.0)

    async def _prepare(self, conn: asyncpg.Connection, items: Sequence[Item]) -> Batch:
        """Resolve serials, assemble the batch and make sure its partitions exist."""
        unknown = serials(d for _, d in items) - self._device_ids.keys()
        if unknown:
            self._device_ids.update(await registry.device_ids(conn, unknown))
        unknown = victim_refs(d for _, d in items) - self._victim_ids.keys()
        if unknown:
            self._victim_ids.update(await victims.ids(conn, unknown))
        batch: Batch = assemble(items, self._device_ids, self._victim_ids)
        missing = batch.days() - self._days
        if missing:
            await ingest.ensure_partitions(conn, missing)
            self._days |= missing
        return batch

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; one that failed at the connection level is closed, not reused.

        A link broken in the middle of a COPY leaves the connection mid-protocol; handed
        back to the pool it would fail the next batch.
        """
        pool = await self._ready_pool()
        conn = await pool.acquire()
        try:
            yield conn
        except db.RETRYABLE:
            conn.terminate()
            raise
        finally:
            await pool.release(conn)

    async def _ready_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await db.pool(
                self._url,
                # the batches in flight, and two for the background work (tiles, state,
                # sweeps), so that it never holds up a commit
                size=self._connections + 2,
                application_name=f"torch-{self._worker_id}",
                init=ingest.prepare,
            )
        return self._pool
