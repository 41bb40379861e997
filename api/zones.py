"""Zones a licence sets for a subject, their versions, and the breach episodes found."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.params import Id, JsonObject, Text, When
from torch import zones
from torch.errors import InvalidInput, NotFound
from torch.fixes import rfc3339
from torch.settings import Settings
from torch.store import breaches as breach_store
from torch.store import subjects as subject_store
from torch.store import users
from torch.store import zones as store
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["zones"])

WRITE = ("probation", "supervisor")
FOREVER = datetime.max.replace(tzinfo=UTC)
READ = ("officer", "probation", "supervisor")

EXAMPLE: dict[str, Any] = {
    "kind": "inclusion",
    "label": "curfew at home address",
    "geometry": {"type": "Point", "coordinates": [-0.2235, 51.7636]},
    "radius_m": 50,
    "schedule": [
        {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "19:00",
            "end": "07:00",
        }
    ],
    "valid_from": "2026-11-23T00:00:00Z",
    "valid_until": None,
}


class ZoneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    kind: Literal["exclusion", "inclusion"] = Field(
        description="exclusion: keep out; inclusion: stay in (a curfew at home)"
    )
    label: Text = Field(min_length=1, max_length=200)
    geometry: JsonObject = Field(
        description="GeoJSON Polygon or MultiPolygon, or a Point with radius_m (WGS84)"
    )
    radius_m: float | None = Field(None, description="with a Point: the circle's radius, metres")
    schedule: list[JsonObject] | None = Field(
        None,
        description="null for always, or weekly windows in Europe/London time, e.g. "
        '{"days": ["mon"], "start": "19:00", "end": "07:00"} (an end before the start '
        "runs past midnight)",
    )
    valid_from: When | None = Field(None, description="default: now")
    valid_until: When | None = None


def _definition(body: ZoneRequest, settings: Settings) -> store.Definition:
    area = zones.parse_geometry(body.geometry, body.radius_m, settings.service_area)
    schedule = zones.parse_schedule(body.schedule)
    valid_from = body.valid_from or datetime.now(UTC)
    if body.valid_until is not None and body.valid_until <= valid_from:
        raise InvalidInput("valid_until must be after valid_from", "valid_until")
    return store.Definition(
        zones.Kind(body.kind),
        body.label,
        body.geometry,
        body.radius_m,
        area,
        schedule,
        valid_from,
        body.valid_until,
    )


def _zone(v: store.VersionRow) -> dict[str, Any]:
    return {
        "id": v.zone_id,
        "subject_id": v.subject_id,
        "version": v.version,
        "kind": v.kind,
        "label": v.label,
        "geometry": v.geometry,
        "radius_m": v.radius_m,
        "schedule": v.schedule,
        "valid_from": v.valid_from.isoformat(),
        "valid_until": rfc3339(v.valid_until),
        "current_from": v.current_from.isoformat(),
        "current_until": rfc3339(v.current_until),
        "made_by": v.made_by,
        "deleted": v.deleted_at is not None,
    }


async def _subject_exists(conn: Any, subject_id: int, user: User) -> None:
    if await subject_store.one(conn, subject_id, user) is None:
        raise NotFound(f"no subject with id {subject_id}")


async def _zone_visible(conn: Any, zone_id: int, user: User) -> None:
    """A zone of a subject outside the user's caseload is as absent as no zone at all."""
    subject_id = await store.subject_of(conn, zone_id)
    if subject_id is None or await subject_store.one(conn, subject_id, user) is None:
        raise NotFound(f"no zone {zone_id}")


@router.post(
    "/subjects/{subject_id}/zones",
    summary="Set a zone for a subject",
    status_code=status.HTTP_201_CREATED,
)
async def create(
    subject_id: Id,
    body: ZoneRequest,
    request: Request,
    user: User = Depends(require(*WRITE)),
) -> dict[str, Any]:
    d = _definition(body, request.app.state.settings)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _subject_exists(conn, subject_id, user)
        zone_id = await store.create(conn, subject_id, d, user.id)
        row = await store.current(conn, zone_id)
    assert row is not None
    return _zone(row)


@router.get("/subjects/{subject_id}/zones", summary="A subject's zones as they stand")
async def of_subject(
    subject_id: Id, request: Request, user: User = Depends(require(*READ))
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _subject_exists(conn, subject_id, user)
        rows = await store.of_subject(conn, subject_id)
        # a zone is where someone lives or must not go: reading one is audited
        await users.audit(conn, user, "GET", "/v1/subjects/{id}/zones", [subject_id])
    return [_zone(v) for v in rows]


@router.get("/zones/{zone_id}", summary="A zone as it stands")
async def one(zone_id: Id, request: Request, user: User = Depends(require(*READ))) -> Any:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _zone_visible(conn, zone_id, user)
        row = await store.current(conn, zone_id)
        if row is None:
            raise NotFound(f"no zone {zone_id}")
        await users.audit(conn, user, "GET", "/v1/zones/{id}", [row.subject_id])
    return _zone(row)


@router.put("/zones/{zone_id}", summary="Change a zone: a new version, current from now")
async def change(
    zone_id: Id, body: ZoneRequest, request: Request, user: User = Depends(require(*WRITE))
) -> dict[str, Any]:
    d = _definition(body, request.app.state.settings)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _zone_visible(conn, zone_id, user)
        was = await store.current(conn, zone_id)
        if was is None:
            raise NotFound(f"no zone {zone_id}")
        await store.replace(conn, zone_id, d, user.id)
        row = await store.current(conn, zone_id)
    assert row is not None
    return _zone(row)


@router.delete(
    "/zones/{zone_id}",
    summary="End a zone from now (its versions are kept)",
    status_code=status.HTTP_204_NO_CONTENT,
)
async def delete(zone_id: Id, request: Request, user: User = Depends(require(*WRITE))) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _zone_visible(conn, zone_id, user)
        await store.delete(conn, zone_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/zones/{zone_id}/versions", summary="Every version of a zone and when it was current")
async def versions(
    zone_id: Id,
    request: Request,
    at: Annotated[When | None, Query(description="only the version current at this time")] = None,
    user: User = Depends(require(*READ)),
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _zone_visible(conn, zone_id, user)
        rows = await store.versions(conn, zone_id)
        if not rows:
            raise NotFound(f"no zone {zone_id}")
        await users.audit(conn, user, "GET", "/v1/zones/{id}/versions", [rows[0].subject_id])
    if at is not None:
        rows = [
            v
            for v in rows
            if v.current_from <= at and (v.current_until is None or at < v.current_until)
        ]
    return [_zone(v) for v in rows]


@router.get("/subjects/{subject_id}/breaches", summary="A subject's breach episodes")
async def breaches(
    subject_id: Id,
    request: Request,
    from_: Annotated[When, Query(alias="from")],
    to: Annotated[When, Query()],
    user: User = Depends(require("probation", "supervisor")),
) -> list[dict[str, Any]]:
    if to <= from_:
        raise InvalidInput("to must be after from", "to")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _subject_exists(conn, subject_id, user)
        found = await breach_store.episodes(conn, subject_id, from_, to)
        await users.audit(conn, user, "GET", "/v1/subjects/{id}/breaches", [subject_id])
    return found
