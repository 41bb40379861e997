"""Subjects, devices and which device a subject wore when."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from torch.errors import Conflict, InvalidInput, NotFound
from torch.store import db, tiles


@dataclass(frozen=True, slots=True)
class Assignment:
    id: int
    serial: str
    subject_ref: str
    start: datetime
    end: datetime | None


async def add_subject(
    conn: asyncpg.Connection, ref: str, display_name: str | None, team: str = "default"
) -> int:
    from torch.store.users import team_id_of

    team_id = await team_id_of(conn, team)
    return await db.insert_id(
        conn,
        "INSERT INTO subjects (ref, display_name, team_id) VALUES ($1, $2, $3) RETURNING id",
        ref,
        display_name,
        team_id,
        exists=f"subject {ref} already exists",
        invalid=f"subject reference {ref!r} must be 1-64 letters, digits, '/', '_', '.' or '-'",
    )


async def move_subject(conn: asyncpg.Connection, ref: str, team: str) -> tuple[str, str]:
    """Transfer a subject to another team's caseload (and so, perhaps, another force's):
    who may see them changes with the next request. Returns the old team's name and the
    new one's."""
    from torch.store.users import change_team

    old = await change_team(conn, "subjects", "x.ref = $1", ref, team)
    if old is None:
        raise NotFound(f"no subject with reference {ref}")
    return old, team


async def add_device(conn: asyncpg.Connection, serial: str, model: str | None) -> int:
    return await db.insert_id(
        conn,
        "INSERT INTO devices (serial, model) VALUES ($1, $2) RETURNING id",
        serial,
        model,
        exists=f"device {serial} already exists",
        invalid=f"serial {serial!r} must be 1-64 letters, digits, '.', '_' or '-'",
    )


async def device_ids(conn: asyncpg.Connection, serials: Iterable[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT serial, id FROM devices WHERE serial = ANY($1::text[])", list(serials)
    )
    return {row["serial"]: row["id"] for row in rows}


async def assign(
    conn: asyncpg.Connection,
    serial: str,
    subject_ref: str,
    start: datetime,
    end: datetime | None,
    by: int | None = None,
) -> Assignment:
    """Record that the subject wears the device from start to end (None: open), as the
    user `by` says (None: not named)."""
    if end is not None and end <= start:
        raise InvalidInput(f"--to {end.isoformat()} must be after --from {start.isoformat()}")
    device = await conn.fetchval("SELECT id FROM devices WHERE serial = $1", serial)
    if device is None:
        raise NotFound(f"no device with serial {serial}")
    subject = await conn.fetchval("SELECT id FROM subjects WHERE ref = $1", subject_ref)
    if subject is None:
        raise NotFound(f"no subject with reference {subject_ref}")
    async with conn.transaction():
        try:
            row = await conn.fetchrow(
                "INSERT INTO device_assignments (device_id, subject_id, during, recorded_by)"
                " VALUES ($1, $2, tstzrange($3, $4, '[)'), $5) RETURNING id",
                device,
                subject,
                start,
                end,
                by,
            )
        except asyncpg.ExclusionViolationError as err:
            who = "device" if "device_no_overlap" in str(err.constraint_name) else "subject"
            raise Conflict(
                f"the {who} already has an assignment that overlaps "
                f"{start.isoformat()} to {end.isoformat() if end else 'open end'}"
            ) from None
        # Fixes already stored for the device in this time now belong to the subject: into
        # their tiles, and checked against their zones and the protected persons they are
        # linked to (up to a day ahead: a fix may be stamped a little ahead of the clock,
        # and be stored before this).
        await tiles.mark_hours(conn, [device], start, end)
        await conn.execute(
            "INSERT INTO zone_rechecks (subject_id, from_at, to_at)"
            " SELECT $1, $2, least($3, now() + interval '1 day')"
            " WHERE $2 < least($3, now() + interval '1 day')",  # not a fitting still to come
            subject,
            start,
            end,
        )
    return Assignment(row["id"], serial, subject_ref, start, end)


async def unassign(
    conn: asyncpg.Connection, serial: str, at: datetime, by: int | None = None
) -> Assignment:
    """End the device's assignment in force at `at` there: the tag was taken off (an order
    that ended, a tag swapped), as the user `by` says. Its fixes from `at` on belong to
    nobody, and their hours are queued to be tiled again."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT a.id, a.device_id, s.ref, lower(a.during) AS start, upper(a.during) AS end
            FROM device_assignments a
            JOIN devices d ON d.id = a.device_id
            JOIN subjects s ON s.id = a.subject_id
            WHERE d.serial = $1 AND a.during @> $2::timestamptz
            FOR UPDATE OF a
            """,
            serial,
            at,
        )
        if row is None:
            if await conn.fetchval("SELECT 1 FROM devices WHERE serial = $1", serial) is None:
                raise NotFound(f"no device with serial {serial}")
            raise NotFound(f"device {serial} is not assigned to anyone at {at.isoformat()}")
        if at == row["start"]:
            raise InvalidInput(
                f"--at {at.isoformat()} is when the assignment to {row['ref']} starts: it would"
                " end before it began; give a later time"
            )
        await conn.execute(
            "UPDATE device_assignments SET during = tstzrange(lower(during), $2, '[)'),"
            " end_recorded_at = now(), end_recorded_by = $3 WHERE id = $1",
            row["id"],
            at,
            by,
        )
        await tiles.mark_hours(conn, [row["device_id"]], at, row["end"])
    return Assignment(row["id"], serial, row["ref"], row["start"], at)


@dataclass(frozen=True, slots=True)
class Recorded:
    """An assignment as the register holds it, with when and by whom it and its end were
    recorded (None: recorded before these were kept, not named, or its end not recorded)."""

    serial: str
    subject_ref: str
    start: datetime
    end: datetime | None
    recorded_at: datetime | None
    end_recorded_at: datetime | None
    recorded_by: str | None
    end_recorded_by: str | None


async def history(
    conn: asyncpg.Connection, serial: str | None, subject_ref: str | None
) -> list[Recorded]:
    """Every assignment, or a tag's, or a subject's, in time order."""
    rows = await conn.fetch(
        """
        SELECT d.serial, s.ref AS subject_ref, lower(a.during) AS start, upper(a.during) AS end,
               a.recorded_at, a.end_recorded_at, r.name AS recorded_by, e.name AS end_recorded_by
        FROM device_assignments a
        JOIN devices d ON d.id = a.device_id
        JOIN subjects s ON s.id = a.subject_id
        LEFT JOIN users r ON r.id = a.recorded_by
        LEFT JOIN users e ON e.id = a.end_recorded_by
        WHERE ($1::text IS NULL OR d.serial = $1) AND ($2::text IS NULL OR s.ref = $2)
        ORDER BY lower(a.during), d.serial
        """,
        serial,
        subject_ref,
    )
    return [Recorded(**dict(r)) for r in rows]


async def assignments_mark(conn: asyncpg.Connection) -> tuple[object, ...]:
    """A value that changes whenever an assignment is made or its end moves: the ingest
    worker takes assignments up again when it does."""
    row = await conn.fetchrow(
        "SELECT count(*), max(id), sum(extract(epoch FROM upper(during))) FROM device_assignments"
    )
    return tuple(row)


@dataclass(frozen=True, slots=True)
class Worn:
    device_id: int
    subject_id: int
    subject_ref: str
    start: datetime
    end: datetime | None


async def all_assignments(conn: asyncpg.Connection) -> list[Worn]:
    rows = await conn.fetch(
        "SELECT a.device_id, a.subject_id, s.ref AS subject_ref, lower(a.during) AS start,"
        " upper(a.during) AS end"
        " FROM device_assignments a JOIN subjects s ON s.id = a.subject_id"
    )
    return [Worn(**dict(r)) for r in rows]


async def ensure_fleet(
    conn: asyncpg.Connection, pairs: list[tuple[str, str]], model: str, start: datetime
) -> tuple[int, int]:
    """Register (subject ref, serial) pairs where missing, each wearing its device from start.

    Returns (pairs newly assigned, pairs left alone because either side was
    already assigned otherwise). Safe to run again.
    """
    refs = [p[0] for p in pairs]
    serials = [p[1] for p in pairs]
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO subjects (ref) SELECT unnest($1::text[]) ON CONFLICT (ref) DO NOTHING",
            refs,
        )
        await conn.execute(
            "INSERT INTO devices (serial, model) SELECT unnest($1::text[]), $2"
            " ON CONFLICT (serial) DO NOTHING",
            serials,
            model,
        )
        status = await conn.execute(
            """
            INSERT INTO device_assignments (device_id, subject_id, during)
            SELECT d.id, s.id, tstzrange($3, NULL)
            FROM unnest($1::text[], $2::text[]) AS i(ref, serial)
            JOIN subjects s ON s.ref = i.ref
            JOIN devices d ON d.serial = i.serial
            WHERE NOT EXISTS (SELECT 1 FROM device_assignments a
                              WHERE (a.device_id = d.id OR a.subject_id = s.id)
                                AND a.during && tstzrange($3, NULL))
            ORDER BY d.id
            """,
            refs,
            serials,
            start,
        )
        devices = await conn.fetch("SELECT id FROM devices WHERE serial = ANY($1::text[])", serials)
        await tiles.mark_hours(conn, [d["id"] for d in devices], start, None)
    assigned = db.affected(status)
    already = await conn.fetchval(
        """
        SELECT count(*) FROM unnest($1::text[], $2::text[]) AS i(ref, serial)
        JOIN subjects s ON s.ref = i.ref JOIN devices d ON d.serial = i.serial
        JOIN device_assignments a ON a.device_id = d.id AND a.subject_id = s.id
        """,
        refs,
        serials,
    )
    return assigned, len(pairs) - int(already)
