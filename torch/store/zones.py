"""Zones and their versions: written by probation staff, read by the API and the ingest worker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import shapely
from shapely import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from torch.errors import NotFound
from torch.zones import Kind, Window, ZoneVersion, parse_schedule


@dataclass(frozen=True, slots=True)
class Definition:
    """What probation staff set for a zone, checked (see torch.zones)."""

    kind: Kind
    label: str
    geometry: dict[str, Any]  # as sent, WGS84
    radius_m: float | None
    area: BaseGeometry  # on the grid
    schedule: tuple[Window, ...] | None
    valid_from: datetime
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class VersionRow:
    zone_id: int
    subject_id: int
    version: int
    kind: str
    label: str
    geometry: dict[str, Any]
    radius_m: float | None
    schedule: list[dict[str, Any]] | None
    valid_from: datetime
    valid_until: datetime | None
    current_from: datetime
    current_until: datetime | None
    made_by: str | None
    deleted_at: datetime | None


COLUMNS = """
    v.zone_id, z.subject_id, v.version, v.kind, v.label, v.geometry, v.radius_m, v.schedule,
    v.valid_from, v.valid_until, lower(v.recorded) AS current_from,
    upper(v.recorded) AS current_until, u.name AS made_by, z.deleted_at
"""
FROM = """
FROM zone_versions v JOIN zones z ON z.id = v.zone_id LEFT JOIN users u ON u.id = v.made_by
"""


def _row(r: asyncpg.Record) -> VersionRow:
    d = dict(r)
    d["geometry"] = json.loads(d["geometry"])
    d["schedule"] = None if d["schedule"] is None else json.loads(d["schedule"])
    return VersionRow(**d)


def _multi(area: BaseGeometry) -> bytes:
    multi = MultiPolygon([area]) if isinstance(area, Polygon) else area
    return bytes(shapely.to_wkb(multi))


async def _insert_version(
    conn: asyncpg.Connection, zone_id: int, version: int, d: Definition, user_id: int
) -> None:
    await conn.execute(
        """
        INSERT INTO zone_versions (zone_id, version, kind, label, geometry, radius_m, area,
                                   schedule, valid_from, valid_until, recorded, made_by)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, ST_GeomFromWKB($7, 27700), $8::jsonb, $9, $10,
                tstzrange(now(), NULL), $11)
        """,
        zone_id,
        version,
        d.kind.value,
        d.label,
        json.dumps(d.geometry),
        d.radius_m,
        _multi(d.area),
        None if d.schedule is None else json.dumps([w.as_json() for w in d.schedule]),
        d.valid_from,
        d.valid_until,
        user_id,
    )


async def create(conn: asyncpg.Connection, subject_id: int, d: Definition, user_id: int) -> int:
    zone_id = int(
        await conn.fetchval("INSERT INTO zones (subject_id) VALUES ($1) RETURNING id", subject_id)
    )
    await _insert_version(conn, zone_id, 1, d, user_id)
    return zone_id


async def current(conn: asyncpg.Connection, zone_id: int) -> VersionRow | None:
    """The zone as it stands (its current version), or None if there is no such zone."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} {FROM} WHERE v.zone_id = $1 ORDER BY v.version DESC LIMIT 1", zone_id
    )
    return None if row is None else _row(row)


async def of_subject(conn: asyncpg.Connection, subject_id: int) -> list[VersionRow]:
    """The subject's zones as they stand, deleted ones left out."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} {FROM} WHERE z.subject_id = $1 AND z.deleted_at IS NULL"
        " AND upper_inf(v.recorded) ORDER BY v.zone_id",
        subject_id,
    )
    return [_row(r) for r in rows]


async def versions(conn: asyncpg.Connection, zone_id: int) -> list[VersionRow]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} {FROM} WHERE v.zone_id = $1 ORDER BY v.version", zone_id
    )
    return [_row(r) for r in rows]


async def replace(conn: asyncpg.Connection, zone_id: int, d: Definition, user_id: int) -> int:
    """A new version of the zone, current from now; the previous one stays as it was."""
    version = await _close_current(conn, zone_id)
    await _insert_version(conn, zone_id, version + 1, d, user_id)
    return version + 1


async def delete(conn: asyncpg.Connection, zone_id: int) -> None:
    """End the zone now; its versions stay, for what was in force before."""
    await _close_current(conn, zone_id)
    await conn.execute("UPDATE zones SET deleted_at = now() WHERE id = $1", zone_id)


async def _close_current(conn: asyncpg.Connection, zone_id: int) -> int:
    version = await conn.fetchval(
        """
        UPDATE zone_versions SET recorded = tstzrange(lower(recorded), now())
        WHERE zone_id = $1 AND upper_inf(recorded)
          AND (SELECT deleted_at FROM zones WHERE id = $1) IS NULL
        RETURNING version
        """,
        zone_id,
    )
    if version is None:
        raise NotFound(f"no zone {zone_id}")
    return int(version)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every zone version, for the ingest worker; `mark` changes whenever any zone does."""

    mark: tuple[Any, ...]
    versions: list[ZoneVersion]


MARK = """
SELECT count(*), max(lower(recorded)), max(upper(recorded)) FROM zone_versions
"""


async def mark(conn: asyncpg.Connection) -> tuple[Any, ...]:
    return tuple(await conn.fetchrow(MARK))


async def snapshot(conn: asyncpg.Connection) -> Snapshot:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        m = await mark(conn)
        rows = await conn.fetch(
            """
            SELECT v.zone_id, v.version, z.subject_id, v.kind, v.label, ST_AsBinary(v.area) AS area,
                   v.schedule, v.valid_from, v.valid_until, lower(v.recorded) AS since,
                   upper(v.recorded) AS until
            FROM zone_versions v JOIN zones z ON z.id = v.zone_id
            ORDER BY v.zone_id, v.version
            """
        )
    out = [
        ZoneVersion(
            r["zone_id"],
            r["version"],
            r["subject_id"],
            Kind(r["kind"]),
            r["label"],
            shapely.from_wkb(r["area"]),
            None if r["schedule"] is None else parse_schedule(json.loads(r["schedule"])),
            r["valid_from"],
            r["valid_until"],
            r["since"],
            r["until"],
        )
        for r in rows
    ]
    return Snapshot(m, out)


async def subject_of(conn: asyncpg.Connection, zone_id: int) -> int | None:
    value = await conn.fetchval("SELECT subject_id FROM zones WHERE id = $1", zone_id)
    return None if value is None else int(value)
