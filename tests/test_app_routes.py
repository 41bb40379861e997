"""The routes the web app leans on: who is signed in, device health, and the app at /."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.services import Api, Database, add_user, torch_cli, wearer

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[Api]:
    server = Api(
        tmp_path / "api.log",
        port=18012,
        TORCH_MAP_TILE_URL="https://{s}.tiles.example/{z}/{x}/{y}.png",
    )
    yield server
    server.stop()


def get(api: Api, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{api.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_me_names_the_user_roles_and_map_settings(api: Api) -> None:
    token = add_user("pat", "probation")
    assert get(api, "/v1/me", token).json() == {
        "name": "pat",
        "role": "probation",
        "roles": ["probation"],
        "force": "default",
        "caseload": "team",
        "map": {
            "tile_url": "https://{s}.tiles.example/{z}/{x}/{y}.png",
            "attribution": "&copy; OpenStreetMap contributors",
        },
    }
    assert httpx.get(f"{api.url}/v1/me").status_code == 401


def test_device_health_lists_the_caseload_with_its_problems_and_no_positions(
    api: Api, db: Database
) -> None:
    since = (NOW - timedelta(days=1)).isoformat()
    wearer("IOM-H0001", "HTH001", since)
    wearer("IOM-H0002", "HTH002", since)
    torch_cli("team", "add", "north", "--force", "default")
    wearer("IOM-H0003", "HTH003", since, team="north")
    seen = NOW - timedelta(minutes=2)
    db.execute(
        "INSERT INTO device_state (device_id, last_fix_at, last_lat, last_lon, last_seen_at,"
        " battery, strap) SELECT id, $1, 51.7, -0.2, $1, 12, 'open' FROM devices"
        " WHERE serial = 'HTH001'",
        seen,
    )
    token = add_user("pat", "probation")  # the default team: H0001 and H0002, not H0003
    body = get(api, "/v1/devices", token).json()
    assert body == [
        {
            "subject_id": body[0]["subject_id"],
            "subject_ref": "IOM-H0001",
            "serial": "HTH001",
            "last_seen_at": seen.isoformat(),
            "last_fix_at": seen.isoformat(),
            "battery": 12,
            "strap": "open",
            "problems": ["battery_low", "strap_open"],
        },
        {
            "subject_id": body[1]["subject_id"],
            "subject_ref": "IOM-H0002",
            "serial": "HTH002",
            "last_seen_at": None,
            "last_fix_at": None,
            "battery": None,
            "strap": None,
            "problems": ["no_comms"],
        },
    ]
    supervisor = get(api, "/v1/devices", add_user("sue", "supervisor")).json()
    assert [d["subject_ref"] for d in supervisor] == ["IOM-H0001", "IOM-H0002", "IOM-H0003"]
    assert get(api, "/v1/devices", add_user("olly", "officer")).status_code == 403


def test_the_app_is_served_with_a_policy_that_keeps_code_to_this_origin(api: Api) -> None:
    page = httpx.get(f"{api.url}/")
    if not (Path(__file__).parent.parent / "web" / "dist" / "index.html").is_file():
        assert page.status_code == 503 and "make web" in page.text
        return
    assert page.status_code == 200 and '<script src="app.js" defer>' in page.text
    assert page.headers["content-security-policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: https://*.tiles.example; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    # the API's own routes are not shadowed by the app
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api.url}/v1/subjects").status_code == 401


def test_a_method_a_route_does_not_take_is_refused_saying_which_it_does(api: Api) -> None:
    refused = httpx.delete(f"{api.url}/healthz")
    assert (refused.status_code, refused.headers["allow"], refused.json()["title"]) == (
        405,
        "GET, HEAD",
        "Method Not Allowed",
    )
    assert refused.headers["content-type"] == "application/problem+json"
