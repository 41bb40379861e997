"""Protected persons: linking a subject to one, and (for the few who may) where they are.

A protected person's position is the most sensitive data here: only supervisors and the
person's named officers may read it, every read is audited, and it appears nowhere else
(not in crime-scene answers, exports, tracks, alerts or the web app's subject pages).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.params import Id, Text, When, check_window
from torch.errors import Conflict, Forbidden, InvalidInput, NotFound
from torch.fixes import rfc3339
from torch.store import subjects as subject_store
from torch.store import users, victims
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["victims"])


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    victim_ref: Text = Field(min_length=1, max_length=64, description="the protected person")
    warning_m: float = Field(gt=0, le=50_000, description="a warning within this distance")
    breach_m: float = Field(gt=0, le=50_000, description="a breach within this distance")
    valid_from: When | None = Field(
        None,
        description="from when the subject is kept away (the order's start; default: now);"
        " their fixes before it, or before the link was recorded, are not judged",
    )


@router.post(
    "/subjects/{subject_id}/victim-links",
    status_code=201,
    summary="Keep a subject away from a protected person",
)
async def link(
    subject_id: Id,
    body: LinkRequest,
    request: Request,
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    if body.breach_m >= body.warning_m:
        raise InvalidInput("breach_m must be less than warning_m", "breach_m")
    valid_from = body.valid_from or datetime.now(UTC)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await subject_store.one(conn, subject_id, user) is None:
            raise NotFound(f"no subject with id {subject_id}")
        link_id = await victims.link(
            conn,
            subject_id,
            await victims.id_of(conn, body.victim_ref),
            (body.warning_m, body.breach_m),
            valid_from,
            user.id,
        )
        row = await victims.one_link(conn, link_id)
    assert row is not None
    return _link(row)


@router.get("/subjects/{subject_id}/victim-links", summary="Whom a subject is kept away from")
async def links(
    subject_id: Id,
    request: Request,
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    """The subject's links to protected persons, live and ended, newest first: radii, from
    when, who made and who ended each. No positions."""
    async with request.app.state.pool.acquire() as conn:
        if await subject_store.one(conn, subject_id, user) is None:
            raise NotFound(f"no subject with id {subject_id}")
        rows = await victims.links_of(conn, subject_id)
    return {"subject_id": subject_id, "links": [_link(r) for r in rows]}


@router.delete("/victim-links/{link_id}", summary="End a link to a protected person")
async def end_link(
    link_id: Id,
    request: Request,
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    """The subject is no longer kept away from the person (an order that ended, a link made
    in error): its open warning and breach episodes close now. A link is ended, never
    deleted; ending one again is a 409."""
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        row = await victims.one_link(conn, link_id)
        if row is None or await subject_store.one(conn, row["subject_id"], user) is None:
            raise NotFound(f"no victim link with id {link_id}")
        if not await victims.end_link(conn, link_id, user.id):
            raise Conflict(f"victim link {link_id} has ended already")
        row = await victims.one_link(conn, link_id)
    assert row is not None
    return _link(row)


def _link(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "subject_id": r["subject_id"],
        "victim_ref": r["victim_ref"],
        "warning_m": r["warning_m"],
        "breach_m": r["breach_m"],
        "valid_from": r["valid_from"].isoformat(),
        "created_at": r["created_at"].isoformat(),
        "created_by": r["created_by"],
        "ended_at": rfc3339(r["ended_at"]),
        "ended_by": r["ended_by"],
    }


async def _victim_for(conn: asyncpg.Connection, victim_ref: str, user: User) -> int:
    """The protected person's id, for a supervisor or one of their named officers."""
    victim_id = await victims.id_of(conn, victim_ref)
    if not user.has("supervisor") and not await victims.may_see(conn, victim_id, user.id):
        raise Forbidden("only supervisors and the protected person's named officers")
    return victim_id


@router.get("/victims/{victim_ref}/position", summary="Where a protected person was")
async def position(
    victim_ref: Annotated[Text, Path()],
    request: Request,
    at: Annotated[When | None, Query(description="the moment (RFC 3339); now if absent")] = None,
    user: User = Depends(require("officer", "probation", "supervisor", "admin")),
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        victim_id = await _victim_for(conn, victim_ref, user)
        row = await victims.position(conn, victim_id, at)
        await users.audit(
            conn, user, "GET", f"/v1/victims/{victim_ref}/position", [], reason="victim position"
        )
    if row is None:
        raise NotFound(f"no position of {victim_ref} at or before that moment")
    return {
        "victim_ref": victim_ref,
        "fix_time": row["fix_time"].isoformat(),
        "lat": row["lat"],
        "lon": row["lon"],
        "acc": row["acc"],
    }


EPISODES_WINDOW_DAYS = 31


@router.get(
    "/victims/{victim_ref}/episodes",
    summary="When subjects came near a protected person",
)
async def episodes(
    victim_ref: Annotated[Text, Path()],
    request: Request,
    start: Annotated[When, Query(alias="from", description="RFC 3339")],
    end: Annotated[When, Query(alias="to", description="RFC 3339")],
    user: User = Depends(require("officer", "probation", "supervisor", "admin")),
) -> dict[str, Any]:
    """The warning and breach episodes of the subjects linked to a protected person that
    overlap the window (at most 31 days), of the subjects the asker may see: who, how near
    and when, never where. For supervisors and the person's named officers; audited."""
    check_window(start, end, EPISODES_WINDOW_DAYS)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        victim_id = await _victim_for(conn, victim_ref, user)
        allowed = await subject_store.visible(conn, user)
        rows = [
            r for r in await victims.episodes(conn, victim_id, start, end)
            if r["subject_id"] in allowed
        ]  # fmt: skip
        await users.audit(
            conn,
            user,
            "GET",
            f"/v1/victims/{victim_ref}/episodes",
            sorted({r["subject_id"] for r in rows}),
            reason="victim episodes",
        )
    return {
        "victim_ref": victim_ref,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "episodes": [
            {
                "id": str(r["id"]),
                "subject_id": r["subject_id"],
                "subject_ref": r["subject_ref"],
                "stage": r["stage"],
                "entered_at": r["entered_at"].isoformat(),
                "left_at": rfc3339(r["left_at"]),
                "closest_m": round(r["closest_m"], 1),
                "fixes_inside": r["fixes_inside"],
                "detection": r["detection"],
            }
            for r in rows
        ],
    }
