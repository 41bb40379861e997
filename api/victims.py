"""Protected persons: linking a subject to one, and (for the few who may) where they are.

A protected person's position is the most sensitive data here: only supervisors and the
person's named officers may read it, every read is audited, and it appears nowhere else
(not in crime-scene answers, exports, tracks, alerts or the web app's subject pages).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.auth import require
from torch.errors import Forbidden, InvalidInput, NotFound
from torch.store import subjects as subject_store
from torch.store import users, victims
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["victims"])


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    victim_ref: str = Field(min_length=1, max_length=64, description="the protected person")
    warning_m: float = Field(gt=0, le=50_000, description="a warning within this distance")
    breach_m: float = Field(gt=0, le=50_000, description="a breach within this distance")


@router.post(
    "/subjects/{subject_id}/victim-links",
    status_code=201,
    summary="Keep a subject away from a protected person",
)
async def link(
    subject_id: int,
    body: LinkRequest,
    request: Request,
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    if body.breach_m >= body.warning_m:
        raise InvalidInput("breach_m must be less than warning_m", "breach_m")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await subject_store.one(conn, subject_id, user) is None:
            raise NotFound(f"no subject with id {subject_id}")
        found = await victims.ids(conn, [body.victim_ref])
        if body.victim_ref not in found:
            raise NotFound(f"no protected person {body.victim_ref}")
        link_id = await victims.link(
            conn, subject_id, found[body.victim_ref], body.warning_m, body.breach_m, user.id
        )
    return {"id": link_id, "subject_id": subject_id, **body.model_dump()}


@router.get("/victims/{victim_ref}/position", summary="Where a protected person was")
async def position(
    victim_ref: str,
    request: Request,
    at: AwareDatetime | None = Query(None, description="the moment (RFC 3339); now if absent"),
    user: User = Depends(require("officer", "probation", "supervisor", "admin")),
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        found = await victims.ids(conn, [victim_ref])
        victim_id = found.get(victim_ref)
        if victim_id is None:
            raise NotFound(f"no protected person {victim_ref}")
        if not user.has("supervisor") and not await victims.may_see(conn, victim_id, user.id):
            raise Forbidden("only supervisors and the protected person's named officers")
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
