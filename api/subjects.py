"""Subjects, and one subject's position at a moment or track over a window."""

from __future__ import annotations

import csv
import io
from itertools import pairwise
from typing import Annotated, Any, Literal
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.auth import require
from api.params import Id, Text, When, check_window
from torch import scene
from torch.errors import NotFound
from torch.fixes import rfc3339
from torch.proximity import TrackFix, iso, params_of, position_at, stretches
from torch.settings import Settings
from torch.store import registry, users
from torch.store import subjects as store
from torch.store.users import User

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])


def _subject(row: store.SubjectRow) -> dict[str, Any]:
    return {"id": row.id, "ref": row.ref, "status": row.status, "device": row.device}


def _fix(f: TrackFix) -> dict[str, Any]:
    return {"time": iso(f.t), "lat": f.lat, "lon": f.lon, "acc": f.acc}


@router.get("", summary="Subjects, optionally by reference")
async def subjects(
    request: Request,
    ref: Annotated[Text | None, Query(description="pseudonymous reference, e.g. IOM-0042")] = None,
    user: User = Depends(require("officer", "probation", "supervisor", "admin")),
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        return [_subject(r) for r in await store.listing(conn, ref, user)]


@router.get("/{subject_id}", summary="One subject with its current device")
async def subject(
    subject_id: Id,
    request: Request,
    user: User = Depends(require("officer", "probation", "supervisor", "admin")),
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        row = await store.one(conn, subject_id, user)
    if row is None:
        raise NotFound(f"no subject with id {subject_id}")
    return _subject(row)


@router.get("/{subject_id}/devices", summary="The tags the subject has worn, and when")
async def devices(
    subject_id: Id,
    request: Request,
    user: User = Depends(require("officer", "probation", "supervisor", "admin")),
) -> list[dict[str, Any]]:
    """The register for one subject, oldest first: which tag, from and to (null: still
    worn), and when and by whom each assignment and its end were recorded (null: before
    that was kept, not named, or not ended). What ties a fix to its wearer; no position."""
    async with request.app.state.pool.acquire() as conn:
        row = await store.one(conn, subject_id, user)
        if row is None:
            raise NotFound(f"no subject with id {subject_id}")
        worn = await registry.history(conn, None, row.ref)
    return [
        {
            "serial": a.serial,
            "from": a.start.isoformat(),
            "to": rfc3339(a.end),
            "recorded_at": rfc3339(a.recorded_at),
            "end_recorded_at": rfc3339(a.end_recorded_at),
            "recorded_by": a.recorded_by,
            "end_recorded_by": a.end_recorded_by,
        }
        for a in worn
    ]


@router.get("/{subject_id}/position", summary="Where the subject was at a moment")
async def position(
    subject_id: Id,
    request: Request,
    at: Annotated[When, Query(description="the moment, RFC 3339")],
    user: User = Depends(require("probation", "supervisor")),
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await store.one(conn, subject_id, user) is None:
            raise NotFound(f"no subject with id {subject_id}")
        before, after = await store.fixes_around(conn, subject_id, at)
        device = await store.device_at(conn, subject_id, at)
        await users.audit(conn, user, "GET", "/v1/subjects/{id}/position", [subject_id])
    p = position_at(before, after, at.timestamp(), params_of(settings))
    body: dict[str, Any] = {
        "subject_id": subject_id,
        "at": iso(p.t),
        # the tag worn then: none tells a moment before or between assignments from a
        # gap in a worn tag's track
        "device": device,
        "position": scene.to_lonlat(*p.xy) if p.xy else None,
        "accuracy_m": p.accuracy_m,
        "before": _fix(p.before) if p.before else None,
        "after": _fix(p.after) if p.after else None,
    }
    if p.xy is None:
        body["gap"] = {
            "from": iso(p.before.t) if p.before else None,
            "to": iso(p.after.t) if p.after else None,
        }
    return body


@router.get("/{subject_id}/track", summary="The subject's fixes over a window")
async def track(
    subject_id: Id,
    request: Request,
    start: Annotated[When, Query(alias="from", description="RFC 3339")],
    end: Annotated[When, Query(alias="to", description="RFC 3339")],
    format: Literal["geojson", "csv", "gpx"] = Query("geojson"),
    user: User = Depends(require("probation", "supervisor")),
) -> Response:
    settings: Settings = request.app.state.settings
    check_window(start, end, settings.proximity_max_window_days)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        subject = await store.one(conn, subject_id, user)
        if subject is None:
            raise NotFound(f"no subject with id {subject_id}")
        rows = await store.track(conn, subject_id, start, end)
        await users.audit(conn, user, "GET", "/v1/subjects/{id}/track", [subject_id])
    return RENDER[format](subject, rows, settings.proximity_max_gap_s)


Rows = list[tuple[TrackFix, str, float | None]]


def _runs(rows: Rows, max_gap_s: float) -> list[Rows]:
    """The rows in runs of fixes at most max_gap_s apart (proximity.stretches): a track is
    drawn along each run, never across the gap between two."""
    return [rows[a:b] for a, b in stretches([f.t for f, _, _ in rows], max_gap_s)]


def _geojson(subject: store.SubjectRow, rows: Rows, max_gap_s: float) -> Response:
    import json

    points = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
            "properties": {"time": iso(f.t), "acc": f.acc, "src": src, "speed": speed},
        }
        for f, src, speed in rows
    ]
    runs = _runs(rows, max_gap_s)
    line = {
        "type": "Feature",
        "properties": {
            "subject_id": subject.id,
            "subject_ref": subject.ref,
            "fixes": len(rows),
            "max_gap_s": max_gap_s,
            "gaps": [{"from": iso(a[-1][0].t), "to": iso(b[0][0].t)} for a, b in pairwise(runs)],
        },
        "geometry": {
            "type": "MultiLineString",
            "coordinates": [[[f.lon, f.lat] for f, _, _ in run] for run in runs if len(run) > 1],
        },
    }
    body = {"type": "FeatureCollection", "features": [line, *points]}
    return Response(json.dumps(body), media_type="application/geo+json")


def _csv(subject: store.SubjectRow, rows: Rows, _max_gap_s: float) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["subject_id", "time", "lat", "lon", "acc", "src", "speed"])
    for f, src, speed in rows:
        writer.writerow([subject.id, iso(f.t), f.lat, f.lon, f.acc, src, speed])
    return Response(out.getvalue(), media_type="text/csv")


def _gpx(subject: store.SubjectRow, rows: Rows, max_gap_s: float) -> Response:
    segments = "".join(
        "<trkseg>"
        + "".join(
            f'<trkpt lat="{f.lat}" lon="{f.lon}"><time>{iso(f.t)}</time><desc>'
            f"{'accuracy unknown' if f.acc is None else f'accuracy {f.acc:g} m'}</desc></trkpt>"
            for f, _, _ in run
        )
        + "</trkseg>"
        for run in _runs(rows, max_gap_s)
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<gpx version="1.1" creator="TORCH" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><name>{escape(subject.ref)}</name>{segments}</trk></gpx>"
    )
    return Response(body, media_type="application/gpx+xml")


RENDER = {"geojson": _geojson, "csv": _csv, "gpx": _gpx}
