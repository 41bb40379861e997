"""Alerts: the inbox, and acknowledging and closing them with a note."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.params import INT64, Text
from torch.errors import NotFound
from torch.store import breaches as store
from torch.store import subjects as subject_store
from torch.store.users import User

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
ROLES = ("probation", "supervisor")
POLL_S = 1.0  # streams look for alerts this often even without a notification


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
    user: User = Depends(require(*ROLES)),
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        visible = await subject_store.visible(conn, user)
        return await store.alerts(
            conn, status, subject, type, limit, sorted(visible), user.has("supervisor")
        )


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
) -> StreamingResponse:
    """Each event is an alert as published on MQTT; its id is the outbox entry, so a
    browser that reconnects with Last-Event-ID misses nothing."""
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
            async with pool.acquire() as conn:
                rows = await store.events_after(conn, cursor)
                visible = await subject_store.visible(conn, user) if rows else set()
            for event_id, subject_id, payload in rows:
                cursor = event_id
                if subject_id in visible or (subject_id is None and user.has("supervisor")):
                    yield f"id: {event_id}\nevent: alert\ndata: {payload}\n\n".encode()
            now = asyncio.get_running_loop().time()
            quiet = now if rows else quiet
            if now - quiet >= 15:
                quiet = now
                yield b": still here\n\n"
            await raised.wait(ticket, POLL_S)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


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
