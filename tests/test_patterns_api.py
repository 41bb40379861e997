"""Pattern of life through the API: planted weeks stored as fixes, places, routine, hotspots."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import Api, Database, add_user, torch_cli
from tests.test_pattern_method import MONDAY, planted_week
from torch import grid

WEEK = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=7)).isoformat()}


def store_week(db: Database, ref: str, serial: str, seed: int) -> int:
    subject = db.fetchval("INSERT INTO subjects (ref) VALUES ($1) RETURNING id", ref)
    device = db.fetchval("INSERT INTO devices (serial) VALUES ($1) RETURNING id", serial)
    db.execute(
        "INSERT INTO device_assignments (device_id, subject_id, during)"
        " VALUES ($1, $2, tstzrange('2026-10-01', NULL))",
        device,
        subject,
    )
    tr = planted_week(seed)
    lonlat = [grid.point_from_grid(x, y) for x, y in zip(tr.x, tr.y, strict=True)]
    db.execute("SELECT torch_ensure_fix_partitions($1::date - 1, $1::date + 8)", MONDAY.date())
    db.execute(
        """
        INSERT INTO fixes (device_id, fix_time, received_at, lat, lon, position, acc)
        SELECT $1, to_timestamp(t), to_timestamp(t), la, lo,
               ST_SetSRID(ST_MakePoint(x, y), 27700), 8
        FROM unnest($2::float8[], $3::float8[], $4::float8[], $5::float8[], $6::float8[])
             AS u(t, x, y, lo, la)
        """,
        device,
        list(tr.t), list(tr.x), list(tr.y), [p[0] for p in lonlat], [p[1] for p in lonlat],
    )  # fmt: skip
    return int(subject)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    ids = [store_week(db, f"IOM-P{k}", f"PT{k}", k) for k in (1, 2, 3)]
    torch_cli("tiles", "rebuild")
    api = Api(tmp_path / "api.log", port=18045)
    yield {"api": api, "ids": ids}
    api.stop()


def get(w: dict[str, Any], path: str, token: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{w['api'].url}{path}",
        params={**WEEK, **params},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_places_routine_and_hotspots_of_planted_weeks(world: dict[str, Any], db: Database) -> None:
    probation = add_user("pia", "probation")
    subject = world["ids"][0]
    answer = get(world, f"/v1/subjects/{subject}/places", probation)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(p["place_id"], p["visits"], round(p["hours"])) for p in body["places"]] == [
        (1, 8, 126), (2, 5, 40), (3, 2, 2)
    ]  # fmt: skip
    assert body["home_place_id"] == 1
    lon, lat = body["places"][1]["centre"]["coordinates"]
    x, y = grid.to_grid([lon], [lat])
    assert (x[0], y[0]) == (pytest.approx(518_250, abs=3), pytest.approx(207_250, abs=3))

    week = get(world, f"/v1/subjects/{subject}/routine", probation).json()
    assert (week["home"][3], week["places"]["2"][24 + 12]) == (1.0, 1.0)
    assert len(week["moving"]) == len(week["no_data"]) == 168

    assert get(world, "/v1/hotspots", probation).status_code == 403
    chief = add_user("sid", "supervisor")
    cells = get(world, "/v1/hotspots", chief, cell_m=500).json()["features"]
    top = sorted(cells, key=lambda f: -f["properties"]["hours"])[:3]
    assert [(f["properties"]["subjects"], f["properties"]["district"]) for f in top] == [
        (3, "St Albans"), (3, "St Albans"), (3, "St Albans")
    ]  # fmt: skip
    assert get(world, "/v1/hotspots", chief, district="Dacorum").json()["features"] == []
    bad = get(world, "/v1/hotspots", chief, district="Atlantis")
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "district")
    audit = db.fetch("SELECT route, subject_ids FROM audit_log ORDER BY id")
    assert [(r["route"], r["subject_ids"]) for r in audit] == [
        ("/v1/subjects/{id}/places", [subject]),
        ("/v1/subjects/{id}/routine", [subject]),
        ("/v1/hotspots", []),
        ("/v1/hotspots", []),
    ]
