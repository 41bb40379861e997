"""Connections to PostgreSQL/PostGIS (asyncpg)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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


async def connect(url: str, *, application_name: str = "torch") -> asyncpg.Connection:
    return await asyncpg.connect(
        dsn(url), server_settings={"application_name": application_name}, timeout=10
    )


async def pool(
    url: str,
    *,
    size: int,
    application_name: str,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool of up to `size` connections; broken ones are replaced on the next acquire."""
    return await asyncpg.create_pool(
        dsn(url),
        min_size=0,
        max_size=size,
        init=init,
        timeout=10,
        server_settings={"application_name": application_name, **(settings or {})},
    )


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
