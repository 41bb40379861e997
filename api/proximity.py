"""POST /v1/proximity: who was near this scene at this time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from uuid import UUID, uuid4

import msgspec
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.auth import require
from api.windows import check_window
from torch import __version__, nearby, scene
from torch.errors import NotFound
from torch.evidence import files, pack
from torch.nearby import SubjectVerdict
from torch.proximity import Assessment, Scene, Verdict, iso, isos, params_of
from torch.settings import Settings
from torch.store import db, users
from torch.store import proximity as store
from torch.store import subjects as subject_store
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["proximity"])

EXAMPLE: dict[str, Any] = {
    "crime_ref": "41/12345/26",
    "reason": "burglary at a dwelling, suspects sought",
    "scene": {"type": "Point", "coordinates": [-0.3394, 51.7527]},
    "radius_m": 100,
    "from": "2026-11-21T01:00:00Z",
    "to": "2026-11-21T03:00:00Z",
}


class ProximityRequest(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True, extra="forbid", json_schema_extra={"examples": [EXAMPLE]}
    )

    crime_ref: str = Field(min_length=1, max_length=64, description="the crime reference")
    reason: str = Field(min_length=3, max_length=500, description="why the query is made")
    scene: dict[str, Any] = Field(description="GeoJSON Point, Polygon or MultiPolygon, WGS84")
    radius_m: float = Field(
        ge=0,
        le=5000,
        description="around a point the search radius, around an area a buffer, metres",
    )
    from_: AwareDatetime = Field(alias="from", description="start of the window, RFC 3339")
    to: AwareDatetime = Field(description="end of the window, RFC 3339")


def results(found: Sequence[SubjectVerdict]) -> list[dict[str, Any]]:
    """The verdicts as the answer gives them: thousands a query, so the times of the
    closest approaches are written all at once."""
    at = np.fromiter(
        (math.nan if v.assessment.closest_at is None else v.assessment.closest_at for v in found),
        float,
        len(found),
    )
    texts = isos(np.nan_to_num(at))
    return [
        result(v.subject_id, v.ref, v.assessment, None if math.isnan(t) else text)
        for v, t, text in zip(found, at.tolist(), texts, strict=True)
    ]


def result(subject_id: int, ref: str, a: Assessment, closest_at: str | None) -> dict[str, Any]:
    shows = a.verdict is Verdict.PRESENT or a.verdict is Verdict.POSSIBLE
    return {
        "subject_id": subject_id,
        "subject_ref": ref,
        "verdict": a.verdict.value,
        "closest_m": None if a.closest_m is None else round(a.closest_m, 1),
        "closest_at": closest_at,
        # A position only where the verdict rests on it: an alibi gives no whereabouts.
        "closest_point": scene.to_lonlat(*a.closest_xy) if shows and a.closest_xy else None,
        "accuracy_m": a.accuracy_m,
        "gaps": [
            {"from": iso(g.start), "to": iso(g.end), "could_reach_scene": g.reachable}
            for g in a.gaps
        ]
        if a.gaps
        else [],
        "coverage": round(a.coverage, 4),
        "reasons": a.reasons,
        "fixes": [{"time": iso(f.t), "lat": f.lat, "lon": f.lon, "acc": f.acc} for f in a.evidence]
        if shows
        else [],
    }


@router.post(
    "/proximity",
    summary="Who was near this scene at this time",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "the verdicts"}},
)
async def proximity(
    body: ProximityRequest,
    request: Request,
    user: User = Depends(require("officer", "probation", "supervisor")),
) -> Response:
    settings: Settings = request.app.state.settings
    check_window(body.from_, body.to, settings.proximity_max_window_days)
    geometry = scene.to_grid(body.scene, settings.service_area)
    params = params_of(settings)
    window = Scene(geometry, body.radius_m, body.from_.timestamp(), body.to.timestamp())
    echo = body.model_dump(mode="json", by_alias=True)
    query_id = uuid4()
    pool = request.app.state.pool
    # its own snapshot, shared by a second connection that reads at once where the pool
    # has one to spare (nearby.verdicts)
    async with pool.acquire() as reader, db.spare(pool) as second:
        verdicts = await nearby.verdicts(reader, window, params, second)
    async with pool.acquire() as conn, conn.transaction():
        allowed = await subject_store.visible(conn, user)  # the asker's force, or caseload
        found = [v for v in verdicts if v.subject_id in allowed]
        answers = results(found)
        # Encoded once, for the answer and for the record: two thousand verdicts through
        # FastAPI's generic encoder took 80 ms.
        response = msgspec.json.encode(
            {
                "query_id": str(query_id),
                "request": echo,
                "parameters": asdict(params),
                "results": answers,
            }
        )
        await store.record(conn, query_id, user.id, echo, response, __version__)
        await users.audit(
            conn,
            user,
            "POST",
            "/v1/proximity",
            [v.subject_id for v in found],
            crime_ref=body.crime_ref,
            reason=body.reason,
            query_id=query_id,
        )
    return Response(response, media_type="application/json")


@router.get("/proximity/{query_id}/evidence", summary="The evidence pack of a query (zip)")
async def evidence(
    query_id: UUID,
    request: Request,
    user: User = Depends(require("officer", "probation", "supervisor")),
) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        q = await store.recorded(conn, query_id)
        # Only whoever asked, or a supervisor who may see every subject in it; anyone else
        # is told it does not exist.
        if q is None:
            raise NotFound(f"no query {query_id}")
        subject_ids = [r["subject_id"] for r in q.response["results"]]
        if q.user_id != user.id and (
            not user.has("supervisor")
            or not set(subject_ids) <= await subject_store.visible(conn, user)
        ):
            raise NotFound(f"no query {query_id}")
        asked_by = await users.name_of(conn, q.user_id)
        await users.audit(
            conn,
            user,
            "GET",
            "/v1/proximity/{id}/evidence",
            subject_ids,
            crime_ref=q.request["crime_ref"],
            reason=q.request["reason"],
            query_id=query_id,
        )
    contents = pack(files(q.request, q.response, q.version, q.at.isoformat(), asked_by))
    name = f"evidence-{query_id}.zip"
    return Response(
        contents,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
