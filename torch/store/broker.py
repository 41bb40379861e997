"""Broker accounts in the database; torch.broker renders them for Mosquitto."""

from __future__ import annotations

import asyncpg

from torch.broker import Account, AccountKind, new_password, password_hash
from torch.errors import InvalidInput, NotFound


async def set_account(
    conn: asyncpg.Connection, name: str, kind: AccountKind, password: str | None = None
) -> str:
    """Create the account, or give an existing one a new password (and undo a revocation).
    Returns the password, which is not kept."""
    password = password or new_password()
    try:
        await conn.execute(
            """
            INSERT INTO broker_accounts (name, kind, password_hash) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE
               SET kind = EXCLUDED.kind, password_hash = EXCLUDED.password_hash,
                   rotated_at = now(), revoked_at = NULL
            """,
            name,
            kind.value,
            password_hash(password),
        )
    except asyncpg.CheckViolationError:
        raise InvalidInput(
            f"broker account name {name!r} must be 1-64 letters, digits, '.', '_' or '-'"
        ) from None
    return password


async def live_hash(conn: asyncpg.Connection, name: str) -> str | None:
    """The password hash of the live (not revoked) account `name`; None if there is none."""
    value = await conn.fetchval(
        "SELECT password_hash FROM broker_accounts WHERE name = $1 AND revoked_at IS NULL", name
    )
    return None if value is None else str(value)


async def revoke(conn: asyncpg.Connection, name: str) -> None:
    status = await conn.execute(
        "UPDATE broker_accounts SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
        name,
    )
    if status.endswith(" 0"):
        raise NotFound(f"no live broker account named {name}")


async def accounts(conn: asyncpg.Connection) -> list[Account]:
    """The accounts that may connect: not revoked, and for tags, a registered device."""
    rows = await conn.fetch(
        """
        SELECT a.name, a.kind, a.password_hash FROM broker_accounts a
        WHERE a.revoked_at IS NULL
          AND (a.kind <> 'device' OR EXISTS (SELECT 1 FROM devices d WHERE d.serial = a.name))
        ORDER BY a.kind, a.name
        """
    )
    return [Account(r["name"], AccountKind(r["kind"]), r["password_hash"]) for r in rows]
