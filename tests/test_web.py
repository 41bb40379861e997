"""The web app in headless Chromium (Debian's), against the real API, worker, broker and
database: sign in, find a planted subject at a crime scene, draw a zone, and see its breach
alert arrive live and acknowledge it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import grid_fix as fix
from tests.services import ROOT, Api, Database, Publisher, Worker, add_user, wait_for, wearer
from torch import grid

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Offline: no background traffic, no first-run work, no sandbox as root.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCENE = (522000.0, 208000.0)  # grid metres, in Hatfield
MINUTE = timedelta(minutes=1)

pytestmark = pytest.mark.skipif(
    not (ROOT / "web" / "dist" / "index.html").is_file() or not Path(CHROMIUM).exists(),
    reason="needs the built web app (make web) and Debian's chromium (make test installs both)",
)


def off_loop(read: Callable[[], Any]) -> Any:
    """Run a test-database call on another thread: Playwright's sync API keeps an event loop
    running on this one, and the harness's connection runs its own loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


@pytest.fixture
def stack(db: Database, tmp_path: Path, workers: Callable[..., Worker]) -> Iterator[Api]:
    """The API serving the built app with no map tiles (offline), and a worker."""
    server = Api(tmp_path / "api.log", port=18011, TORCH_MAP_TILE_URL="")
    workers("web")
    yield server
    server.stop()


@pytest.fixture
def page(stack: Api) -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 860}, locale="en-GB", timezone_id="UTC"
        )
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(stack.url + "/")
        yield pg
        browser.close()
        assert errors == []


def sign_in(page: Any, role: str) -> None:
    page.fill("#signin-token", add_user(f"web-{role}", role))
    page.click("text=Sign in")
    page.wait_for_selector(f"#whoami:has-text('web-{role}')")


def test_a_bad_token_is_refused_and_the_role_decides_the_views(page: Any) -> None:
    page.fill("#signin-token", "not-a-token")
    page.click("text=Sign in")
    page.wait_for_selector("#signin-error:has-text('not valid')")
    sign_in(page, "officer")
    assert page.locator("#tabs button").all_inner_texts() == ["Crime scene"]
    page.click("#signout")
    sign_in(page, "probation")
    tabs = page.locator("#tabs button").all_inner_texts()
    views = ["Crime scene", "Zones & tracks", "Alerts", "Devices", "Patterns"]
    assert [t.split("\n")[0] for t in tabs] == views


def test_a_crime_scene_query_marks_the_planted_subject_present(
    page: Any, db: Database, publisher: Publisher
) -> None:
    t0 = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    wearer("IOM-W0001", "HTW001", (t0 - timedelta(days=1)).isoformat())
    wearer("IOM-W0002", "HTW002", (t0 - timedelta(days=1)).isoformat())
    x, y = SCENE
    # W0001 walks west to east through the scene between two fixes a minute apart;
    # W0002 stays 3 km north all the while.
    for i in range(11):
        publisher.send("tags/HTW001/fixes", fix(t0 + i * MINUTE, x - 450 + 100 * i, y))
        publisher.send("tags/HTW002/fixes", fix(t0 + i * MINUTE, x, y + 3000))
    publisher.flush()
    wait_for(lambda: off_loop(lambda: db.count("fixes")) == 22)

    sign_in(page, "officer")
    page.fill("#crime-ref", "41/12345/26")
    page.fill("#crime-reason", "burglary at the scene, checking tagged subjects")
    page.fill("#scene-easting", str(int(x)))
    page.fill("#scene-northing", str(int(y)))
    page.press("#scene-northing", "Tab")
    lon, lat = grid.point_from_grid(x, y)  # the app converts as the server does
    assert page.input_value("#scene-lat") == f"{lat:.6f}"
    assert page.input_value("#scene-lon") == f"{lon:.6f}"
    page.fill("#scene-radius", "200")
    page.fill("#scene-from", (t0 + MINUTE).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#scene-to", (t0 + 9 * MINUTE).strftime("%Y-%m-%dT%H:%M"))
    page.click("#scene-run")

    present = page.locator("article.result[data-verdict='present']")
    present.wait_for()
    assert present.get_attribute("data-subject") == "IOM-W0001"
    assert "closest 0 m at" in present.inner_text()
    excluded = page.locator("article.result[data-verdict='excluded']")
    assert excluded.get_attribute("data-subject") == "IOM-W0002"
    assert page.inner_text("#scene-counts").split("\n") == [
        "Present 1",
        "Possible 0",
        "Excluded 1",
        "No data 0",
    ]
    # drawn on the map: the closest approach of the present subject, in its colour
    assert page.locator("path.closest.present").count() == 1
    # and the query is in the audit trail under the crime reference
    audited = "SELECT crime_ref || ' ' || cardinality(subject_ids) FROM audit_log"
    assert off_loop(lambda: db.fetchval(audited + " WHERE route = '/v1/proximity'")) == (
        "41/12345/26 2"
    )
    with page.expect_download() as download:
        page.click("#evidence")
    assert download.value.suggested_filename.startswith("evidence-")


def test_a_drawn_zone_is_saved_and_its_breach_alert_arrives_live(
    page: Any, stack: Api, db: Database, publisher: Publisher
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    wearer("IOM-W0003", "HTW003", (now - MINUTE).isoformat())
    subject_id = off_loop(lambda: db.fetchval("SELECT id FROM subjects WHERE ref = 'IOM-W0003'"))
    sign_in(page, "probation")

    page.click("#tab-zones")
    page.select_option("#zone-subject", str(subject_id))
    page.select_option("#zone-kind", "exclusion")
    page.fill("#zone-label", "victim's street")
    page.click("#zone-draw")
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    corners = [(cx - 60, cy - 40), (cx + 60, cy - 40), (cx + 60, cy + 40), (cx - 60, cy + 40)]
    for px, py in [*corners, corners[0]]:
        page.mouse.click(px, py)
        page.wait_for_timeout(100)
    page.click("#zone-save")
    page.wait_for_selector("#zone-message:has-text('Saved zone')")

    token = add_user("web-check", "supervisor")
    zones = httpx.get(
        f"{stack.url}/v1/subjects/{subject_id}/zones",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert [(z["kind"], z["label"], z["version"]) for z in zones] == [
        ("exclusion", "victim's street", 1)
    ]
    ring = zones[0]["geometry"]["coordinates"][0]
    assert zones[0]["geometry"]["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1]
    assert page.locator("#zone-list article").count() == 1

    page.click("#tab-alerts")
    page.wait_for_selector("#alert-live:has-text('live')")
    page.wait_for_timeout(2000)  # the worker takes up new zones within two seconds
    # the subject walks into the middle of the drawn square and stays there
    lon = sum(p[0] for p in ring[:4]) / 4
    lat = sum(p[1] for p in ring[:4]) / 4
    x, y = grid.point_to_grid(lon, lat)
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    steps = [(-5000, 0), (0, 0), (2, 1), (1, 2), (0, 1)]
    for i, (dx, dy) in enumerate(steps):
        publisher.send("tags/HTW003/fixes", fix(t0 + timedelta(seconds=5 * i), x + dx, y + dy))
    publisher.flush()

    card = page.locator("article.alert[data-type='exclusion_breach']")
    card.wait_for(timeout=20_000)  # arrives by the stream: the page is not reloaded
    assert "IOM-W0003" in card.inner_text()
    card.locator("input.note").fill("called the subject; he is leaving")
    card.locator("text=Acknowledge").click()
    status = "SELECT status FROM alerts WHERE type = 'exclusion_breach'"
    wait_for(lambda: off_loop(lambda: db.fetchval(status)) == "acknowledged")
    note = off_loop(lambda: db.fetchval("SELECT note FROM alert_actions"))
    assert note == "called the subject; he is leaving"
    page.select_option("#alert-status", "acknowledged")
    page.locator("article.alert[data-status='acknowledged']").wait_for()

    # the day's track, with the fixes of the breach episode marked
    entered = off_loop(lambda: db.fetchval("SELECT entered_at FROM breach_episodes"))
    marked = sum(1 for i in range(len(steps)) if t0 + timedelta(seconds=5 * i) >= entered)
    page.click("#tab-zones")
    page.select_option("#zone-subject", str(subject_id))
    page.fill("#track-day", t0.strftime("%Y-%m-%d"))
    page.click("#track-show")
    message = page.locator("#track-message:has-text('fixes;')")
    message.wait_for()
    assert message.inner_text() == f"5 fixes; 1 breach episode(s), {marked} fixes marked."
    assert page.locator("path.breach-fix").count() == marked


def test_a_zone_label_shows_as_typed_and_never_runs_as_markup(
    page: Any, stack: Api, db: Database
) -> None:
    """Map tooltips would read a string as HTML: a label typed by one member of staff must
    not run as script in a colleague's browser, where the bearer token is."""
    now = datetime.now(UTC).replace(microsecond=0)
    wearer("IOM-W0005", "HTW005", (now - MINUTE).isoformat())
    subject_id = off_loop(lambda: db.fetchval("SELECT id FROM subjects WHERE ref = 'IOM-W0005'"))
    label = '<img src=x onerror="window.ranFromALabel = 1">'
    made = httpx.post(
        f"{stack.url}/v1/subjects/{subject_id}/zones",
        headers={"Authorization": f"Bearer {add_user('web-author', 'probation')}"},
        json={
            "kind": "exclusion",
            "label": label,
            "geometry": {"type": "Point", "coordinates": list(grid.point_from_grid(*SCENE))},
            "radius_m": 300,
        },
    )
    assert made.status_code == 201, made.text
    sign_in(page, "supervisor")
    page.click("#tab-zones")
    page.select_option("#zone-subject", str(subject_id))
    page.locator("#zone-list article").wait_for()
    page.locator("#map path.leaflet-interactive").first.hover()
    tooltip = page.locator(".leaflet-tooltip")
    tooltip.wait_for()
    assert tooltip.inner_text() == f"exclusion: {label}"
    assert page.locator(".leaflet-tooltip img").count() == 0
    assert page.evaluate("window.ranFromALabel") is None


def test_a_subjects_places_and_week_and_the_cohort_hotspots(page: Any, db: Database) -> None:
    from tests.services import torch_cli
    from tests.test_pattern_method import MONDAY
    from tests.test_patterns_api import store_week

    off_loop(lambda: [store_week(db, f"IOM-W{k}", f"WT{k}", k) for k in (1, 2, 3)])
    torch_cli("tiles", "rebuild")
    sign_in(page, "supervisor")
    page.click("#tab-patterns")
    page.select_option("#pattern-subject", label="IOM-W1")
    page.fill("#pattern-from", MONDAY.date().isoformat())
    page.fill("#pattern-to", (MONDAY + timedelta(days=6)).date().isoformat())
    page.click("#pattern-form button[type=submit]")
    page.wait_for_selector("#pattern-places li")
    assert page.locator("#pattern-places li").all_inner_texts()[0].startswith("Home · 8 visits")
    assert page.locator("#pattern-week tr").count() == 7
    # Tuesday noon: at work (place 2's colour, the second of the palette)
    cell = page.locator("#pattern-week tr").nth(1).locator("td").nth(12)
    assert "mostly place 2" in cell.get_attribute("title")
    page.fill("#hot-from", MONDAY.date().isoformat())
    page.fill("#hot-to", (MONDAY + timedelta(days=6)).date().isoformat())
    page.click("#hot-form button[type=submit]")
    page.wait_for_selector("#hot-message:has-text('cells with three subjects or more')")
    page.locator("#hot-hour").fill("3")
    page.wait_for_selector("#hot-hour-label:has-text('03:00')")
    assert page.locator("path.leaflet-interactive").count() >= 1  # the cell of the homes
