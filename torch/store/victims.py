"""Protected persons, their officers, the subjects linked to them, their fixes and the
episodes and alerts of a subject coming near them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from torch import grid
from torch.errors import Conflict, NotFound
from torch.intake import DeadLetter, VictimFix, conflicting
from torch.store import breaches
from torch.store.users import User, audit
from torch.victim import ALERT_TYPES, Episode, Link, Position, Stage

SEVERITY = {Stage.WARNING: "high", Stage.BREACH: "critical"}


async def add(conn: asyncpg.Connection, ref: str) -> int:
    try:
        return int(await conn.fetchval("INSERT INTO victims (ref) VALUES ($1) RETURNING id", ref))
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a protected person {ref} exists already") from None


async def id_of(conn: asyncpg.Connection, ref: str) -> int:
    """The protected person's id; NotFound if there is none of that reference."""
    victim_id = await conn.fetchval("SELECT id FROM victims WHERE ref = $1", ref)
    if victim_id is None:
        raise NotFound(f"no protected person {ref}")
    return int(victim_id)


async def unname_officer(conn: asyncpg.Connection, victim_id: int, user_name: str) -> bool:
    """The user is no longer one of the protected person's officers; False if they were
    not one."""
    status = await conn.execute(
        "DELETE FROM victim_officers WHERE victim_id = $1"
        " AND user_id = (SELECT id FROM users WHERE name = $2)",
        victim_id,
        user_name,
    )
    return bool(status != "DELETE 0")


async def name_officer(conn: asyncpg.Connection, victim_id: int, user_name: str) -> int:
    user_id = await conn.fetchval(
        "SELECT id FROM users WHERE name = $1 AND disabled_at IS NULL", user_name
    )
    if user_id is None:
        raise NotFound(f"no active user named {user_name}")
    await conn.execute(
        "INSERT INTO victim_officers (victim_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        victim_id,
        user_id,
    )
    return int(user_id)


async def may_see(conn: asyncpg.Connection, victim_id: int, user_id: int) -> bool:
    """Whether this user is one of the protected person's named officers."""
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM victim_officers WHERE victim_id = $1 AND user_id = $2",
            victim_id,
            user_id,
        )
    )


async def link(
    conn: asyncpg.Connection,
    subject_id: int,
    victim_id: int,
    radii: tuple[float, float],
    valid_from: datetime,
    user_id: int,
) -> int:
    """Keep a subject away from a protected person from `valid_from`: warned within the
    first radius, in breach within the second."""
    try:
        return int(
            await conn.fetchval(
                "INSERT INTO victim_links (subject_id, victim_id, warning_m, breach_m,"
                " valid_from, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                subject_id,
                victim_id,
                *radii,
                valid_from,
                user_id,
            )
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("the subject is linked to this protected person already") from None


async def ids(conn: asyncpg.Connection, refs: Iterable[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT ref, id FROM victims WHERE ref = ANY($1::text[])", list(refs))
    return {r["ref"]: r["id"] for r in rows}


async def write_fixes(conn: asyncpg.Connection, fixes: Sequence[VictimFix]) -> list[DeadLetter]:
    """Store a batch's protected-person fixes: a fix sent twice is stored once; one for a
    time already stored that says otherwise is returned as a dead letter (as the tags'
    are, torch.store.ingest.CONFLICTS)."""
    if not fixes:
        return []
    xs, ys = grid.fix_positions([f.fix.lon for f in fixes], [f.fix.lat for f in fixes])
    columns = [
        [f.victim_id for f in fixes],
        [f.fix.ts for f in fixes],
        [f.received_at for f in fixes],
        [f.fix.lat for f in fixes],
        [f.fix.lon for f in fixes],
        list(xs),
        list(ys),
        [f.fix.acc for f in fixes],
    ]
    status = await conn.execute(
        f"""
        INSERT INTO victim_fixes (victim_id, fix_time, received_at, lat, lon, position, acc)
        SELECT v, t, r, la, lo, ST_SetSRID(ST_MakePoint(x, y), 27700), a FROM {STAGED}
        ON CONFLICT DO NOTHING
        """,
        *columns,
    )
    if int(status.split()[-1]) == len(fixes):
        return []
    rows = await conn.fetch(
        f"""
        SELECT u.v, u.t, u.r, u.la, u.lo, u.a FROM {STAGED}
        JOIN victim_fixes f ON f.victim_id = u.v AND f.fix_time = u.t
        WHERE (u.la, u.lo, u.a) IS DISTINCT FROM (f.lat, f.lon, f.acc)
        ORDER BY u.v, u.t
        """,
        *columns,
    )
    refs = {f.victim_id: f.fix.serial for f in fixes}
    return [_conflict(refs[r["v"]], r) for r in rows]


# A batch's protected-person fixes, as passed to write_fixes.
STAGED = """unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::float8[],
                    $5::float8[], $6::float8[], $7::float8[], $8::real[])
             AS u(v, t, r, la, lo, x, y, a)"""


def _conflict(ref: str, r: asyncpg.Record) -> DeadLetter:
    fix = {"lat": r["la"], "lon": r["lo"]} | ({} if r["a"] is None else {"acc": r["a"]})
    return conflicting(r["r"], f"victims/{ref}/fixes", ref, r["t"], fix)


async def all_links(conn: asyncpg.Connection) -> list[Link]:
    """Every link, live and ended (an ended one still judges late fixes of its time). A
    link binds from its valid_from, but never before it was recorded: as a zone, a fix is
    judged by what was recorded at its time."""
    rows = await conn.fetch(
        "SELECT id, subject_id, victim_id, warning_m, breach_m,"
        " date_part('epoch', greatest(valid_from, created_at)),"
        " coalesce(date_part('epoch', ended_at), 'infinity') FROM victim_links"
    )
    return [Link(*r) for r in rows]


async def links_mark(conn: asyncpg.Connection) -> tuple[object, ...]:
    return tuple(await conn.fetchrow("SELECT count(*), max(id), max(ended_at) FROM victim_links"))


async def links_of(conn: asyncpg.Connection, subject_id: int) -> list[asyncpg.Record]:
    """The subject's links, live and ended, newest first, with their protected persons'
    references and who made and ended them."""
    return list(await conn.fetch(LINKS + " WHERE l.subject_id = $1 ORDER BY l.id DESC", subject_id))


async def one_link(conn: asyncpg.Connection, link_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(LINKS + " WHERE l.id = $1", link_id)


LINKS = """
SELECT l.id, l.subject_id, v.ref AS victim_ref, l.warning_m, l.breach_m, l.valid_from,
       l.created_at, c.name AS created_by, l.ended_at, e.name AS ended_by
FROM victim_links l JOIN victims v ON v.id = l.victim_id
LEFT JOIN users c ON c.id = l.created_by LEFT JOIN users e ON e.id = l.ended_by
"""


async def end_link(conn: asyncpg.Connection, link_id: int, user_id: int) -> bool:
    """End a live link now (or at its start, if that is still to come), and close its open
    episodes then: the subject is no longer kept away from the person. False if it had
    ended already."""
    ended = await conn.fetchval(
        "UPDATE victim_links SET ended_at = greatest(now(), valid_from), ended_by = $2"
        " WHERE id = $1 AND ended_at IS NULL RETURNING ended_at",
        link_id,
        user_id,
    )
    if ended is None:
        return False
    await conn.execute(
        "UPDATE victim_episodes SET left_at = greatest($2, entered_at)"
        " WHERE link_id = $1 AND left_at IS NULL",
        link_id,
        ended,
    )
    return True


# A protected person's fixes as positions on the grid, in time order.
POSITIONS = (
    "SELECT victim_id, date_part('epoch', fix_time) AS t, ST_X(position) AS x,"
    " ST_Y(position) AS y, acc FROM victim_fixes"
)


def _position(r: asyncpg.Record) -> Position:
    return Position(r["t"], r["x"], r["y"], r["acc"] or 0.0)


async def recent(conn: asyncpg.Connection, seconds: float) -> list[tuple[int, Position]]:
    """Every protected person's fixes of the last `seconds`, in time order."""
    rows = await conn.fetch(
        POSITIONS + " WHERE fix_time > now() - make_interval(secs => $1) ORDER BY fix_time",
        seconds,
    )
    return [(r["victim_id"], _position(r)) for r in rows]


async def track(
    conn: asyncpg.Connection, victim_id: int, start: datetime, end: datetime
) -> list[Position]:
    """The protected person's stored fixes from start to end, in time order: what a
    subject's fixes are checked against again."""
    rows = await conn.fetch(
        POSITIONS + " WHERE victim_id = $1 AND fix_time BETWEEN $2 AND $3 ORDER BY fix_time",
        victim_id,
        start,
        end,
    )
    return [_position(r) for r in rows]


async def overlapping(
    conn: asyncpg.Connection, link_id: int, stage: Stage, start: datetime, end: datetime
) -> list[breaches.Stored]:
    """The episodes of this link and stage already stored over any of [start, end]."""
    series = {"link_id": link_id, "stage": stage.value}
    return await breaches.stored_over(conn, "victim_episodes", series, start, end)


async def earliest_entered(
    conn: asyncpg.Connection, link_id: int, start: datetime, end: datetime
) -> datetime | None:
    """When the earliest of the link's episodes stored over any of [start, end] began."""
    return await breaches.first_entered(conn, "victim_episodes", {"link_id": link_id}, start, end)


async def open_episodes(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, link_id, stage, date_part('epoch', entered_at) AS entered,"
            " closest_m, fixes_inside, detection FROM victim_episodes WHERE left_at IS NULL"
        )
    )


@dataclass(frozen=True, slots=True)
class Found:
    id: uuid.UUID
    link: Link
    victim_ref: str
    episode: Episode
    opened: bool


async def record(conn: asyncpg.Connection, found: Sequence[Found]) -> int:
    """Store episodes (new or changed) and, for each new one, its alert and outbox entry;
    in the transaction of the batch. The alert says how close, never where the protected
    person is. Returns alerts raised."""
    raised = 0
    for f in found:
        e = f.episode
        await conn.execute(
            """
            INSERT INTO victim_episodes (id, link_id, subject_id, victim_id, stage, entered_at,
                                         left_at, closest_m, fixes_inside, detection)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (id) DO UPDATE SET
                -- a live one closed when its link ended, unless the fixes close it before;
                -- a late one as a later check of more of the fixes finds it
                left_at = CASE WHEN EXCLUDED.detection = 'late' THEN EXCLUDED.left_at
                               ELSE least(victim_episodes.left_at, EXCLUDED.left_at) END,
                closest_m = EXCLUDED.closest_m, fixes_inside = EXCLUDED.fixes_inside
            """,
            f.id, f.link.id, f.link.subject_id, f.link.victim_id, e.stage.value,
            breaches.at(e.entered), breaches.at(e.left), e.closest_m, e.fixes_inside,
            e.detection.value,
        )  # fmt: skip
        if not f.opened:
            continue
        detail = {
            "victim_ref": f.victim_ref,
            "stage": e.stage.value,
            "distance_m": round(e.closest_m),
            "radius_m": f.link.radius(e.stage),
            "entered_at": breaches.at(e.entered).isoformat(),  # type: ignore[union-attr]
            "detection": e.detection.value,
            "episode_id": str(f.id),
        }
        inserted = await conn.fetchval(
            """
            INSERT INTO alerts (id, subject_id, type, severity, occurred_at, victim_episode_id,
                                detail)
            VALUES ($1, $2, $3, $4, $5, $1, $6::jsonb)
            ON CONFLICT (id) DO NOTHING RETURNING id
            """,
            f.id, f.link.subject_id, ALERT_TYPES[e.stage], SEVERITY[e.stage],
            breaches.at(e.entered), json.dumps(detail),
        )  # fmt: skip
        if inserted is None:
            continue
        await breaches.outbox(conn, f.id)
        raised += 1
    return raised


async def purge(conn: asyncpg.Connection, before: datetime, user: User) -> int:
    """Delete protected persons' fixes older than `before`, audited; how many went."""
    async with conn.transaction():
        status = await conn.execute("DELETE FROM victim_fixes WHERE fix_time < $1", before)
        gone = int(status.split()[-1])
        if gone:
            reason = f"{gone} protected persons' fixes before {before.isoformat()} purged"
            await audit(conn, user, "PURGE", "torch maintain", [], reason=reason)
    return gone


async def refs(conn: asyncpg.Connection) -> dict[int, str]:
    return {r["id"]: r["ref"] for r in await conn.fetch("SELECT id, ref FROM victims")}


async def position(
    conn: asyncpg.Connection, victim_id: int, at: datetime | None
) -> asyncpg.Record | None:
    """The protected person's fix at or before `at` (the newest without one)."""
    return await conn.fetchrow(
        "SELECT fix_time, lat, lon, acc, received_at FROM victim_fixes"
        " WHERE victim_id = $1 AND ($2::timestamptz IS NULL OR fix_time <= $2)"
        " ORDER BY fix_time DESC LIMIT 1",
        victim_id,
        at,
    )


async def episodes(
    conn: asyncpg.Connection, victim_id: int, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    """The protected person's episodes that overlap [start, end] (those still open
    included), in the order they began, with their subject's reference."""
    return list(
        await conn.fetch(
            """
            SELECT e.id, e.subject_id, s.ref AS subject_ref, e.stage, e.entered_at, e.left_at,
                   e.closest_m, e.fixes_inside, e.detection
            FROM victim_episodes e JOIN subjects s ON s.id = e.subject_id
            WHERE e.victim_id = $1 AND e.entered_at <= $3
              AND (e.left_at IS NULL OR e.left_at >= $2)
            ORDER BY e.entered_at, e.id
            """,
            victim_id,
            start,
            end,
        )
    )
