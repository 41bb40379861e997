"""Bulk correlation jobs: created, advanced, finished, read."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg


async def create(
    conn: asyncpg.Connection,
    job_id: UUID,
    user_id: int,
    reason: str,
    total: int,
    errors: list[dict[str, Any]],
) -> None:
    await conn.execute(
        "INSERT INTO correlation_jobs (id, user_id, reason, status, total, errors)"
        " VALUES ($1, $2, $3, 'running', $4, $5::jsonb)",
        job_id,
        user_id,
        reason,
        total,
        json.dumps(errors),
    )


async def advance(conn: asyncpg.Connection, job_id: UUID, done: int) -> None:
    await conn.execute("UPDATE correlation_jobs SET done = $2 WHERE id = $1", job_id, done)


async def finish(conn: asyncpg.Connection, job_id: UUID, results: list[dict[str, Any]]) -> None:
    await conn.execute(
        "UPDATE correlation_jobs SET status = 'done', results = $2::jsonb, finished_at = now()"
        " WHERE id = $1",
        job_id,
        json.dumps(results),
    )


async def fail(conn: asyncpg.Connection, job_id: UUID, failure: str) -> None:
    """The job stopped on an error: `failure` says what the officer can do about it."""
    await conn.execute(
        "UPDATE correlation_jobs SET status = 'failed', failure = $2, finished_at = now()"
        " WHERE id = $1",
        job_id,
        failure,
    )


INTERRUPTED = "the API stopped before the job finished; start it again"


async def interrupt_running(conn: asyncpg.Connection) -> None:
    """Jobs left running by a stopped API will not finish: say so."""
    await conn.execute(
        "UPDATE correlation_jobs SET status = 'interrupted', failure = $1, finished_at = now()"
        " WHERE status = 'running'",
        INTERRUPTED,
    )


async def get(conn: asyncpg.Connection, job_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM correlation_jobs WHERE id = $1", job_id)
    if row is None:
        return None
    job = dict(row)
    job["errors"] = json.loads(job["errors"])
    job["results"] = None if job["results"] is None else json.loads(job["results"])
    return job
