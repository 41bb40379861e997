"""Zones over real HTTP, and breaches found by the real ingest worker from fixes sent through
the broker, with their alerts on MQTT and through the alert workflow."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.factories import grid_fix as fix
from tests.services import (
    Api,
    Database,
    Publisher,
    Worker,
    add_user,
    torch_cli,
    wait_for,
    wearer,
)
from torch import grid

NOW = datetime.now(UTC).replace(microsecond=0)
BREACH_ALERTS = "SELECT count(*) FROM alerts WHERE episode_id IS NOT NULL"
CENTRE = (522000.0, 208000.0)  # grid metres, in Hatfield


def lonlat(x: float, y: float) -> list[float]:
    lon, lat = grid.point_from_grid(x, y)
    return [lon, lat]


def square(x: float, y: float, side: float) -> dict[str, Any]:
    ring = [lonlat(x, y), lonlat(x + side, y), lonlat(x + side, y + side), lonlat(x, y + side)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = Api(tmp_path / "api.log")
    wearer("IOM-Z0001", "HTZ001", (NOW - timedelta(days=1)).isoformat())
    subject_id = db.fetchval("SELECT id FROM subjects WHERE ref = 'IOM-Z0001'")
    tokens = {r: add_user(f"{r}-z", r) for r in ("officer", "probation", "supervisor")}

    def call(method: str, path: str, role: str = "probation", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kw)

    yield {"call": call, "subject": subject_id, "db": db}
    server.stop()


def zone_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "exclusion",
        "label": "victim's street",
        "geometry": square(*CENTRE, 200),
        "schedule": None,
        "valid_from": (NOW - timedelta(hours=2)).isoformat(),
    }
    return {**body, **changes}


def test_zones_are_versioned_never_overwritten(api: dict[str, Any]) -> None:
    call, sid = api["call"], api["subject"]
    made = call("POST", f"/v1/subjects/{sid}/zones", json=zone_body())
    assert made.status_code == 201, made.text
    zone = made.json()
    assert (zone["version"], zone["kind"], zone["deleted"]) == (1, "exclusion", False)
    curfew = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "19:00", "end": "07:00"}
    changed = call(
        "PUT",
        f"/v1/zones/{zone['id']}",
        json=zone_body(kind="inclusion", label="home", schedule=[curfew]),
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.json()["schedule"]) == (2, [curfew])
    versions = call("GET", f"/v1/zones/{zone['id']}/versions", role="officer").json()
    assert [(v["version"], v["kind"]) for v in versions] == [(1, "exclusion"), (2, "inclusion")]
    assert versions[0]["current_until"] == versions[1]["current_from"]
    at_first = call(
        "GET",
        f"/v1/zones/{zone['id']}/versions",
        params={"at": versions[0]["current_from"]},
        role="officer",
    ).json()
    assert [v["version"] for v in at_first] == [1]
    assert call("DELETE", f"/v1/zones/{zone['id']}").status_code == 204
    assert call("GET", f"/v1/subjects/{sid}/zones", role="officer").json() == []
    gone = call("GET", f"/v1/zones/{zone['id']}/versions").json()
    assert [v["deleted"] for v in gone] == [True, True] and gone[1]["current_until"] is not None
    assert call("PUT", f"/v1/zones/{zone['id']}", json=zone_body()).status_code == 404


def test_bad_zones_are_refused_with_the_field_and_the_reason(api: dict[str, Any]) -> None:
    call, sid = api["call"], api["subject"]
    x, y = CENTRE
    bowtie = [lonlat(x, y), lonlat(x + 100, y + 100), lonlat(x + 100, y), lonlat(x, y + 100)]
    cases = [
        (
            {"geometry": {"type": "Polygon", "coordinates": [[*bowtie, bowtie[0]]]}},
            "geometry",
            "Self-intersection",
        ),
        (
            {"geometry": {"type": "Polygon", "coordinates": [bowtie]}},
            "geometry",
            "not closed",
        ),
        ({"geometry": {"type": "Point", "coordinates": lonlat(x, y)}}, "radius_m", "radius_m"),
        ({"geometry": square(x - 6000, y - 6000, 12000)}, "geometry", "the most is 100 km²"),
        (
            {"schedule": [{"days": ["mon"], "start": "25:00", "end": "07:00"}]},
            "schedule[0].start",
            "24-hour",
        ),
        (
            {"schedule": [{"days": ["someday"], "start": "19:00", "end": "07:00"}]},
            "schedule[0].days",
            "mon",
        ),
    ]
    for change, field, words in cases:
        r = call("POST", f"/v1/subjects/{sid}/zones", json=zone_body(**change))
        assert r.status_code == 422, (change, r.text)
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in problem["errors"]] == [field], problem
        assert words in problem["errors"][0]["message"], problem
    assert (
        call("POST", f"/v1/subjects/{sid}/zones", role="officer", json=zone_body()).status_code
        == 403
    )
    assert call("POST", "/v1/subjects/999999/zones", json=zone_body()).status_code == 404


def test_breaches_found_by_the_worker_raise_one_alert_each(
    api: dict[str, Any],
    workers: Callable[..., Worker],
    publisher: Publisher,
    alerts_heard: queue.Queue[dict[str, Any]],
) -> None:
    call, sid, db = api["call"], api["subject"], api["db"]
    zone = call("POST", f"/v1/subjects/{sid}/zones", json=zone_body()).json()
    workers("zones")
    x, y = CENTRE  # the zone is the 200 m square north-east of here
    # A zone binds fixes from the moment it is set: the track starts now, a fix every 5 s.
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def at(steps: float) -> datetime:
        return t0 + timedelta(seconds=5 * steps)

    track = [
        # drifting at the west edge, 8 m either side with 10 m accuracy: nothing
        *(fix(at(i), x + (8 if i % 2 else -8), y + 100, acc=10) for i in range(6)),
        # walking in: clearly inside at steps 8 and 9 (an episode entered at 8)
        fix(at(7), x - 50, y + 100),
        fix(at(8), x + 60, y + 100),
        fix(at(9), x + 100, y + 120),
        fix(at(10), x + 90, y + 100),
        # out again: clearly outside at 11 and 12 (left at 11)
        fix(at(11), x - 80, y + 100),
        fix(at(12), x - 150, y + 100),
        # a car through the square between two fixes: a transit
        fix(at(20), x - 600, y + 100),
        fix(at(21), x + 800, y + 100),
    ]
    for f in track:
        publisher.send("tags/HTZ001/fixes", f)
    publisher.flush()
    wait_for(lambda: db.fetchval(BREACH_ALERTS) == 2, timeout=20)
    heard = [alerts_heard.get(timeout=10) for _ in range(3)]  # with no_comms, see below
    assert sorted(m["type"] for m in heard) == ["exclusion_breach", "no_comms", "transit_breach"]
    assert {m["topic"] for m in heard} == {"torch/alerts/IOM-Z0001"}
    wait_for(
        lambda: db.fetchval("SELECT left_at FROM breach_episodes WHERE kind = 'exclusion'"),
        timeout=10,
    )
    episodes = call(
        "GET",
        f"/v1/subjects/{sid}/breaches",
        params={"from": at(0).isoformat(), "to": at(30).isoformat()},
    ).json()
    assert [(e["kind"], e["detection"], e["zone_version"]) for e in episodes] == [
        ("exclusion", "live", 1),
        ("transit", "live", 1),
    ]
    assert datetime.fromisoformat(episodes[0]["entered_at"]) == at(8)
    assert datetime.fromisoformat(episodes[0]["left_at"]) == at(11)
    assert episodes[0]["fixes_inside"] == 3
    assert episodes[0]["zone_id"] == zone["id"]

    # the workflow: acknowledge, then close, each with a note, kept
    inbox = call("GET", "/v1/alerts", params={"status": "open"}).json()
    # the tag was worn for a day before this test and never heard from: no_comms too
    assert sorted(a["type"] for a in inbox) == ["exclusion_breach", "no_comms", "transit_breach"]
    alert = next(a for a in inbox if a["type"] == "exclusion_breach")
    ack = call("POST", f"/v1/alerts/{alert['id']}/acknowledge", json={"note": "called him"})
    assert (ack.status_code, ack.json()["status"]) == (200, "acknowledged")
    closed = call("POST", f"/v1/alerts/{alert['id']}/close", json={"note": "explained: bus"})
    assert closed.json()["status"] == "closed"
    assert [(a["action"], a["by"], a["note"]) for a in closed.json()["actions"]] == [
        ("acknowledge", "probation-z", "called him"),
        ("close", "probation-z", "explained: bus"),
    ]
    again = call("POST", f"/v1/alerts/{alert['id']}/acknowledge", json={"note": "x"})
    assert again.status_code == 409

    # a fix from earlier, late from the tag's buffer, shows another visit: found as late
    publisher.send("tags/HTZ001/fixes", fix(at(40), x + 800, y + 100))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == len(track) + 1)
    late = [fix(at(30), x + 100, y + 100), fix(at(31), x + 110, y + 90)]
    for f in [*late, fix(at(33), x + 500, y + 100), fix(at(34), x + 600, y + 100)]:
        publisher.send("tags/HTZ001/fixes", f)
    publisher.flush()
    wait_for(lambda: db.fetchval(BREACH_ALERTS) == 3, timeout=20)
    row = db.fetch(
        "SELECT entered_at, left_at, detection FROM breach_episodes ORDER BY entered_at"
    )[-1]
    assert (row["entered_at"], row["left_at"], row["detection"]) == (at(30), at(33), "late")


def test_a_transit_to_a_gps_outlier_is_raised_then_doubted_and_published_again(
    api: dict[str, Any],
    workers: Callable[..., Worker],
    publisher: Publisher,
    alerts_heard: queue.Queue[dict[str, Any]],
) -> None:
    """A walker 1 km south of the zone; one fix 3 km north of their path, past the zone. The
    transit is raised as that fix arrives; the next fix shows it to be a spike, and the
    alert says so, published again; the way back raises nothing."""
    call, sid = api["call"], api["subject"]
    call("POST", f"/v1/subjects/{sid}/zones", json=zone_body())
    workers("spike", TORCH_SILENT_AFTER_S="315360000")
    x, y = CENTRE  # the zone is the 200 m square north-east of here
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    path = [(0, x + 40, y - 1000), (60, x + 100, y + 2000), (120, x + 160, y - 1000)]
    for s, px, py in path[:2]:
        publisher.send("tags/HTZ001/fixes", fix(t0 + timedelta(seconds=s), px, py, acc=8))
    publisher.flush()
    raised = alerts_heard.get(timeout=20)
    assert (raised["type"], "doubt" in raised) == ("transit_breach", False)
    publisher.send("tags/HTZ001/fixes", fix(t0 + timedelta(seconds=120), *path[2][1:], acc=8))
    publisher.flush()
    again = alerts_heard.get(timeout=20)
    doubt = (
        f"the fix at {t0 + timedelta(seconds=60):%Y-%m-%dT%H:%M:%SZ} would mean 50 m/s from the"
        " fix before it and 50 m/s to the one after, even allowing for their accuracy, while"
        " those two are 1 m/s apart: it may be a GPS outlier"
    )
    assert (again["alert_id"], again["type"], again["doubt"]) == (
        raised["alert_id"],
        "transit_breach",
        doubt,
    )
    with pytest.raises(queue.Empty):
        alerts_heard.get(timeout=1)
    episodes = call(
        "GET",
        f"/v1/subjects/{sid}/breaches",
        params={"from": t0.isoformat(), "to": (t0 + timedelta(minutes=5)).isoformat()},
    ).json()
    assert [(e["kind"], e["doubt"]) for e in episodes] == [("transit", doubt)]
    inbox = call("GET", "/v1/alerts").json()
    assert [(a["type"], a["detail"]["doubt"]) for a in inbox] == [("transit_breach", doubt)]


def test_after_a_restart_older_fixes_are_late_and_raise_no_second_alert(
    api: dict[str, Any], workers: Callable[..., Worker], publisher: Publisher
) -> None:
    """A breach raised before a restart; after it, a tag's buffer with fixes from inside
    that breach. They are older than the last fix checked before the restart, so they are
    checked with the stored track around them, which shows the breach already stored: no
    second alert. (Taken as the next fixes of a fresh watch, they raised one.)"""
    call, sid, db = api["call"], api["subject"], api["db"]
    call("POST", f"/v1/subjects/{sid}/zones", json=zone_body())
    first = workers("before", TORCH_SILENT_AFTER_S="315360000")
    x, y = CENTRE
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def at(steps: float) -> datetime:
        return t0 + timedelta(seconds=10 * steps)

    walk = [(0, -80), (1, 100), (2, 110), (3, 100), (4, -80), (5, -150), (6, -160)]
    for step, dx in walk:  # in at 1, out at 4
        publisher.send("tags/HTZ001/fixes", fix(at(step), x + dx, y + 100))
    publisher.flush()
    wait_for(lambda: db.fetchval("SELECT count(*) FROM breach_episodes WHERE left_at IS NOT NULL"))
    first.stop()
    workers("after", TORCH_SILENT_AFTER_S="315360000")
    buffer = [fix(at(step), x + 90, y + 100) for step in (1.5, 2.5, 3.5)]
    publisher.send("tags/HTZ001/fixes", buffer)
    publisher.send("tags/HTZ001/fixes", {**fix(at(7), x - 160, y + 100), "batt": 5})
    publisher.flush()
    # the battery alert is raised in the check of the batch after the buffer, or with it
    wait_for(lambda: db.fetchval("SELECT count(*) FROM alerts WHERE type = 'battery_low'") == 1)
    rows = db.fetch("SELECT entered_at, left_at, detection FROM breach_episodes")
    assert [tuple(r) for r in rows] == [(at(1), at(4), "live")]
    assert db.fetchval(BREACH_ALERTS) == 1


def test_a_buffer_sent_in_two_messages_leaves_the_late_breach_with_its_true_end(
    api: dict[str, Any], workers: Callable[..., Worker], publisher: Publisher
) -> None:
    """The tag was out of the network from step 1 to step 9 and sends its buffer in two
    messages after its live fixes of steps 10 and 11. With the first part alone, the breach
    it shows (in at 1) seems to last until the live fixes close it (10); the second part
    shows it ended at 5. One alert, and the episode ends at 5."""
    call, sid, db = api["call"], api["subject"], api["db"]
    call("POST", f"/v1/subjects/{sid}/zones", json=zone_body())
    workers("parts", TORCH_SILENT_AFTER_S="315360000")
    x, y = CENTRE
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def at(steps: float) -> datetime:
        return t0 + timedelta(seconds=10 * steps)

    def send(fixes: list[dict[str, Any]] | dict[str, Any]) -> None:
        publisher.send("tags/HTZ001/fixes", fixes)
        publisher.flush()

    inside, outside = (x + 100, y + 100), (x - 150, y + 100)
    send(fix(at(0), *outside))
    send([fix(at(10), *outside), fix(at(11), *outside)])
    wait_for(lambda: db.count("fixes") == 3)
    send([fix(at(step), *inside) for step in (1, 2, 3)])
    wait_for(lambda: db.fetchval(BREACH_ALERTS) == 1)
    first = db.fetch("SELECT entered_at, left_at, detection FROM breach_episodes")
    assert [tuple(r) for r in first] == [(at(1), at(10), "late")]  # from the first part alone
    send([fix(at(4), *inside), *(fix(at(step), *outside) for step in (5, 6, 7))])
    wait_for(lambda: db.fetchval("SELECT left_at FROM breach_episodes") == at(5))
    rows = db.fetch("SELECT entered_at, left_at, fixes_inside, detection FROM breach_episodes")
    assert [tuple(r) for r in rows] == [(at(1), at(5), 4, "late")]
    assert db.fetchval(BREACH_ALERTS) == 1


def test_a_zone_edit_reaches_the_worker_within_two_seconds(
    api: dict[str, Any], workers: Callable[..., Worker], publisher: Publisher
) -> None:
    call, sid, db = api["call"], api["subject"], api["db"]
    x, y = CENTRE
    zone = call("POST", f"/v1/subjects/{sid}/zones", json=zone_body()).json()
    workers("zones-edit")
    # the subject stands 1 km east of the zone; then the zone is moved onto them
    publisher.send("tags/HTZ001/fixes", fix(NOW - timedelta(minutes=5), x + 1100, y + 100))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 1)
    moved = call(
        "PUT", f"/v1/zones/{zone['id']}", json=zone_body(geometry=square(x + 1000, y, 200))
    )
    assert moved.status_code == 200
    time.sleep(2)  # the worker takes up zone changes within two seconds
    now = datetime.now(UTC)
    for seconds in (0, 1):
        publisher.send(
            "tags/HTZ001/fixes", fix(now + timedelta(seconds=seconds), x + 1100, y + 100)
        )
    publisher.flush()
    wait_for(lambda: db.fetchval(BREACH_ALERTS) == 1, timeout=10)
    assert db.fetchval("SELECT version FROM breach_episodes") == 2


def test_a_tag_taken_off_reaches_the_worker_within_two_seconds(
    api: dict[str, Any], workers: Callable[..., Worker], publisher: Publisher
) -> None:
    """Once HTZ001 is recorded as taken off, its fixes are nobody's: a tag lying in the zone
    (in a drawer at the office, say) breaches nothing. Another tag's assignment ends later
    than the new end, so the change is not the latest end of any assignment."""
    call, sid, db = api["call"], api["subject"], api["db"]
    x, y = CENTRE
    call("POST", f"/v1/subjects/{sid}/zones", json=zone_body())
    torch_cli("subject", "add", "IOM-Z0002")
    torch_cli("device", "add", "HTZ002")
    torch_cli(
        "assign", "HTZ002", "IOM-Z0002",
        "--from", (NOW - timedelta(days=1)).isoformat(),
        "--to", (NOW + timedelta(days=30)).isoformat(),
    )  # fmt: skip
    workers("unassign")
    publisher.send("tags/HTZ001/fixes", fix(NOW - timedelta(minutes=5), x - 500, y + 100))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 1)
    off = datetime.now(UTC).replace(microsecond=0)
    out = torch_cli("unassign", "HTZ001", "--at", off.isoformat()).stdout
    assert out == f"device HTZ001 taken off IOM-Z0001 at {off.isoformat()}\n"
    time.sleep(2)
    for seconds in (1, 2, 3):
        publisher.send("tags/HTZ001/fixes", fix(off + timedelta(seconds=seconds), x + 100, y + 100))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 4)
    # a low battery on the other tag: once its alert is raised, the fixes before it were checked
    low = {**fix(off + timedelta(seconds=4), x - 900, y), "batt": 5}
    publisher.send("tags/HTZ002/fixes", low)
    publisher.flush()
    wait_for(lambda: db.fetchval("SELECT count(*) FROM alerts WHERE type = 'battery_low'") == 1)
    assert db.fetchval(BREACH_ALERTS) == 0
    assert db.fetchval("SELECT count(*) FROM breach_episodes") == 0


def test_fixes_stored_before_their_assignment_was_recorded_are_checked_once_it_is(
    api: dict[str, Any], workers: Callable[..., Worker], publisher: Publisher
) -> None:
    """A tag fitted before anyone recorded it: its fixes were stored as nobody's and so
    checked against no zone. Recorded with its true start, they are checked then, and the
    breach they show is raised as `late`."""
    call, db = api["call"], api["db"]
    x, y = CENTRE
    torch_cli("subject", "add", "IOM-Z0003")
    torch_cli("device", "add", "HTZ003")
    subject = db.fetchval("SELECT id FROM subjects WHERE ref = 'IOM-Z0003'")
    call("POST", f"/v1/subjects/{subject}/zones", json=zone_body())
    workers("recorded-late", TORCH_SWEEP_MS="200")
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def at(steps: float) -> datetime:
        return t0 + timedelta(seconds=5 * steps)

    walk = [(-50, 0), (60, 0), (100, 20), (90, 0), (-80, 0), (-150, 0)]  # in at 1, out at 4
    for i, (dx, dy) in enumerate(walk):
        publisher.send("tags/HTZ003/fixes", fix(at(i), x + dx, y + 100 + dy))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == len(walk))
    time.sleep(1)  # the worker has checked them: against nobody's zones
    assert db.fetchval(BREACH_ALERTS) == 0
    torch_cli("assign", "HTZ003", "IOM-Z0003", "--from", (t0 - timedelta(hours=1)).isoformat())
    wait_for(lambda: db.fetchval(BREACH_ALERTS) == 1, timeout=10)
    row = db.fetch("SELECT subject_id, kind, entered_at, left_at, detection FROM breach_episodes")
    assert [tuple(r) for r in row] == [(subject, "exclusion", at(1), at(4), "late")]
    assert db.fetchval("SELECT count(*) FROM zone_rechecks") == 0


def test_a_reissued_tag_raises_its_device_alerts_for_its_new_wearer(
    api: dict[str, Any], workers: Callable[..., Worker], publisher: Publisher
) -> None:
    """HTZ001's strap was opened when it came off IOM-Z0001, and that alert is still open
    when the tag is fitted to IOM-Z0004: the new wearer's strap opened is an alert of its
    own, not swallowed by the old one; a second opening for the same wearer is not."""
    db = api["db"]
    workers("reissued")
    tamper = "SELECT s.ref FROM alerts a JOIN subjects s ON s.id = a.subject_id"
    tamper += " WHERE a.type = 'strap_tamper' ORDER BY a.raised_at"

    def strap_open(at: datetime) -> None:
        publisher.send("tags/HTZ001/events", {"ts": at.isoformat(), "type": "strap_open"})
        publisher.flush()

    off = datetime.now(UTC).replace(microsecond=0)
    strap_open(off - timedelta(seconds=1))
    wait_for(lambda: [r["ref"] for r in db.fetch(tamper)] == ["IOM-Z0001"])
    torch_cli("unassign", "HTZ001", "--at", off.isoformat())
    torch_cli("subject", "add", "IOM-Z0004")
    torch_cli("assign", "HTZ001", "IOM-Z0004", "--from", off.isoformat())
    time.sleep(2)  # the worker takes the reissue up
    for seconds in (1, 2):
        strap_open(off + timedelta(seconds=seconds))
    wait_for(lambda: db.count("device_events") == 3)
    wait_for(lambda: [r["ref"] for r in db.fetch(tamper)] == ["IOM-Z0001", "IOM-Z0004"])
    time.sleep(1)
    assert [r["ref"] for r in db.fetch(tamper)] == ["IOM-Z0001", "IOM-Z0004"]


def sse_events(response: httpx.Response, into: queue.Queue[dict[str, Any]]) -> None:
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith("id: "):
            event["id"] = int(line[4:])
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and "data" in event:
            into.put(event)
            event = {}


def test_device_alerts_survive_a_crash_before_publishing_and_stream_to_browsers(
    api: dict[str, Any],
    workers: Callable[..., Worker],
    publisher: Publisher,
    alerts_heard: queue.Queue[dict[str, Any]],
) -> None:
    import threading

    call, db = api["call"], api["db"]
    streamed: queue.Queue[dict[str, Any]] = queue.Queue()
    client = httpx.Client(timeout=None)
    headers = {"Authorization": call("GET", "/v1/alerts").request.headers["Authorization"]}
    url = str(call("GET", "/v1/alerts").request.url).replace("/v1/alerts", "/v1/alerts/stream")

    def listen() -> None:
        try:
            with client.stream("GET", url, headers=headers) as r:
                sse_events(r, streamed)
        except httpx.HTTPError:
            pass  # the API stopped at the end of the test

    threading.Thread(target=listen, daemon=True).start()
    # a worker that commits alerts but does not publish them: killed after the commit,
    # before any publish
    stuck = workers("alerts-stuck", TORCH_PUBLISH_ALERTS="false")
    publisher.send(
        "tags/HTZ001/events", {"ts": datetime.now(UTC).isoformat(), "type": "strap_open"}
    )
    publisher.send(
        "tags/HTZ001/events", {"ts": datetime.now(UTC).isoformat(), "type": "strap_open"}
    )
    publisher.flush()
    wait_for(lambda: db.count("device_events") == 2)
    # one tamper alert, not one per event; and the tag, worn for a day and never heard
    # from before, is already no_comms
    tamper = "SELECT count(*) FROM alerts WHERE type = 'strap_tamper'"
    wait_for(lambda: db.fetchval(tamper) == 1)
    assert sorted(r["type"] for r in db.fetch("SELECT type FROM alerts")) == [
        "no_comms",
        "strap_tamper",
    ]
    stuck.kill()
    assert db.fetchval("SELECT count(*) FROM alert_outbox WHERE published_at IS NULL") == 2
    with pytest.raises(queue.Empty):
        alerts_heard.get(timeout=1)
    # the next worker publishes both; nobody acknowledging escalates them
    workers("alerts-next", TORCH_SWEEP_MS="200", TORCH_ESCALATE_AFTER_S="3")
    heard = {m["type"]: m for m in (alerts_heard.get(timeout=10) for _ in range(2))}
    assert set(heard) == {"no_comms", "strap_tamper"}
    assert (heard["strap_tamper"]["severity"], heard["strap_tamper"]["topic"]) == (
        "critical",
        "torch/alerts/IOM-Z0001",
    )
    first = {e["data"]["type"]: e for e in (streamed.get(timeout=10) for _ in range(2))}
    assert first["strap_tamper"]["data"]["alert_id"] == heard["strap_tamper"]["alert_id"]
    wait_for(lambda: db.fetchval("SELECT escalations FROM alerts WHERE type = 'strap_tamper'") >= 1)
    again = next(
        e
        for e in iter(lambda: streamed.get(timeout=10), None)
        if e["data"]["type"] == "strap_tamper"
    )
    assert again["data"]["escalations"] == 1 and again["id"] > first["strap_tamper"]["id"]
    inbox = call("GET", "/v1/alerts", params={"type": "strap_tamper"}).json()
    assert [(a["escalations"], a["status"]) for a in inbox] == [(1, "open")]
    client.close()


def test_every_read_of_a_zone_is_audited_with_its_subject(api: dict[str, Any]) -> None:
    """A zone is where someone lives, or must not go: each read leaves an audit record."""
    call, sid, db = api["call"], api["subject"], api["db"]
    zone = call("POST", f"/v1/subjects/{sid}/zones", json=zone_body()).json()
    reads = [
        ("/v1/subjects/{id}/zones", f"/v1/subjects/{sid}/zones"),
        ("/v1/zones/{id}", f"/v1/zones/{zone['id']}"),
        ("/v1/zones/{id}/versions", f"/v1/zones/{zone['id']}/versions"),
    ]
    for _, path in reads:
        assert call("GET", path, role="officer").status_code == 200
    rows = db.fetch(
        "SELECT u.name, a.method, a.route, a.subject_ids FROM audit_log a"
        " JOIN users u ON u.id = a.user_id WHERE u.name = 'officer-z' ORDER BY a.id"
    )
    assert [tuple(r) for r in rows] == [("officer-z", "GET", route, [sid]) for route, _ in reads]
    assert call("GET", "/v1/zones/987654", role="officer").status_code == 404
    assert db.fetchval("SELECT count(*) FROM audit_log a JOIN users u ON u.id = a.user_id"
                       " WHERE u.name = 'officer-z'") == 3  # fmt: skip


def raise_alert(db: Database, subject_id: int) -> str:
    """An open alert of the subject with its outbox entry, as the worker writes them."""
    alert_id = str(uuid4())
    db.execute(
        "INSERT INTO alerts (id, subject_id, type, severity, occurred_at, detail)"
        " VALUES ($1::uuid, $2, 'curfew_breach', 'high', now(), '{}')",
        alert_id,
        subject_id,
    )
    db.execute(
        "INSERT INTO alert_outbox (alert_id, topic, payload)"
        " VALUES ($1::uuid, 'torch/alerts/IOM-Z0001', jsonb_build_object('alert_id', $1::text))",
        alert_id,
    )
    return alert_id


def test_a_revoked_token_ends_the_alert_stream_before_another_alert(api: dict[str, Any]) -> None:
    import threading

    call, sid, db = api["call"], api["subject"], api["db"]
    url = str(call("GET", "/v1/alerts").request.url) + "/stream"
    token = add_user("leaver-z", "probation")
    lines: queue.Queue[str] = queue.Queue()
    ended = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream(
                "GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=None
            ) as r:
                for line in r.iter_lines():
                    lines.put(line)
        except httpx.HTTPError:
            pass
        ended.set()

    sent: list[str] = []

    def delivered() -> list[str]:
        while not lines.empty():
            line = lines.get()
            if line.startswith("data: "):
                sent.append(json.loads(line[6:])["alert_id"])
        return sent

    threading.Thread(target=listen, daemon=True).start()
    assert lines.get(timeout=10) == ": connected"
    first = raise_alert(db, sid)
    wait_for(lambda: delivered() == [first], timeout=10)
    torch_cli("user", "revoke", "leaver-z")
    raise_alert(db, sid)
    assert ended.wait(10), "the stream of a revoked token went on"
    assert delivered() == [first]
    # what it was sent is audited: the one alert, of its subject
    assert db.fetch(AUDIT_ROWS, "leaver-z", "/v1/alerts/stream") == [("GET", [sid])]


def test_the_inbox_pages_through_alerts_raised_together(api: dict[str, Any]) -> None:
    """A sweep raises its alerts in one transaction, at one time: pages of two, each
    starting after the last alert of the one before, give every alert once."""
    call, sid, db = api["call"], api["subject"], api["db"]
    db.execute(
        "INSERT INTO alerts (id, subject_id, type, severity, occurred_at)"
        " SELECT gen_random_uuid(), $1, 'no_comms', 'high', now() FROM generate_series(1, 5)",
        sid,
    )
    every = [a["id"] for a in call("GET", "/v1/alerts").json()]
    assert len(every) == 5 and every == sorted(every, reverse=True)  # newest, then by id
    pages: list[list[str]] = []
    before: dict[str, Any] = {}
    for _ in range(5):  # more than enough: a page that repeats fails below, not forever
        params = {"limit": 2, **before}
        page = [a["id"] for a in call("GET", "/v1/alerts", params=params).json()]
        if not page:
            break
        pages.append(page)
        before = {"before": page[-1]}
    assert pages == [every[:2], every[2:4], every[4:]]
    nowhere = str(uuid4())
    r = call("GET", "/v1/alerts", params={"before": nowhere})
    assert (r.status_code, r.json()["detail"]) == (404, f"no alert {nowhere}")


AUDIT_ROWS = (
    "SELECT a.method, a.subject_ids FROM audit_log a JOIN users u ON u.id = a.user_id"
    " WHERE u.name = $1 AND a.route = $2 ORDER BY a.id"
)


def test_every_read_of_alerts_is_audited_with_their_subjects(api: dict[str, Any]) -> None:
    """An alert says where someone was (in a zone, out of their home) and when."""
    call, sid, db = api["call"], api["subject"], api["db"]
    alert_id = raise_alert(db, sid)
    assert [a["id"] for a in call("GET", "/v1/alerts").json()] == [alert_id]
    assert [a["id"] for a in call("GET", "/v1/alerts", params={"status": "closed"}).json()] == []
    assert db.fetch(AUDIT_ROWS, "probation-z", "/v1/alerts") == [("GET", [sid]), ("GET", [])]
