"""POST /v1/associations end to end: fixes over MQTT, the worker, the API, ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import grid_fix
from tests.services import Api, Database, Publisher, add_user, wait_for, wearer

# the planted hour: whole minutes, two hours ago
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
HOME = (515_000.0, 207_000.0)  # St Albans


def at(t: float) -> datetime:
    return START + timedelta(seconds=t)


def planted() -> list[tuple[str, dict[str, Any]]]:
    """A1 stays home. A2 walks to 10 m from A1 at 2 m/s (arriving at 1000 s), stays 20
    minutes, and walks away. A3 walks past A1 at 1 m/s, 10 m north, at 3000 s."""
    out = [("tags/AS1/fixes", grid_fix(at(t), *HOME)) for t in range(0, 3601, 60)]
    for t in range(0, 3601, 20):
        away = max(1000 - t, 0, t - 2200)
        out.append(("tags/AS2/fixes", grid_fix(at(t), HOME[0] + 10 + 2 * away, HOME[1])))
    for t in range(0, 3601, 60):
        out.append(("tags/AS3/fixes", grid_fix(at(t), HOME[0] - 3000 + t, HOME[1] + 10)))
    return out


@pytest.fixture
def world(db: Database, workers, publisher: Publisher, tmp_path: Path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    since = (START - timedelta(days=1)).isoformat()
    for k in (1, 2, 3):
        wearer(f"IOM-AS{k}", f"AS{k}", since)
    workers()
    publisher.send_all(planted())
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 61 + 181 + 61, timeout=30)
    api = Api(tmp_path / "api.log", port=18043)
    ids = {r["ref"]: r["id"] for r in db.fetch("SELECT id, ref FROM subjects")}
    yield {"api": api, "ids": ids}
    api.stop()


def ask(api: Api, token: str, **body: Any) -> httpx.Response:
    request = {
        "crime_ref": "41/22222/26",
        "reason": "who meets whom",
        "from": START.isoformat(),
        "to": at(3600).isoformat(),
        **body,
    }
    return httpx.post(
        f"{api.url}/v1/associations",
        json={k: v for k, v in request.items() if v is not None},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def seconds(stamp: str) -> float:
    return (datetime.fromisoformat(stamp) - START).total_seconds()


def test_a_planted_meeting_is_one_episode_and_a_pass_is_not(
    world: dict[str, Any], db: Database
) -> None:
    token = add_user("olive", "officer")
    answer = ask(world["api"], token, distance_m=25, min_minutes=5)
    assert answer.status_code == 200, answer.text
    (pair,) = answer.json()["pairs"]
    assert [s["subject_ref"] for s in pair["subjects"]] == ["IOM-AS1", "IOM-AS2"]
    (e,) = pair["episodes"]
    assert seconds(e["from"]) == pytest.approx(1000 - 7.5, abs=0.01)  # 25 m = 10 + 2 * 7.5
    assert seconds(e["to"]) == pytest.approx(2200 + 7.5, abs=0.01)
    assert e["closest_m"] == 10.0
    assert (e["minutes"], pair["total_minutes"]) == (20.25, 20.25)
    assert e["accuracy_m"] == 10.0  # grid_fix's 5 m, each
    audit = db.fetch("SELECT route, crime_ref, subject_ids FROM audit_log")
    assert [(r["route"], r["crime_ref"], sorted(r["subject_ids"])) for r in audit] == [
        (
            "/v1/associations",
            "41/22222/26",
            sorted([world["ids"]["IOM-AS1"], world["ids"]["IOM-AS2"]]),
        )
    ]

    # with a minute's threshold and 50 m, A3's pass of A1 (98 s within 50 m) counts too
    wider = ask(world["api"], token, distance_m=50, min_minutes=1).json()["pairs"]
    passing = [p for p in wider if p["subjects"][1]["subject_ref"] == "IOM-AS3"]
    (p,) = passing
    assert p["subjects"][0]["subject_ref"] == "IOM-AS1"
    (e,) = p["episodes"]
    half = (50**2 - 10**2) ** 0.5
    assert (seconds(e["from"]), seconds(e["to"])) == (
        pytest.approx(3000 - half, abs=0.01),
        pytest.approx(3000 + half, abs=0.01),
    )


def test_who_may_ask_and_what_is_refused(world: dict[str, Any]) -> None:
    api = world["api"]
    assert ask(api, add_user("pam", "probation"), distance_m=25).status_code == 403
    officer = add_user("oscar", "officer")
    missing = ask(api, officer, distance_m=25, crime_ref=None)
    assert missing.status_code == 422
    assert missing.json()["errors"] == [
        {"field": "crime_ref", "message": "crime_ref is required: officers query for a crime"}
    ]
    far = ask(api, officer, distance_m=5000)
    assert far.status_code == 422
    assert far.json()["errors"][0]["field"] == "distance_m"
    point = ask(api, officer, distance_m=25, area={"type": "Point", "coordinates": [-0.34, 51.75]})
    assert point.json()["errors"] == [
        {"field": "area", "message": "area must be a GeoJSON Polygon or MultiPolygon"}
    ]
    # a supervisor may ask without a crime reference; only pairs with the subjects asked about
    chief = add_user("sue", "supervisor")
    only = ask(api, chief, distance_m=50, min_minutes=1, crime_ref=None,
               subject_ids=[world["ids"]["IOM-AS3"]])  # fmt: skip
    assert only.status_code == 200
    assert [[s["subject_ref"] for s in p["subjects"]] for p in only.json()["pairs"]] == [
        ["IOM-AS1", "IOM-AS3"]
    ]
