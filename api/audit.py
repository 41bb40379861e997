"""The audit trail for supervisors: who looked at whom, when and why; and its integrity."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require
from api.params import INT64, Text, When
from torch.store import audit as store
from torch.store.users import User

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", summary="Audit records, newest first")
async def records(
    request: Request,
    user: Annotated[Text | None, Query(description="only this user's requests (user name)")] = None,
    subject: Annotated[
        int | None, Query(ge=1, le=INT64, description="only requests that returned this subject")
    ] = None,
    from_: Annotated[When | None, Query(alias="from", description="RFC 3339")] = None,
    to: Annotated[When | None, Query(description="RFC 3339")] = None,
    limit: int = Query(500, ge=1, le=10_000),
    before: Annotated[
        int | None,
        Query(ge=1, le=INT64, description="records before this seq: the next page after one"),
    ] = None,
    _user: User = Depends(require("supervisor")),
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        return await store.records(conn, user, subject, from_, to, limit, before)


@router.get("/verify", summary="Walk the audit trail's hash chain")
async def verify(request: Request, _user: User = Depends(require("supervisor"))) -> dict[str, Any]:
    """`intact` is false when any record was changed, removed or reordered; `problems`
    names each. Removing the newest records leaves no trace inside the chain: keep the
    `head` somewhere else and compare."""
    async with request.app.state.pool.acquire() as conn:
        v = await store.verify(conn)
    return {
        "intact": v.intact,
        "records": v.records,
        "head": {"seq": v.head_seq, "hash": v.head_hash},
        "problems": [{"seq": p.seq, "problem": p.problem} for p in v.problems],
    }
