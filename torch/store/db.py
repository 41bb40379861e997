"""Connections to PostgreSQL/PostGIS (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from torch.errors import Conflict, InvalidInput

# Errors after which the same work can be tried again on a new connection.
RETRYABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection left mid-operation by a broken link
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.TooManyConnectionsError,
)


def dsn(url: str) -> str:
    """The libpq form of a URL that may name an SQLAlchemy driver."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def alembic_url(url: str) -> str:
    return "postgresql+asyncpg://" + dsn(url).partition("://")[2]


async def connect(
    url: str, *, application_name: str = "torch", settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    return await asyncpg.connect(
        dsn(url),
        server_settings={"application_name": application_name, **(settings or {})},
        timeout=10,
    )


async def pool(
    url: str,
    *,
    size: int,
    application_name: str,
    open_at_least: int = 0,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool of up to `size` connections, `open_at_least` of them kept open; broken ones
    are replaced on the next acquire."""
    return await asyncpg.create_pool(
        dsn(url),
        min_size=open_at_least,
        max_size=size,
        init=init,
        reset=_nothing_to_reset,
        timeout=10,
        server_settings={"application_name": application_name, **(settings or {})},
    )


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """A connection goes back to its pool as it is, but for a transaction left open, which
    asyncpg rolls back: TORCH leaves no other state in a session. Its settings are
    transaction-local (SET LOCAL, SET TRANSACTION SNAPSHOT), its advisory locks
    transaction-scoped, its cursors inside transactions, and it listens on connections of
    its own (`Wakeup`); tests/test_pool.py holds it to that. asyncpg's own reset
    (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) was a round trip on every release:
    four in each crime-scene answer."""


log = logging.getLogger("torch.store")


@contextlib.asynccontextmanager
async def spare(p: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection | None]:
    """A second connection if the pool has one open and idle, else None: a request that
    already holds one never waits for another (requests each holding one and waiting for
    a second would wait for each other for ever), nor opens one, which takes longer than
    the read it would share."""
    if p.get_idle_size() == 0:
        yield None
        return
    conn = await p.acquire(timeout=1)  # an idle connection: the pool hands it over at once
    try:
        yield conn
    finally:
        await p.release(conn)


class Wakeup:
    """Wakes tasks when PostgreSQL sends a notification on a channel (LISTEN).

    A waiter takes `ticket()` before looking at the database and then `wait(ticket,
    timeout)`, so a notification that comes in between is not missed. Waiters time out
    and look anyway: a listening connection that is lost delays work, never loses it.
    """

    def __init__(self, url: str, channel: str, application_name: str) -> None:
        self._url = url
        self._channel = channel
        self._name = application_name
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), timeout)

    def wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def run(self) -> None:
        """Keep a listening connection, reconnecting when it is lost; run as a task."""
        while True:
            try:
                conn = await connect(self._url, application_name=self._name)
            except (*RETRYABLE, asyncpg.PostgresError) as err:
                log.warning("cannot listen on %s (%s); retrying", self._channel, err)
                await asyncio.sleep(1)
                continue
            try:
                await self._listen(conn)
            except RETRYABLE:
                pass
            finally:
                conn.terminate()
            await asyncio.sleep(0.5)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(self._channel, lambda *_a: self.wake())
        self.wake()  # whatever was raised while not listening
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), 5)


def affected(status: str) -> int:
    """Rows a command touched, from its status ("INSERT 0 12" gives 12)."""
    return int(status.rsplit(" ", 1)[1])


async def insert_id(
    conn: asyncpg.Connection, sql: str, *args: object, exists: str, invalid: str
) -> int:
    """Run an INSERT ... RETURNING id; a duplicate is a Conflict, a failed CHECK InvalidInput."""
    try:
        return int(await conn.fetchval(sql, *args))
    except asyncpg.UniqueViolationError:
        raise Conflict(exists) from None
    except asyncpg.CheckViolationError:
        raise InvalidInput(invalid) from None
