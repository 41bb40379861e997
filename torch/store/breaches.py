"""Breach episodes and the alerts they raise: written with the fixes that found them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from torch.breach import Episode, EpisodeKind, Fix
from torch.errors import Conflict, NotFound
from torch.fixes import rfc3339
from torch.store.subjects import SUBJECT_FIXES

# notified (by a trigger, migration 0006) when alert outbox entries commit
ALERTS_CHANNEL = "torch_alerts"

ALERT_TYPES = {
    EpisodeKind.EXCLUSION: "exclusion_breach",
    EpisodeKind.INCLUSION: "inclusion_breach",
    EpisodeKind.TRANSIT: "transit_breach",
}


def at(t: float | None) -> datetime | None:
    """A Unix time as a UTC datetime (None stays None)."""
    return None if t is None else datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True, slots=True)
class Found:
    """An episode as it now stands, for a subject; `opened` when this is its first record."""

    id: UUID
    subject_id: int
    subject_ref: str
    label: str
    episode: Episode
    opened: bool


async def record(conn: asyncpg.Connection, found: Sequence[Found]) -> int:
    """Store episodes (new or updated) and, for each new one, its alert and the alert's
    outbox entry; call in the transaction that stores the fixes. Returns alerts raised."""
    raised = 0
    for f in found:
        e = f.episode
        await conn.execute(
            """
            INSERT INTO breach_episodes (id, subject_id, zone_id, version, kind, entered_at,
                                         left_at, deepest_m, fixes_inside, detection, doubt)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (id) DO UPDATE SET left_at = EXCLUDED.left_at,
                deepest_m = EXCLUDED.deepest_m, fixes_inside = EXCLUDED.fixes_inside,
                doubt = coalesce(EXCLUDED.doubt, breach_episodes.doubt)
            """,
            f.id,
            f.subject_id,
            e.zone_id,
            e.version,
            e.kind.value,
            at(e.entered),
            at(e.left),
            e.deepest_m,
            e.fixes_inside,
            e.detection.value,
            e.doubt,
        )
        if not f.opened:
            if e.doubt is not None:
                await _doubt_alert(conn, f.id, e.doubt)
            continue
        detail = {
            "zone_id": e.zone_id,
            "zone_version": e.version,
            "zone_label": f.label,
            "entered_at": at(e.entered).isoformat(),  # type: ignore[union-attr]
            "detection": e.detection.value,
            "episode_id": str(f.id),
        } | ({} if e.doubt is None else {"doubt": e.doubt})
        alert_type = ALERT_TYPES[e.kind]
        inserted = await conn.fetchval(
            """
            INSERT INTO alerts (id, subject_id, type, severity, occurred_at, episode_id, detail)
            VALUES ($1, $2, $3, 'high', $4, $1, $5::jsonb)
            ON CONFLICT (id) DO NOTHING RETURNING id
            """,
            f.id,
            f.subject_id,
            alert_type,
            at(e.entered),
            json.dumps(detail),
        )
        if inserted is None:
            continue  # written already, by an earlier try of this transaction's batch
        await outbox(conn, f.id)
        raised += 1
    return raised


@dataclass(frozen=True, slots=True)
class DeviceAlert:
    device_id: int
    type: str  # strap_tamper, shell_open, battery_low, no_comms, no_fix
    severity: str
    occurred_at: datetime
    detail: dict[str, Any]


async def raise_device_alerts(conn: asyncpg.Connection, found: Sequence[DeviceAlert]) -> int:
    """Raise device alerts, each with its outbox entry, unless the device already has an
    unresolved alert of that type for its wearer then. Returns alerts raised."""
    raised = 0
    for a in found:
        row = await conn.fetchrow(
            """
            INSERT INTO alerts (id, subject_id, device_id, type, severity, occurred_at, detail)
            SELECT gen_random_uuid(),
                   (SELECT x.subject_id FROM device_assignments x
                    WHERE x.device_id = $1 AND x.during @> $4::timestamptz),
                   $1, $2, $3, $4, $5::jsonb
            ON CONFLICT (device_id, subject_id, type)
                WHERE device_id IS NOT NULL AND status <> 'closed'
            DO NOTHING
            RETURNING id, subject_id
            """,
            a.device_id,
            a.type,
            a.severity,
            a.occurred_at,
            json.dumps(a.detail),
        )
        if row is None:
            continue
        await outbox(conn, row["id"])
        raised += 1
    return raised


async def _doubt_alert(conn: asyncpg.Connection, alert_id: UUID, doubt: str) -> None:
    """Say in an alert raised already why it may be false, and publish it again (once)."""
    changed = await conn.fetchval(
        "UPDATE alerts SET detail = detail || jsonb_build_object('doubt', $2::text)"
        " WHERE id = $1 AND NOT detail ? 'doubt' RETURNING id",
        alert_id,
        doubt,
    )
    if changed is not None:
        await outbox(conn, alert_id)


async def outbox(conn: asyncpg.Connection, alert_id: UUID) -> None:
    """Queue an alert, as it now stands, for publishing on torch/alerts/{subject_ref}."""
    await conn.execute(
        """
        INSERT INTO alert_outbox (alert_id, topic, payload)
        SELECT a.id, 'torch/alerts/' || coalesce(s.ref, 'unassigned'),
               jsonb_build_object('alert_id', a.id, 'type', a.type, 'severity', a.severity,
                                  'subject_ref', s.ref, 'occurred_at', a.occurred_at,
                                  'escalations', a.escalations) || a.detail
        FROM alerts a LEFT JOIN subjects s ON s.id = a.subject_id WHERE a.id = $1
        """,
        alert_id,
    )


async def sweep_silent(conn: asyncpg.Connection, silent_s: float) -> int:
    """no_comms for worn devices not heard from for silent_s; no_fix for those heard from
    but with no usable fix for as long. Returns alerts raised."""
    rows = await conn.fetch(
        """
        SELECT a.device_id, d.serial, st.last_seen_at, st.last_fix_at,
               CASE WHEN st.last_seen_at IS NULL
                      OR st.last_seen_at < now() - make_interval(secs => $1)
                    THEN 'no_comms' ELSE 'no_fix' END AS type
        FROM device_assignments a
        JOIN devices d ON d.id = a.device_id
        LEFT JOIN device_state st ON st.device_id = a.device_id
        WHERE a.during @> now() AND lower(a.during) < now() - make_interval(secs => $1)
          AND (st.last_seen_at IS NULL OR st.last_seen_at < now() - make_interval(secs => $1)
               OR st.last_fix_at IS NULL OR st.last_fix_at < now() - make_interval(secs => $1))
        """,
        silent_s,
    )
    now = datetime.now(UTC)
    return await raise_device_alerts(
        conn,
        [
            DeviceAlert(
                r["device_id"],
                r["type"],
                "high",
                now,
                {
                    "serial": r["serial"],
                    "last_seen_at": rfc3339(r["last_seen_at"]),
                    "last_fix_at": rfc3339(r["last_fix_at"]),
                },
            )
            for r in rows
        ],
    )


SEVERITIES = ("low", "medium", "high", "critical")


async def escalate(conn: asyncpg.Connection, after_s: float) -> int:
    """Raise the severity of alerts left open (unacknowledged) for after_s since they were
    raised or last escalated, and publish them again. Returns alerts escalated."""
    rows = await conn.fetch(
        """
        UPDATE alerts SET escalations = escalations + 1, escalated_at = now(),
            severity = CASE severity WHEN 'low' THEN 'medium' WHEN 'medium' THEN 'high'
                                     ELSE 'critical' END
        WHERE status = 'open'
          AND coalesce(escalated_at, raised_at) < now() - make_interval(secs => $1)
        RETURNING id
        """,
        after_s,
    )
    for r in rows:
        await outbox(conn, r["id"])
    return len(rows)


async def open_episodes(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Episodes still open, for the worker to take up again after a restart."""
    return list(
        await conn.fetch(
            """
        SELECT id, subject_id, zone_id, version, kind, extract(epoch FROM entered_at) AS entered,
               deepest_m, fixes_inside, detection
        FROM breach_episodes WHERE left_at IS NULL AND kind <> 'transit'
        """
        )
    )


async def subject_track(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime
) -> list[Fix]:
    """The subject's stored fixes from start to end, on the grid, in time order: what a
    late fix's neighbourhood is checked again from."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM f.fix_time)::float8 AS t, ST_X(f.position) AS x,"
        " ST_Y(f.position) AS y, f.acc::numeric::float8 AS acc" + SUBJECT_FIXES,
        subject_id,
        start,
        end,
    )
    return [Fix(r["t"], r["x"], r["y"], r["acc"]) for r in rows]


async def last_fix_times(
    conn: asyncpg.Connection, subject_ids: list[int], received_before: datetime
) -> dict[int, float]:
    """Each subject's newest fix time (Unix) of those received before a time: for a worker
    that started then to know which fixes come late."""
    rows = await conn.fetch(
        """
        SELECT a.subject_id, extract(epoch FROM max(f.newest))::float8 AS t
        FROM device_assignments a
        CROSS JOIN LATERAL (SELECT max(fix_time) AS newest FROM fixes
                            WHERE device_id = a.device_id AND a.during @> fix_time
                              AND received_at < $2) f
        WHERE a.subject_id = ANY($1::bigint[]) AND f.newest IS NOT NULL
        GROUP BY a.subject_id
        """,
        subject_ids,
        received_before,
    )
    return {r["subject_id"]: r["t"] for r in rows}


@dataclass(frozen=True, slots=True)
class Recheck:
    subject_id: int
    start: datetime
    end: datetime


async def take_rechecks(conn: asyncpg.Connection, limit: int = 100) -> list[Recheck]:
    """Take (delete, in the caller's transaction) the oldest spans of stored fixes queued to
    be checked against their subjects' zones again."""
    rows = await conn.fetch(
        """
        DELETE FROM zone_rechecks WHERE id = ANY (ARRAY(
            SELECT id FROM zone_rechecks ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
        RETURNING subject_id, from_at, to_at
        """,
        limit,
    )
    return [Recheck(r["subject_id"], r["from_at"], r["to_at"]) for r in rows]


@dataclass(frozen=True, slots=True)
class Stored:
    """An episode as stored, for a late check to compare what it finds with."""

    id: UUID
    entered: float  # Unix times
    left: float | None
    detection: str


# The two series of episodes a late check compares with what it finds: a subject's in a
# zone (breach_episodes) and a victim link's at a stage (victim_episodes). Table and column
# names come from the callers below, never from a request.
def _series(keys: Sequence[str]) -> str:
    """SQL matching a series by `keys`, given as $3, $4, ... after the window's $1, $2."""
    return " AND ".join(f"{key} = ${k}" for k, key in enumerate(keys, 3))


async def stored_over(
    conn: asyncpg.Connection, table: str, series: dict[str, Any], start: datetime, end: datetime
) -> list[Stored]:
    """The episodes of `table` of one series (its key columns and their values) already
    stored over any of [start, end]."""
    rows = await conn.fetch(
        f"""
        SELECT id, extract(epoch FROM entered_at)::float8 AS entered,
               extract(epoch FROM left_at)::float8 AS left, detection
        FROM {table}
        WHERE {_series(list(series))} AND entered_at <= $2 AND (left_at IS NULL OR left_at >= $1)
        """,
        start,
        end,
        *series.values(),
    )
    return [Stored(**dict(r)) for r in rows]


async def first_entered(
    conn: asyncpg.Connection, table: str, series: dict[str, Any], start: datetime, end: datetime
) -> datetime | None:
    """When the earliest of the episodes of `table` (of the rows matching `series`) stored
    over any of [start, end] began: a late check starts before it, so as to find that
    episode whole."""
    found: datetime | None = await conn.fetchval(
        f"SELECT min(entered_at) FROM {table} WHERE {_series(list(series))}"
        " AND entered_at <= $2 AND (left_at IS NULL OR left_at >= $1)",
        start,
        end,
        *series.values(),
    )
    return found


async def overlapping(
    conn: asyncpg.Connection, subject_id: int, zone_id: int, start: datetime, end: datetime
) -> list[Stored]:
    """The episodes of this zone already stored over any of [start, end]."""
    series = {"subject_id": subject_id, "zone_id": zone_id}
    return await stored_over(conn, "breach_episodes", series, start, end)


async def earliest_entered(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime
) -> datetime | None:
    """When the earliest of the subject's episodes stored over any of [start, end] began."""
    return await first_entered(conn, "breach_episodes", {"subject_id": subject_id}, start, end)


async def episodes(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT e.id, e.zone_id, e.version, v.label, e.kind, e.entered_at, e.left_at, e.deepest_m,
               e.fixes_inside, e.detection, e.found_at, e.doubt
        FROM breach_episodes e
        JOIN zone_versions v ON v.zone_id = e.zone_id AND v.version = e.version
        WHERE e.subject_id = $1 AND e.entered_at < $3 AND (e.left_at IS NULL OR e.left_at >= $2)
        ORDER BY e.entered_at
        """,
        subject_id,
        start,
        end,
    )
    return [
        {
            "id": str(r["id"]),
            "zone_id": r["zone_id"],
            "zone_version": r["version"],
            "zone_label": r["label"],
            "kind": r["kind"],
            "entered_at": r["entered_at"].isoformat(),
            "left_at": rfc3339(r["left_at"]),
            "deepest_m": round(r["deepest_m"], 1),
            "fixes_inside": r["fixes_inside"],
            "detection": r["detection"],
            "found_at": r["found_at"].isoformat(),
            "doubt": r["doubt"],
        }
        for r in rows
    ]


# Alerts: the workflow.


def _alert(r: asyncpg.Record, actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "subject_id": r["subject_id"],
        "subject_ref": r["subject_ref"],
        "type": r["type"],
        "severity": r["severity"],
        "status": r["status"],
        "occurred_at": r["occurred_at"].isoformat(),
        "raised_at": r["raised_at"].isoformat(),
        "device_id": r["device_id"],
        "escalations": r["escalations"],
        "detail": json.loads(r["detail"]),
        "actions": actions,
    }


ALERT = """
SELECT a.id, a.subject_id, s.ref AS subject_ref, a.type, a.severity, a.status, a.occurred_at,
       a.raised_at, a.detail, a.device_id, a.escalations
FROM alerts a LEFT JOIN subjects s ON s.id = a.subject_id
"""


async def alerts(
    conn: asyncpg.Connection,
    status: str | None,
    subject_id: int | None,
    alert_type: str | None,
    limit: int,
    visible: Sequence[int],
    unassigned: bool,
    before: UUID | None = None,
) -> list[dict[str, Any]]:
    """Alerts of the visible subjects, and with `unassigned` those of tags worn by nobody,
    newest first; with `before`, only those after that alert in this order (the next page).
    Alerts raised together (a sweep's) share a time: the id breaks the tie."""
    rows = await conn.fetch(
        ALERT
        + """
        WHERE ($1::text IS NULL OR a.status = $1) AND ($2::bigint IS NULL OR a.subject_id = $2)
          AND ($3::text IS NULL OR a.type = $3)
          AND (a.subject_id = ANY ($5::bigint[]) OR ($6 AND a.subject_id IS NULL))
          AND ($7::uuid IS NULL
               OR (a.raised_at, a.id) < (SELECT raised_at, id FROM alerts WHERE id = $7))
        ORDER BY a.raised_at DESC, a.id DESC LIMIT $4
        """,
        status,
        subject_id,
        alert_type,
        limit,
        list(visible),
        unassigned,
        before,
    )
    acts = await _actions(conn, [r["id"] for r in rows])
    return [_alert(r, acts.get(r["id"], [])) for r in rows]


async def _actions(conn: asyncpg.Connection, ids: list[UUID]) -> dict[UUID, list[dict[str, Any]]]:
    rows = await conn.fetch(
        """
        SELECT x.alert_id, x.at, u.name, x.action, x.note FROM alert_actions x
        JOIN users u ON u.id = x.user_id WHERE x.alert_id = ANY($1::uuid[]) ORDER BY x.at
        """,
        ids,
    )
    out: dict[UUID, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["alert_id"], []).append(
            {"at": r["at"].isoformat(), "by": r["name"], "action": r["action"], "note": r["note"]}
        )
    return out


NEXT = {"acknowledge": ("open",), "close": ("open", "acknowledged")}
STATUS = {"acknowledge": "acknowledged", "close": "closed"}


async def act(
    conn: asyncpg.Connection, alert_id: UUID, user_id: int, action: str, note: str
) -> dict[str, Any]:
    """Acknowledge or close an alert, keeping who did it, when and why."""
    row = await conn.fetchrow("SELECT status FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    if row["status"] not in NEXT[action]:
        raise Conflict(f"the alert is {row['status']}; it cannot be {STATUS[action]} now")
    await conn.execute("UPDATE alerts SET status = $2 WHERE id = $1", alert_id, STATUS[action])
    await conn.execute(
        "INSERT INTO alert_actions (alert_id, user_id, action, note) VALUES ($1, $2, $3, $4)",
        alert_id,
        user_id,
        action,
        note,
    )
    r = await conn.fetchrow(ALERT + " WHERE a.id = $1", alert_id)
    return _alert(r, (await _actions(conn, [alert_id])).get(alert_id, []))


async def open_counts(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    """Alerts not closed, counted by (type, status)."""
    rows = await conn.fetch(
        "SELECT type, status, count(*) AS n FROM alerts WHERE status <> 'closed'"
        " GROUP BY type, status"
    )
    return {(r["type"], r["status"]): int(r["n"]) for r in rows}


# The outbox.


async def unpublished(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Outbox entries not yet published, locked for this transaction (another worker skips
    them)."""
    return list(
        await conn.fetch(
            "SELECT id, topic, payload FROM alert_outbox WHERE published_at IS NULL"
            " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
    )


async def published(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute(
        "UPDATE alert_outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])", ids
    )


async def last_event(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM alert_outbox"))


async def events_after(conn: asyncpg.Connection, cursor: int) -> list[tuple[int, int | None, str]]:
    """Alert events (raised or escalated) after the cursor, oldest first: (id, subject id,
    the event as JSON text)."""
    rows = await conn.fetch(
        "SELECT o.id, a.subject_id, o.payload::text AS payload"
        " FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id"
        " WHERE o.id > $1 ORDER BY o.id LIMIT 100",
        cursor,
    )
    return [(r["id"], r["subject_id"], r["payload"]) for r in rows]


async def subject_of(conn: asyncpg.Connection, alert_id: UUID) -> tuple[bool, int | None]:
    """Whether the alert exists, and whose it is (None: a tag worn by nobody)."""
    row = await conn.fetchrow("SELECT subject_id FROM alerts WHERE id = $1", alert_id)
    return (False, None) if row is None else (True, row["subject_id"])
