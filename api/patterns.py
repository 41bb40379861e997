"""Pattern of life: a subject's places and weekly routine, and the cohort's hotspots."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from api.auth import require
from api.params import Id, Text, When, check_window
from simulators.world import towns
from torch import association, pattern, scene
from torch.errors import InvalidInput, NotFound
from torch.proximity import iso
from torch.settings import Settings
from torch.store import proximity as track_store
from torch.store import subjects as subject_store
from torch.store import users
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["pattern of life"])

LONGEST_DAYS = 31  # a subject's places and routine: up to a month


async def _subject_track(
    request: Request, subject_id: int, start: datetime, end: datetime, user: User, route: str
) -> association.Track:
    settings: Settings = request.app.state.settings
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await subject_store.one(conn, subject_id, user) is None:
            raise NotFound(f"no subject with id {subject_id}")
        (found,) = await track_store.tracks(
            conn, start, end, settings.proximity_max_gap_s, only=[subject_id]
        ) or [track_store.SubjectTrack(subject_id, "")]
        await users.audit(conn, user, "GET", route, [subject_id])
    inside = [f for f in found.fixes if start.timestamp() <= f.t <= end.timestamp()]
    return association.Track.of(subject_id, inside)


@router.get("/subjects/{subject_id}/places", summary="Where the subject stays")
async def places(
    subject_id: Id,
    request: Request,
    start: Annotated[When, Query(alias="from", description="RFC 3339")],
    end: Annotated[When, Query(alias="to", description="RFC 3339")],
    radius_m: float = Query(50, gt=0, le=500, description="a stay keeps within this"),
    min_minutes: float = Query(10, ge=1, le=720, description="a stay lasts at least this"),
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    check_window(start, end, LONGEST_DAYS)
    tr = await _subject_track(request, subject_id, start, end, user, "/v1/subjects/{id}/places")
    found = pattern.places(pattern.stays(tr, radius_m, min_minutes * 60), radius_m)
    home = pattern.home_of(found)
    return {
        "subject_id": subject_id,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "home_place_id": None if home is None else home.id,
        "places": [
            {
                "place_id": p.id,
                "centre": scene.to_lonlat(p.x, p.y),
                "visits": p.visits,
                "hours": round(p.seconds / 3600, 2),
                "first_arrived": iso(p.stays[0].start),
                "last_left": iso(p.stays[-1].end),
                "hours_of_day": p.hours_of_day(),
            }
            for p in found
        ],
    }


@router.get("/subjects/{subject_id}/routine", summary="The subject's week, hour by hour")
async def routine(
    subject_id: Id,
    request: Request,
    start: Annotated[When, Query(alias="from", description="RFC 3339")],
    end: Annotated[When, Query(alias="to", description="RFC 3339")],
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    check_window(start, end, LONGEST_DAYS)
    tr = await _subject_track(request, subject_id, start, end, user, "/v1/subjects/{id}/routine")
    found = pattern.places(pattern.stays(tr))
    home = pattern.home_of(found)
    r = pattern.routine(tr, found, start.timestamp(), end.timestamp(), settings.proximity_max_gap_s)
    return {
        "subject_id": subject_id,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "slots": "the 168 hours of the week, Monday 00:00 first, Europe/London; hours spent",
        "home_place_id": None if home is None else home.id,
        "home": r.home,
        "places": {str(k): v for k, v in r.places.items()},
        "moving": r.moving,
        "no_data": r.no_data,
    }


@router.get("/hotspots", summary="Where and when the cohort spends time (grid cells)")
async def hotspots(
    request: Request,
    start: Annotated[When, Query(alias="from", description="RFC 3339")],
    end: Annotated[When, Query(alias="to", description="RFC 3339")],
    cell_m: float = Query(250, ge=50, le=5000, description="the grid's cell size"),
    hour_from: int = Query(0, ge=0, le=23, description="hours of the day (Europe/London)"),
    hour_to: int = Query(24, ge=1, le=24, description="up to, not including; wraps"),
    district: Annotated[
        Text | None, Query(description="only cells nearest this district's town")
    ] = None,
    user: User = Depends(require("supervisor")),
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    check_window(start, end, settings.proximity_max_window_days)
    centres = {t.district: (t.centre.x, t.centre.y) for t in towns()}
    if district is not None and district not in centres:
        raise InvalidInput(f"district must be one of: {', '.join(sorted(centres))}", "district")
    async with request.app.state.pool.acquire() as conn:
        tracks, _ = await association.load(conn, start, end, settings.proximity_max_gap_s)
        async with conn.transaction():
            allowed = await subject_store.visible(conn, user)
            await users.audit(conn, user, "GET", "/v1/hotspots", [], reason="cohort hotspots")
    cells = pattern.hotspots(
        [t for t in tracks if t.subject_id in allowed],
        start.timestamp(),
        end.timestamp(),
        cell_m,
        settings.proximity_max_gap_s,
        (hour_from, hour_to),
    )
    features = []
    for c in cells:
        cx, cy = c.x0 + cell_m / 2, c.y0 + cell_m / 2
        nearest = min(centres, key=lambda d: np.hypot(centres[d][0] - cx, centres[d][1] - cy))
        if district is not None and nearest != district:
            continue
        corners = [(c.x0, c.y0), (c.x0 + cell_m, c.y0), (c.x0 + cell_m, c.y0 + cell_m),
                   (c.x0, c.y0 + cell_m), (c.x0, c.y0)]  # fmt: skip
        ring = [scene.to_lonlat(x, y)["coordinates"] for x, y in corners]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "hours": round(c.seconds / 3600, 2),
                    "subjects": c.subjects,
                    "district": nearest,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "parameters": {
            "cell_m": cell_m,
            "hours": [hour_from, hour_to],
            "min_subjects": pattern.MIN_SUBJECTS,
        },
    }
