"""POST /v1/associations: which pairs of subjects were together, when and where."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.params import JsonObject, Text, When, check_window
from torch import association, scene
from torch.errors import InvalidInput
from torch.proximity import iso
from torch.settings import Settings
from torch.store import subjects as subject_store
from torch.store import users
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["associations"])

EXAMPLE: dict[str, Any] = {
    "crime_ref": "41/22222/26",
    "reason": "county lines: who meets the subjects of operation X",
    "from": "2026-11-21T00:00:00Z",
    "to": "2026-11-22T00:00:00Z",
    "distance_m": 25,
    "min_minutes": 5,
}


class AssociationRequest(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True, extra="forbid", json_schema_extra={"examples": [EXAMPLE]}
    )

    crime_ref: Text | None = Field(
        None, min_length=1, max_length=64, description="the crime reference (officers: required)"
    )
    reason: Text = Field(min_length=3, max_length=500, description="why the query is made")
    from_: When = Field(alias="from", description="start of the window, RFC 3339")
    to: When = Field(description="end of the window, RFC 3339")
    distance_m: float = Field(gt=0, le=1000, description="together when at most this apart")
    min_minutes: float = Field(
        5, ge=1, le=1440, description="an episode counts when it lasts at least this long"
    )
    area: JsonObject | None = Field(
        None, description="GeoJSON Polygon or MultiPolygon (WGS84): only meetings inside it"
    )
    subject_ids: list[int] | None = Field(
        None, max_length=1000, description="only pairs with at least one of these subjects"
    )


def _pair(a: int, b: int, refs: dict[int, str], eps: list[association.Episode]) -> dict[str, Any]:
    return {
        "subjects": [
            {"subject_id": a, "subject_ref": refs[a]},
            {"subject_id": b, "subject_ref": refs[b]},
        ],
        "total_minutes": round(sum(e.end - e.start for e in eps) / 60, 2),
        "episodes": [
            {
                "from": iso(e.start),
                "to": iso(e.end),
                "minutes": round((e.end - e.start) / 60, 2),
                "closest_m": round(e.closest_m, 1),
                "closest_at": iso(e.closest_at),
                "where": scene.to_lonlat(*e.where),
                "accuracy_m": e.accuracy_m,
            }
            for e in eps
        ],
    }


@router.post(
    "/associations",
    summary="Which pairs of subjects were together, when and where",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "pairs, episodes"}},
)
async def associations(
    body: AssociationRequest,
    request: Request,
    user: User = Depends(require("officer", "supervisor")),
) -> Response:
    settings: Settings = request.app.state.settings
    if body.crime_ref is None and not user.has("supervisor"):
        raise InvalidInput("crime_ref is required: officers query for a crime", "crime_ref")
    check_window(body.from_, body.to, settings.proximity_max_window_days)
    area = None
    if body.area is not None:
        if body.area.get("type") not in ("Polygon", "MultiPolygon"):
            raise InvalidInput("area must be a GeoJSON Polygon or MultiPolygon", "area")
        area = scene.to_grid(body.area, settings.service_area, field="area")
    rules = association.Rules(
        body.distance_m,
        body.min_minutes * 60,
        settings.proximity_max_gap_s,
        default_acc_m=settings.proximity_default_acc_m,
    )
    start, end = body.from_.timestamp(), body.to.timestamp()
    async with request.app.state.pool.acquire() as conn:
        tracks, refs = await association.load(conn, body.from_, body.to, rules.max_gap_s)
        allowed = await subject_store.visible(conn, user)  # the asker's force, or caseload
    wanted = allowed if body.subject_ids is None else allowed & set(body.subject_ids)
    tracks = [t for t in tracks if t.subject_id in allowed]
    found = association.episodes(tracks, start, end, rules, area)
    by_pair: dict[tuple[int, int], list[association.Episode]] = {}
    for e in found:
        if e.a in wanted or e.b in wanted:
            by_pair.setdefault((e.a, e.b), []).append(e)
    pairs = [_pair(a, b, refs, eps) for (a, b), eps in by_pair.items()]
    pairs.sort(key=lambda p: (-p["total_minutes"], p["subjects"][0]["subject_id"]))
    echo = body.model_dump(mode="json", by_alias=True)
    response = msgspec.json.encode(
        {
            "request": echo,
            "parameters": {"max_gap_s": rules.max_gap_s, "bridge_s": rules.bridge_s},
            "pairs": pairs,
        }
    )
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await users.audit(
            conn,
            user,
            "POST",
            "/v1/associations",
            sorted({s for a, b in by_pair for s in (a, b)}),
            crime_ref=body.crime_ref,
            reason=body.reason,
        )
    return Response(response, media_type="application/json")
