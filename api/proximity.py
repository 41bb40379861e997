"""POST /v1/proximity: who was near this scene at this time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.params import JsonObject, Text, When, check_window
from torch import __version__, nearby, scene
from torch.errors import NotFound
from torch.evidence import files, pack
from torch.nearby import Answer
from torch.proximity import ACCOUNTED, Assessment, Scene, iso, isos, params_of, rounded
from torch.settings import Settings
from torch.store import db, users
from torch.store import proximity as store
from torch.store import subjects as subject_store
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["proximity"])

Devices = Sequence[dict[str, str | None]]  # serial, from, to

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

    crime_ref: Text = Field(min_length=1, max_length=64, description="the crime reference")
    reason: Text = Field(min_length=3, max_length=500, description="why the query is made")
    scene: JsonObject = Field(description="GeoJSON Point, Polygon or MultiPolygon, WGS84")
    radius_m: float = Field(
        ge=0,
        le=5000,
        description="around a point the search radius, around an area a buffer, metres",
    )
    from_: When = Field(alias="from", description="start of the window, RFC 3339")
    to: When = Field(description="end of the window, RFC 3339")


def results(
    answer: Answer, allowed: Container[int], devices: Mapping[int, Devices] | None = None
) -> bytes:
    """The verdicts of the subjects in `allowed`, as the JSON array of the answer's
    results, with the tags worn (`devices`, by subject) where the verdict shows fixes.
    Thousands a query: those settled from the closest approach alone are written in bulk
    (`far_results`), the others one by one."""
    devices = devices or {}
    written: list[str] = [""] * len(answer.who)
    for k, text in zip(answer.far.which.tolist(), far_results(answer), strict=True):
        written[k] = text
    for k, a in answer.near.items():
        w = answer.who[k]
        if w.subject_id in allowed:
            at = None if a.closest_at is None else iso(a.closest_at)
            worn = devices.get(w.subject_id, [])
            written[k] = msgspec.json.encode(result(w.subject_id, w.ref, a, at, worn)).decode()
    shown = [written[k] for k, s in enumerate(answer.who.ids.tolist()) if s in allowed]
    return f"[{','.join(shown)}]".encode()


# What JSON would escape in a string: quotes, backslashes and control characters.
_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def far_results(answer: Answer) -> list[str]:
    """`result` of each of the verdicts in answer.far, as msgspec writes it: an f-string
    for each (%-formatting them took five times as long)."""
    far = answer.far
    refs = [answer.who.refs[k] for k in far.which.tolist()]

    def each(values: list[float]) -> list[str]:
        # numbers as msgspec writes them (no number holds a comma)
        return msgspec.json.encode(values)[1:-1].decode().split(",") if values else []

    def text(s: str) -> str:
        return msgspec.json.encode(s).decode()

    # the first reason's words around its three values (metres, clock, metres: no value
    # JSON would escape), and the second reason
    r0, r1, r2, r3 = re.split("%[ds]", text(far.words()))
    accounted = text(ACCOUNTED)
    times = isos(far.t)
    rows = zip(
        answer.who.ids[far.which].tolist(),
        # quoted as they are where none needs escaping, as the registry's references do not
        [f'"{r}"' for r in refs] if not _ESCAPED.search("".join(refs)) else map(text, refs),
        each(rounded(far.closest_m)),
        times,
        each(far.accuracy_m.tolist()),
        far.reason_values(times),
        strict=True,
    )
    return [
        f'{{"subject_id":{s},"subject_ref":{ref},"verdict":"excluded","closest_m":{d},'
        f'"closest_at":"{at}","closest_point":null,"accuracy_m":{u},"gaps":[],'
        f'"coverage":1.0,"reasons":[{r0}{m}{r1}{clock}{r2}{um}{r3},{accounted}],'
        '"fixes":[],"devices":[]}'
        for s, ref, d, at, u, (m, clock, um) in rows
    ]


def result(
    subject_id: int, ref: str, a: Assessment, closest_at: str | None, devices: Devices = ()
) -> dict[str, Any]:
    shows = a.verdict.places_at_scene
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
        # the tags whose fixes those are: which was worn when, from the assignments
        "devices": list(devices) if shows else [],
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
    # its own snapshot, shared by a second connection that reads at once, and a third that
    # asks who wore a device meanwhile, where the pool has them to spare (nearby.answer)
    async with pool.acquire() as reader, db.spare(pool) as second, db.spare(pool) as third:
        answer = await nearby.answer(reader, window, params, second, third)
    async with pool.acquire() as conn, conn.transaction():
        allowed = await subject_store.visible(conn, user)  # the asker's force, or caseload
        shown = [s for s in answer.who.ids.tolist() if s in allowed]
        with_fixes = [
            answer.who[k].subject_id
            for k, a in answer.near.items()
            if a.verdict.places_at_scene and answer.who[k].subject_id in allowed
        ]
        margin = timedelta(seconds=params.max_gap_s)
        devices = (
            await store.worn(conn, with_fixes, body.from_ - margin, body.to + margin)
            if with_fixes
            else {}
        )
        # The audit record, in the same transaction as the record of the query and its
        # answer. PostgreSQL writes it (hashing thousands of subject ids, 2.5 ms) while
        # the answer is written here.
        audited = asyncio.ensure_future(
            users.audit(
                conn,
                user,
                "POST",
                "/v1/proximity",
                shown,
                crime_ref=body.crime_ref,
                reason=body.reason,
                query_id=query_id,
            )
        )
        await asyncio.sleep(0)  # sent
        try:
            answers = results(answer, allowed, devices)
            # Written once, for the answer and for the record: two thousand verdicts
            # through FastAPI's generic encoder took 80 ms.
            head = msgspec.json.encode(
                {
                    "query_id": str(query_id),
                    "request": echo,
                    "parameters": asdict(params),
                    "results": [],
                }
            )
            response = head.removesuffix(b"[]}") + answers + b"}"
        finally:
            await audited
        await store.record(conn, query_id, user.id, echo, response, __version__)
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
    contents = pack(files(q.request, q.response, q.sent, q.version, q.at, asked_by), q.at)
    name = f"evidence-{query_id}.zip"
    return Response(
        contents,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
