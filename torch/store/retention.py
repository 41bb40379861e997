"""Retention: fixes older than the retention period go a day-partition at a time.

Each force may set its own retention (`torch force retention`); the others, and fixes
of tags worn by nobody, follow TORCH_RETENTION_DAYS. A day with nothing to keep is
dropped whole (DETACH and DROP: no row is deleted one by one, no table is rewritten).
A day with fixes to keep (under a legal hold, or of a force with a longer retention)
is trimmed: those fixes are copied into a new table, the old partition dropped, and
the new one attached in its place. Track tiles of the purged hours go with them (a
few rows a subject an hour), except those kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import asyncpg

from torch.errors import InvalidInput, NotFound
from torch.store import deadletters, tiles
from torch.store.users import User, audit

# A fix f is kept when a live legal hold covers it, or when it is younger than the
# retention of its wearer's force ($1: today, $2: the default retention in days).
KEPT = """
(EXISTS (SELECT 1 FROM device_assignments a JOIN legal_holds h ON h.subject_id = a.subject_id
         WHERE a.device_id = f.device_id AND a.during @> f.fix_time
           AND h.released_at IS NULL AND h.during @> f.fix_time)
 OR f.fix_time >= (($1::date - coalesce(
        (SELECT fo.retention_days FROM device_assignments a
         JOIN subjects s ON s.id = a.subject_id JOIN teams t ON t.id = s.team_id
         JOIN forces fo ON fo.name = t.force
         WHERE a.device_id = f.device_id AND a.during @> f.fix_time), $2))::timestamp
        AT TIME ZONE 'UTC'))
"""


@dataclass(frozen=True, slots=True)
class Day:
    partition: str
    day: date
    fixes: int
    kept: int  # under a legal hold, or of a force with a longer retention

    @property
    def whole(self) -> bool:
        return self.kept == 0


async def shortest(conn: asyncpg.Connection, default_days: int) -> int:
    """The shortest retention in force, in days: no day younger than it has anything to go."""
    days = await conn.fetchval("SELECT min(retention_days) FROM forces")
    return min(default_days, days) if days is not None else default_days


async def _longest(conn: asyncpg.Connection, default_days: int) -> int:
    """The longest retention in force, in days: what a record of no known force is kept for."""
    days = await conn.fetchval("SELECT max(retention_days) FROM forces")
    return max(default_days, days) if days is not None else default_days


async def _letters_before(conn: asyncpg.Connection, today: date, default_days: int) -> datetime:
    """Dead letters received before this are past retention (torch.store.deadletters)."""
    day = today - timedelta(days=await _longest(conn, default_days))
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def plan(conn: asyncpg.Connection, today: date, default_days: int) -> list[Day]:
    """The day partitions with something past retention: their fixes, and those kept."""
    cutoff = today - timedelta(days=await shortest(conn, default_days))
    rows = await conn.fetch(
        """
        SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'fixes'::regclass AND c.relname ~ '^fixes_[0-9]{8}$'
        ORDER BY c.relname
        """
    )
    days = []
    for r in rows:
        day = datetime.strptime(r["name"][6:], "%Y%m%d").date()
        if day >= cutoff:
            continue
        name = _ident(r["name"])
        counts = await conn.fetchrow(
            f"SELECT count(*) AS fixes, count(*) FILTER (WHERE {KEPT}) AS kept FROM {name} f",
            today,
            default_days,
        )
        if counts["fixes"] and counts["kept"] == counts["fixes"]:
            continue  # every fix in it stays: nothing to purge, and no need to rewrite it
        days.append(Day(r["name"], day, counts["fixes"], counts["kept"]))
    return days


async def purge(
    conn: asyncpg.Connection, days: list[Day], today: date, default_days: int, user: User
) -> None:
    """Drop or trim the days, delete the tiles of the purged hours, and audit it; in one
    transaction, so that a failure leaves everything as it was."""
    async with conn.transaction():
        for d in days:
            name = _ident(d.partition)
            start = datetime(d.day.year, d.day.month, d.day.day, tzinfo=UTC)
            await conn.execute(f"ALTER TABLE fixes DETACH PARTITION {name}")
            if not d.whole:
                keep = _ident(d.partition + "_held")
                await conn.execute(
                    f"CREATE TABLE {keep} (LIKE fixes INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
                await conn.execute(
                    f"INSERT INTO {keep} SELECT * FROM {name} f WHERE {KEPT}", today, default_days
                )
            await conn.execute(f"DROP TABLE {name}")
            if not d.whole:
                await conn.execute(f"ALTER TABLE {keep} RENAME TO {name}")
                bounds = f"FROM ({_literal(start)}) TO ({_literal(start + timedelta(days=1))})"
                await conn.execute(f"ALTER TABLE fixes ATTACH PARTITION {name} FOR VALUES {bounds}")
        purged = await conn.fetch(
            """
            DELETE FROM track_tiles t
            USING subjects s JOIN teams tm ON tm.id = s.team_id JOIN forces fo ON fo.name = tm.force
            WHERE s.id = t.subject_id
              AND t.tile_start + interval '1 hour' <= (($1::date - coalesce(fo.retention_days, $2))
                  ::timestamp AT TIME ZONE 'UTC')
              AND NOT EXISTS (SELECT 1 FROM legal_holds h
                  WHERE h.subject_id = t.subject_id AND h.released_at IS NULL
                    AND h.during && tstzrange(t.tile_start, t.tile_start + interval '1 hour'))
            RETURNING t.subject_id, t.tile_start
            """,
            today,
            default_days,
        )
        await tiles.rebuild_blocks(conn, [(r["subject_id"], r["tile_start"]) for r in purged])
        await audit(conn, user, "PURGE", "torch retention run", [], reason=_summary(days))


class Applied(NamedTuple):
    """What retention did, or with `dry_run` would do."""

    days: list[Day]  # day partitions past retention, dropped or trimmed
    letters_before: datetime  # dead letters received before this went
    letters: int  # how many


async def apply(
    conn: asyncpg.Connection, today: date, default_days: int, user: User | None
) -> Applied:
    """Retention: the day partitions past it dropped or trimmed (`purge`), and the dead
    letters past it deleted (torch.store.deadletters), each audited on the authority of
    `user`; with no user, only what would go, changing nothing."""
    days = await plan(conn, today, default_days)
    before = await _letters_before(conn, today, default_days)
    if user is None:
        return Applied(days, before, await deadletters.past_retention(conn, before))
    if days:
        await purge(conn, days, today, default_days, user)
    return Applied(days, before, await deadletters.purge(conn, before, user))


def _ident(name: str) -> str:
    """A partition's name, which we made (fixes_YYYYMMDD), quoted all the same."""
    if not re.fullmatch(r"fixes_[0-9]{8}(_held)?", name):
        raise ValueError(f"not a partition of fixes: {name!r}")
    return f'"{name}"'


def _literal(t: datetime) -> str:
    return "'" + t.isoformat() + "'"


def totals(days: list[Day]) -> tuple[int, int]:
    """Fixes that go, and fixes kept, over these days."""
    return sum(d.fixes - d.kept for d in days), sum(d.kept for d in days)


def _summary(days: list[Day]) -> str:
    purged, kept = totals(days)
    return (
        f"{len(days)} day partitions, {purged} fixes purged,"
        f" {kept} kept (legal hold or a longer retention)"
    )


async def set_force_retention(conn: asyncpg.Connection, force: str, days: int | None) -> None:
    status = await conn.execute(
        "UPDATE forces SET retention_days = $2 WHERE name = $1", force, days
    )
    if status.endswith(" 0"):
        raise NotFound(f"no force named {force}")


async def add_hold(
    conn: asyncpg.Connection,
    subject_ref: str,
    start: datetime,
    end: datetime,
    case_ref: str,
    reason: str,
    user: User,
) -> int:
    if end <= start:
        raise InvalidInput(f"--to {end.isoformat()} must be after --from {start.isoformat()}")
    subject_id = await conn.fetchval("SELECT id FROM subjects WHERE ref = $1", subject_ref)
    if subject_id is None:
        raise NotFound(f"no subject with reference {subject_ref}")
    async with conn.transaction():
        hold_id = await conn.fetchval(
            "INSERT INTO legal_holds (subject_id, during, case_ref, reason, created_by)"
            " VALUES ($1, tstzrange($2, $3), $4, $5, $6) RETURNING id",
            subject_id,
            start,
            end,
            case_ref,
            reason,
            user.id,
        )
        await audit(
            conn,
            user,
            "HOLD",
            "torch hold add",
            [subject_id],
            crime_ref=case_ref,
            reason=f"legal hold {hold_id} from {start.isoformat()} to {end.isoformat()}: {reason}",
        )
    return int(hold_id)


async def release_hold(conn: asyncpg.Connection, hold_id: int, reason: str, user: User) -> None:
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE legal_holds SET released_at = now(), released_by = $2"
            " WHERE id = $1 AND released_at IS NULL RETURNING subject_id, case_ref",
            hold_id,
            user.id,
        )
        if row is None:
            raise NotFound(f"no legal hold {hold_id} in force")
        await audit(
            conn,
            user,
            "RELEASE",
            "torch hold release",
            [row["subject_id"]],
            crime_ref=row["case_ref"],
            reason=f"legal hold {hold_id} released: {reason}",
        )


async def holds(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        """
        SELECT h.id, s.ref, lower(h.during) AS start, upper(h.during) AS "end", h.case_ref,
               u.name AS by, h.created_at, h.released_at
        FROM legal_holds h JOIN subjects s ON s.id = h.subject_id
        JOIN users u ON u.id = h.created_by
        ORDER BY h.id
        """
    )
