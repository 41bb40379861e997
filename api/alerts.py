"""Alerts: the inbox, and acknowledging and closing them with a note."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from torch.store import breaches as store
from torch.store.users import User

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
ROLES = ("probation", "supervisor")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, description="what was done and why")


@router.get("", summary="Alerts, newest first")
async def alerts(
    request: Request,
    status: Literal["open", "acknowledged", "closed"] | None = Query(None),
    subject: int | None = Query(None, description="subject id"),
    type: str | None = Query(None, description="e.g. exclusion_breach"),
    limit: int = Query(100, ge=1, le=1000),
    _user: User = Depends(require(*ROLES)),
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        return await store.alerts(conn, status, subject, type, limit)


@router.post("/{alert_id}/acknowledge", summary="Acknowledge an alert, with a note")
async def acknowledge(
    alert_id: UUID, body: Note, request: Request, user: User = Depends(require(*ROLES))
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        return await store.act(conn, alert_id, user.id, "acknowledge", body.note)


@router.post("/{alert_id}/close", summary="Close an alert, with a note")
async def close(
    alert_id: UUID, body: Note, request: Request, user: User = Depends(require(*ROLES))
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        return await store.act(conn, alert_id, user.id, "close", body.note)
