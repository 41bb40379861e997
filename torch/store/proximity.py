"""Reads for the crime-scene query, and the record of each query asked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from torch.proximity import TrackFix


@dataclass(slots=True)
class SubjectTrack:
    subject_id: int
    ref: str
    fixes: list[TrackFix] = field(default_factory=list)


async def tracks(
    conn: asyncpg.Connection, start: datetime, end: datetime, margin_s: float
) -> list[SubjectTrack]:
    """Every subject who wore a device at any moment of [start, end], with the fixes of the
    devices they wore, from margin_s before to margin_s after, in time order."""
    subjects = await conn.fetch(
        """
        SELECT DISTINCT s.id, s.ref FROM device_assignments a JOIN subjects s ON s.id = a.subject_id
        WHERE a.during && tstzrange($1, $2, '[]') ORDER BY s.id
        """,
        start,
        end,
    )
    by_id = {r["id"]: SubjectTrack(r["id"], r["ref"]) for r in subjects}
    rows = await conn.fetch(
        """
        SELECT a.subject_id, extract(epoch FROM f.fix_time)::float8 AS t,
               ST_X(f.position) AS x, ST_Y(f.position) AS y, f.acc::numeric::float8 AS acc,
               f.lat, f.lon
        FROM device_assignments a
        JOIN fixes f ON f.device_id = a.device_id AND a.during @> f.fix_time
        WHERE a.during && tstzrange($1::timestamptz - make_interval(secs => $3),
                                    $2::timestamptz + make_interval(secs => $3))
          AND f.fix_time BETWEEN $1::timestamptz - make_interval(secs => $3)
                             AND $2::timestamptz + make_interval(secs => $3)
        ORDER BY a.subject_id, f.fix_time
        """,
        start,
        end,
        margin_s,
    )
    for r in rows:
        track = by_id.get(r["subject_id"])
        if track is not None:
            track.fixes.append(TrackFix(r["t"], r["x"], r["y"], r["acc"], r["lat"], r["lon"]))
    return list(by_id.values())


async def record(
    conn: asyncpg.Connection,
    query_id: UUID,
    user_id: int,
    request: dict[str, Any],
    response: dict[str, Any],
    version: str,
) -> None:
    await conn.execute(
        "INSERT INTO proximity_queries (id, user_id, request, response, version)"
        " VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)",
        query_id,
        user_id,
        json.dumps(request),
        json.dumps(response),
        version,
    )


@dataclass(frozen=True, slots=True)
class RecordedQuery:
    id: UUID
    user_id: int
    at: datetime
    request: dict[str, Any]
    response: dict[str, Any]
    version: str


async def recorded(conn: asyncpg.Connection, query_id: UUID) -> RecordedQuery | None:
    row = await conn.fetchrow(
        "SELECT id, user_id, at, request, response, version FROM proximity_queries WHERE id = $1",
        query_id,
    )
    if row is None:
        return None
    return RecordedQuery(
        row["id"],
        row["user_id"],
        row["at"],
        json.loads(row["request"]),
        json.loads(row["response"]),
        row["version"],
    )
