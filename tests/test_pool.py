"""Pooled connections go back as they are: TORCH leaves no session state behind."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg

from torch.store import db

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("torch", "api", "ingest") for p in (ROOT / d).rglob("*.py")]

# What would outlive a transaction on a pooled connection, were it ever written: session
# advisory locks, session settings (a statement that starts SET, but for SET LOCAL and SET
# TRANSACTION), set_config(..., false), cursors WITH HOLD and listening.
SESSION_STATE = re.compile(
    r"pg_advisory_lock|pg_try_advisory_lock\(|[\"']\s*SET\s+(?!LOCAL\b|TRANSACTION\b)"
    r"|set_config\([^)]*,\s*false\)|\bWITH\s+HOLD\b|add_listener\("
)  # SQL is written in capitals here


def test_no_code_leaves_state_in_a_session() -> None:
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in SOURCES
        for m in SESSION_STATE.finditer(p.read_text())
    ]
    # The one listener is on a connection of its own (db.Wakeup), never a pooled one.
    assert found == ["torch/store/db.py: add_listener("]


def test_a_transaction_left_open_is_rolled_back_on_release(migrated: None) -> None:
    from tests.services import DATABASE_URL

    async def main() -> tuple[bool, int, str]:
        pool = await db.pool(DATABASE_URL, size=1, application_name="torch-test")
        try:
            async with pool.acquire() as conn:
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS left_open (n int)")
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO left_open VALUES (1)")
                await conn.execute("SET LOCAL work_mem = '7MB'")
            async with pool.acquire() as conn:  # the same connection: the pool has one
                return (
                    conn.is_in_transaction(),
                    await conn.fetchval("SELECT count(*) FROM left_open"),
                    await conn.fetchval("SHOW work_mem"),
                )
        finally:
            await pool.close()

    in_transaction, rows, work_mem = asyncio.run(main())
    assert in_transaction is False
    assert rows == 0
    assert work_mem == "4MB"


def test_a_pooled_connection_is_handed_back_without_a_round_trip(migrated: None) -> None:
    """Releasing costs no statement: the next acquire finds the session as it was left."""
    from tests.services import DATABASE_URL

    async def main() -> tuple[int, int]:
        pool = await db.pool(DATABASE_URL, size=1, application_name="torch-test")
        try:
            async with pool.acquire() as conn:
                raw: asyncpg.Connection = conn._con  # type: ignore[attr-defined]
                before = raw._protocol.queries_count
            async with pool.acquire() as conn:
                after = conn._con._protocol.queries_count  # type: ignore[attr-defined]
                pid = await conn.fetchval("SELECT pg_backend_pid()")
            async with pool.acquire() as conn:
                same = await conn.fetchval("SELECT pg_backend_pid()")
            return after - before, int(pid == same)
        finally:
            await pool.close()

    statements, same_backend = asyncio.run(main())
    assert statements == 0
    assert same_backend == 1
