"""Reading and replaying dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from torch.fixes import RejectCode
from torch.intake import Message
from torch.store.users import User, audit


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


# Dead letters past retention: received before `before` ($1), except those of a tag worn
# then by a subject under a live legal hold. (A dead letter's force is not always known: a
# serial nobody registered, a tag nobody wears; `before` is the longest retention in force.)
PAST = """
FROM dead_letters d
WHERE d.received_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM devices v
      JOIN device_assignments a ON a.device_id = v.id AND a.during @> d.received_at
      JOIN legal_holds h ON h.subject_id = a.subject_id
       AND h.released_at IS NULL AND h.during @> d.received_at
      WHERE v.serial = d.serial)
"""


async def past_retention(conn: asyncpg.Connection, before: datetime) -> int:
    """How many dead letters `purge` would delete."""
    return int(await conn.fetchval("SELECT count(*) " + PAST, before))


async def purge(conn: asyncpg.Connection, before: datetime, user: User) -> int:
    """Delete the dead letters past retention, audited: they hold positions as tags sent
    them, which retention must not leave behind. How many went."""
    async with conn.transaction():
        status = await conn.execute(
            "DELETE FROM dead_letters WHERE id IN (SELECT d.id " + PAST + ")", before
        )
        gone = int(status.split()[-1])
        if gone:
            reason = f"{gone} dead letters received before {before.isoformat()} purged"
            await audit(conn, user, "PURGE", "retention", [], reason=reason)
    return gone
