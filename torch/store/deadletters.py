"""Reading and replaying dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from torch.fixes import RejectCode
from torch.intake import Message


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    received_at: datetime
    topic: str
    payload: bytes
    reason_code: str
    reason: str
    item_index: int | None
    serial: str | None
    replayed_at: datetime | None


async def listing(
    conn: asyncpg.Connection, *, reason_code: str | None, serial: str | None, limit: int
) -> list[DeadLetterRow]:
    rows = await conn.fetch(
        """
        SELECT id, received_at, topic, payload, reason_code, reason, item_index, serial,
               replayed_at
        FROM dead_letters
        WHERE ($1::text IS NULL OR reason_code = $1) AND ($2::text IS NULL OR serial = $2)
        ORDER BY id DESC
        LIMIT $3
        """,
        reason_code,
        serial,
        limit,
    )
    return [DeadLetterRow(**dict(r)) for r in rows]


async def claim_replayable(
    conn: asyncpg.Connection, serial: str | None, limit: int
) -> list[tuple[int, Message]]:
    """Lock pending unknown-serial letters whose device is now registered, marking them replayed.

    Call inside the transaction that stores what they hold, so a letter is
    replayed exactly once.
    """
    rows = await conn.fetch(
        """
        UPDATE dead_letters d SET replayed_at = now()
        WHERE d.id IN (
            SELECT l.id FROM dead_letters l JOIN devices v ON v.serial = l.serial
            WHERE l.reason_code = $1 AND l.replayed_at IS NULL
              AND ($2::text IS NULL OR l.serial = $2)
            ORDER BY l.id
            LIMIT $3
            FOR UPDATE OF l SKIP LOCKED)
        RETURNING d.id, d.topic, d.payload, d.received_at
        """,
        RejectCode.UNKNOWN_SERIAL.value,
        serial,
        limit,
    )
    return sorted(
        ((r["id"], Message(r["topic"], bytes(r["payload"]), r["received_at"])) for r in rows),
        key=lambda pair: pair[0],
    )
