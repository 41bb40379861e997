"""Subjects as the API shows them, and a subject's fixes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from torch.proximity import TrackFix
from torch.store.users import User

SUBJECT = """
SELECT s.id, s.ref, s.status,
       (SELECT d.serial FROM device_assignments a JOIN devices d ON d.id = a.device_id
        WHERE a.subject_id = s.id AND a.during @> now()) AS device
FROM subjects s
"""

# acc and speed are stored as real; numeric gives back the decimal the tag sent (10.6, not
# 10.600000381469727).
FIX_COLUMNS = """
date_part('epoch', f.fix_time) AS t, ST_X(f.position) AS x, ST_Y(f.position) AS y,
f.acc::numeric::float8 AS acc, f.lat, f.lon
"""


# A subject's fixes ($1) from $2 to $3, of the devices they wore at the time, in time order.
SUBJECT_FIXES = """
FROM device_assignments a
JOIN fixes f ON f.device_id = a.device_id AND a.during @> f.fix_time
WHERE a.subject_id = $1 AND f.fix_time BETWEEN $2 AND $3
ORDER BY f.fix_time
"""


@dataclass(frozen=True, slots=True)
class SubjectRow:
    id: int
    ref: str
    status: str
    device: str | None


def _scope(force: str, team: str) -> str:
    """The subjects a user may see: their force's, and of those, their own team's for
    probation staff (team NULL: the whole force)."""
    return (
        f"s.team_id IN (SELECT id FROM teams WHERE force = {force})"
        f" AND ({team}::bigint IS NULL OR s.team_id = {team})"
    )


async def listing(conn: asyncpg.Connection, ref: str | None, user: User) -> list[SubjectRow]:
    rows = await conn.fetch(
        SUBJECT
        + " WHERE ($1::text IS NULL OR s.ref = $1) AND "
        + _scope("$2", "$3")
        + " ORDER BY s.id",
        ref,
        user.force,
        user.caseload_team,
    )
    return [SubjectRow(**dict(r)) for r in rows]


async def one(conn: asyncpg.Connection, subject_id: int, user: User) -> SubjectRow | None:
    """The subject, if this user may see it: another caseload's subject is as absent as one
    that does not exist, so that subjects cannot be enumerated."""
    row = await conn.fetchrow(
        SUBJECT + " WHERE s.id = $1 AND " + _scope("$2", "$3"),
        subject_id,
        user.force,
        user.caseload_team,
    )
    return None if row is None else SubjectRow(**dict(row))


async def visible(conn: asyncpg.Connection, user: User) -> set[int]:
    """The ids of every subject this user may see."""
    rows = await conn.fetch(
        "SELECT s.id FROM subjects s WHERE " + _scope("$1", "$2"), user.force, user.caseload_team
    )
    return {r["id"] for r in rows}


def _fix(r: asyncpg.Record) -> TrackFix:
    return TrackFix(r["t"], r["x"], r["y"], r["acc"], r["lat"], r["lon"])


async def device_at(conn: asyncpg.Connection, subject_id: int, at: datetime) -> str | None:
    """The serial of the device the subject wore at `at`; None when they wore none."""
    serial = await conn.fetchval(
        "SELECT d.serial FROM device_assignments a JOIN devices d ON d.id = a.device_id"
        " WHERE a.subject_id = $1 AND a.during @> $2::timestamptz",
        subject_id,
        at,
    )
    return None if serial is None else str(serial)


# The subject's ($1) last fix at or before $2 (side 0) and first fix after it (side 1), of
# the devices they wore at the time, however long before or after: one look-up in each
# assignment's device's index, bounded by the assignment, so that a tag's fixes for another
# wearer are not read through.
FIXES_AROUND = f"""
(SELECT 0 AS side, {FIX_COLUMNS}
 FROM device_assignments a
 CROSS JOIN LATERAL (
     SELECT f.* FROM fixes f
     WHERE f.device_id = a.device_id AND a.during @> f.fix_time
       AND f.fix_time >= lower(a.during) AND f.fix_time <= $2
     ORDER BY f.fix_time DESC LIMIT 1
 ) f
 WHERE a.subject_id = $1 AND lower(a.during) <= $2
 ORDER BY f.fix_time DESC LIMIT 1)
UNION ALL
(SELECT 1 AS side, {FIX_COLUMNS}
 FROM device_assignments a
 CROSS JOIN LATERAL (
     SELECT f.* FROM fixes f
     WHERE f.device_id = a.device_id AND a.during @> f.fix_time
       AND f.fix_time > $2 AND f.fix_time >= lower(a.during)
       AND (upper(a.during) IS NULL OR f.fix_time < upper(a.during))
     ORDER BY f.fix_time LIMIT 1
 ) f
 WHERE a.subject_id = $1 AND (upper(a.during) IS NULL OR upper(a.during) > $2)
 ORDER BY f.fix_time LIMIT 1)
"""


async def fixes_around(
    conn: asyncpg.Connection, subject_id: int, at: datetime
) -> tuple[TrackFix | None, TrackFix | None]:
    """The subject's last fix at or before `at` and first fix after it (None: there is none)."""
    sides = {r["side"]: _fix(r) for r in await conn.fetch(FIXES_AROUND, subject_id, at)}
    return sides.get(0), sides.get(1)


async def track(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime
) -> list[tuple[TrackFix, str, float | None]]:
    """The subject's fixes in [start, end] in time order, with source and speed."""
    rows = await conn.fetch(
        f"SELECT {FIX_COLUMNS}, f.src::text AS src, f.speed::numeric::float8 AS speed"
        + SUBJECT_FIXES,
        subject_id,
        start,
        end,
    )
    return [(_fix(r), r["src"], r["speed"]) for r in rows]


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    subject_id: int
    subject_ref: str
    serial: str
    last_seen_at: datetime | None
    last_fix_at: datetime | None
    battery: int | None
    strap: str | None


async def device_health(conn: asyncpg.Connection, user: User) -> list[DeviceHealth]:
    """The device each subject of the user's caseload wears now, with what it last reported.
    No positions: health is not a way to read whereabouts."""
    rows = await conn.fetch(
        """
        SELECT s.id AS subject_id, s.ref AS subject_ref, d.serial, st.last_seen_at,
               st.last_fix_at, st.battery, st.strap::text AS strap
        FROM subjects s
        JOIN device_assignments a ON a.subject_id = s.id AND a.during @> now()
        JOIN devices d ON d.id = a.device_id
        LEFT JOIN device_state st ON st.device_id = d.id
        WHERE """
        + _scope("$1", "$2")
        + " ORDER BY s.ref",
        user.force,
        user.caseload_team,
    )
    return [DeviceHealth(**dict(r)) for r in rows]
