"""The audit trail: who read whose location data, when and why; and its chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from torch.audit import Link, Verification, walk

CHAIN = """
SELECT seq,
       hash = audit_hash(prev_hash, seq, at, user_id, method, route, crime_ref, reason,
                         query_id, subject_ids) AS intact,
       prev_hash = coalesce(lag(hash) OVER (ORDER BY seq), '\\x'::bytea) AS linked,
       encode(hash, 'hex') AS hash
FROM audit_log
ORDER BY seq
"""


async def verify(conn: asyncpg.Connection) -> Verification:
    """Walk the whole chain (a cursor, so that a long trail is not held in memory)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        links = [
            Link(r["seq"], r["intact"], r["linked"], r["hash"])
            async for r in conn.cursor(CHAIN, prefetch=5000)
        ]
    return walk(links)


async def records(
    conn: asyncpg.Connection,
    user: str | None,
    subject_id: int | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; with `before`, those before that seq only (the next page)."""
    rows = await conn.fetch(
        """
        SELECT a.seq, a.at, u.name AS user, u.role::text AS role, a.method, a.route,
               a.crime_ref, a.reason, a.query_id, a.subject_ids,
               encode(a.hash, 'hex') AS hash
        FROM audit_log a JOIN users u ON u.id = a.user_id
        WHERE ($1::text IS NULL OR u.name = $1)
          AND ($2::bigint IS NULL OR $2 = ANY (a.subject_ids))
          AND ($3::timestamptz IS NULL OR a.at >= $3)
          AND ($4::timestamptz IS NULL OR a.at < $4)
          AND ($6::bigint IS NULL OR a.seq < $6)
        ORDER BY a.seq DESC
        LIMIT $5
        """,
        user,
        subject_id,
        start,
        end,
        limit,
        before,
    )
    return [
        {
            **dict(r),
            "at": r["at"].isoformat(),
            "query_id": None if r["query_id"] is None else str(r["query_id"]),
            "subject_ids": list(r["subject_ids"]),
        }
        for r in rows
    ]
