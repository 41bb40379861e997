"""Alerts: the inbox, and acknowledging and closing them with a note."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from api.auth import bearer, require, still_allowed
from api.params import INT64, Text
from torch.errors import NotFound
from torch.store import breaches as store
from torch.store import subjects as subject_store
from torch.store import users
from torch.store.users import User

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
ROLES = ("probation", "supervisor")
POLL_S = 1.0  # streams look for alerts this often even without a notification
KEEP_ALIVE_S = 15.0  # a quiet stream sends a comment this often, and checks its token


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text = Field(min_length=1, max_length=2000, description="what was done and why")


@router.get("", summary="Alerts, newest first")
async def alerts(
    request: Request,
    status: Literal["open", "acknowledged", "closed"] | None = Query(None),
    subject: Annotated[int | None, Query(ge=1, le=INT64, description="subject id")] = None,
    type: Annotated[Text | None, Query(description="e.g. exclusion_breach")] = None,
    limit: int = Query(100, ge=1, le=1000),
    before: UUID | None = Query(
        None, description="the last alert of the page before: the next page starts after it"
    ),
    user: User = Depends(require(*ROLES)),
) -> list[dict[str, Any]]:
    # An alert says where someone was (in a zone, away from home) and when: audited as a
    # read of location data, with the subjects of the alerts returned.
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        visible = await subject_store.visible(conn, user)
        if before is not None:
            await _visible_alert(conn, before, user)
        found = await store.alerts(
            conn, status, subject, type, limit, sorted(visible), user.has("supervisor"), before
        )
        await users.audit(
            conn, user, "GET", "/v1/alerts", _subjects(a["subject_id"] for a in found)
        )
        return found


def _subjects(ids: Iterable[int | None]) -> list[int]:
    """The subjects of these alerts, once each (none for tags worn by nobody)."""
    return sorted({i for i in ids if i is not None})


async def _visible_alert(conn: Any, alert_id: UUID, user: User) -> None:
    """Another caseload's alert is as absent as none at all."""
    exists, subject_id = await store.subject_of(conn, alert_id)
    if not exists or (
        (subject_id is None and not user.has("supervisor"))
        or (subject_id is not None and await subject_store.one(conn, subject_id, user) is None)
    ):
        raise NotFound(f"no alert {alert_id}")


@router.get(
    "/stream",
    summary="New and escalated alerts as they are raised (Server-Sent Events)",
    response_class=StreamingResponse,
)
async def stream(
    request: Request,
    last_event_id: Annotated[
        int | None, Header(ge=0, le=INT64, description="resume after this event")
    ] = None,
    user: User = Depends(require(*ROLES)),
    credentials: HTTPAuthorizationCredentials = Depends(bearer),
) -> StreamingResponse:
    """Each event is an alert as published on MQTT; its id is the outbox entry, so a
    browser that reconnects with Last-Event-ID misses nothing. The token is checked again
    before each event and at each keep-alive: the stream ends once it is revoked or
    expired, or its user disabled or given another role. What each event shows is audited."""
    pool = request.app.state.pool
    raised = request.app.state.alerts_raised
    async with pool.acquire() as conn:
        cursor = last_event_id if last_event_id is not None else await store.last_event(conn)

    async def events() -> AsyncIterator[bytes]:
        nonlocal cursor
        quiet = asyncio.get_running_loop().time()
        yield b": connected\n\n"
        while not await request.is_disconnected():
            ticket = raised.ticket()
            now = asyncio.get_running_loop().time()
            due = now - quiet >= KEEP_ALIVE_S
            async with pool.acquire() as conn:
                rows = await store.events_after(conn, cursor)
                if not rows and not due:
                    shown = []
                elif (asker := await still_allowed(conn, credentials.credentials, ROLES)) is None:
                    return
                else:
                    shown = await _shown(conn, asker, rows) if rows else []
            if rows:
                cursor = rows[-1][0]
            for event_id, payload in shown:
                yield f"id: {event_id}\nevent: alert\ndata: {payload}\n\n".encode()
            if rows or due:
                quiet = now
            if due and not rows:
                yield b": still here\n\n"
            await raised.wait(ticket, POLL_S)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _shown(
    conn: Any, user: User, rows: list[tuple[int, int | None, str]]
) -> list[tuple[int, str]]:
    """The events of these a user may see (their caseload's; a supervisor's, those of tags
    worn by nobody too), audited as shown to them."""
    visible = await subject_store.visible(conn, user)
    shown = [
        (event_id, subject_id, payload)
        for event_id, subject_id, payload in rows
        if subject_id in visible or (subject_id is None and user.has("supervisor"))
    ]
    if shown:
        subjects = _subjects(s for _, s, _ in shown)
        await users.audit(conn, user, "GET", "/v1/alerts/stream", subjects)
    return [(event_id, payload) for event_id, _, payload in shown]


@router.post("/{alert_id}/acknowledge", summary="Acknowledge an alert, with a note")
async def acknowledge(
    alert_id: UUID, body: Note, request: Request, user: User = Depends(require(*ROLES))
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _visible_alert(conn, alert_id, user)
        return await store.act(conn, alert_id, user.id, "acknowledge", body.note)


@router.post("/{alert_id}/close", summary="Close an alert, with a note")
async def close(
    alert_id: UUID, body: Note, request: Request, user: User = Depends(require(*ROLES))
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _visible_alert(conn, alert_id, user)
        return await store.act(conn, alert_id, user.id, "close", body.note)
