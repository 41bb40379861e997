"""Mobile victim zones end to end: a protected person's phone and two subjects' tags over
MQTT, the worker's staged alerts at the right moments, and who may see the person."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import grid_fix
from tests.services import (
    MQTT_PORT,
    Api,
    Database,
    Publisher,
    add_user,
    mqtt_client,
    sign_in,
    torch_cli,
    wait_for,
    wearer,
)

T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
VICTIM0 = (515_000.0, 207_000.0)


def at(t: float) -> datetime:
    return T + timedelta(seconds=t)


def victim_x(t: float) -> float:
    return VICTIM0[0] + 1.5 * t  # walking east


def subject_x(t: float) -> float:
    return VICTIM0[0] + 3500 - 10 * t  # driving west, past the protected person


@pytest.fixture
def world(db: Database, workers, publisher: Publisher, tmp_path: Path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    since = (T - timedelta(days=1)).isoformat()
    wearer("IOM-V1", "VT1", since)
    wearer("IOM-V2", "VT2", since)
    tokens = {
        "named": add_user("nora", "officer"),
        "other": add_user("otto", "officer"),
        "chief": add_user("sam", "supervisor"),
        "probation": add_user("pip", "probation"),
    }
    password = torch_cli("victim", "add", "VIC-1", "--officer", "nora").stdout.splitlines()[-1]
    api = Api(tmp_path / "api.log", port=18044)
    ids = {r["ref"]: r["id"] for r in db.fetch("SELECT id, ref FROM subjects")}
    yield {"api": api, "tokens": tokens, "password": password, "ids": ids, "db": db}
    api.stop()


PHONE_TIMES = range(-20, 641, 30)  # the phone, every 30 s, 10 s off the tags' clock
CLOSED = "SELECT count(*) FROM victim_episodes WHERE left_at IS NOT NULL"


def walk(t: float) -> dict[str, Any]:
    """The protected person's fix at t."""
    return grid_fix(at(t), victim_x(t), VICTIM0[1])


def drive(publisher: Publisher, serial: str, north_m: float) -> None:
    """A tag's fixes every 30 s for ten minutes, driving west `north_m` north of the
    protected person's path."""
    for t in range(0, 601, 30):
        publisher.send(f"tags/{serial}/fixes", grid_fix(at(t), subject_x(t), VICTIM0[1] + north_m))
    publisher.flush()


def send_from_phone(w: dict[str, Any], fixes: list[dict[str, Any]]) -> None:
    """The protected person's phone sends these fixes, in this order."""
    phone = mqtt_client(f"vic-phone-{uuid.uuid4().hex[:6]}", "victim.VIC-1", w["password"])
    phone.connect("127.0.0.1", MQTT_PORT)
    phone.loop_start()
    for fix in fixes:
        phone.publish("victims/VIC-1/fixes", json.dumps(fix), qos=1).wait_for_publish(10)
    phone.disconnect()
    phone.loop_stop()


def link(w: dict[str, Any], ref: str, token: str, **body: Any) -> httpx.Response:
    """Link the subject to VIC-1 from an hour before the tracks (unless said otherwise), as
    though recorded then: a link binds no fix from before it was recorded."""
    fields = {"victim_ref": "VIC-1", "warning_m": 2000, "breach_m": 500}
    fields["valid_from"] = (T - timedelta(hours=1)).isoformat()
    made = httpx.post(
        f"{w['api'].url}/v1/subjects/{w['ids'][ref]}/victim-links",
        json={**fields, **body},
        headers={"Authorization": f"Bearer {token}"},
    )
    if made.status_code == 201:
        w["db"].execute(
            "UPDATE victim_links SET created_at = valid_from WHERE id = $1", made.json()["id"]
        )
    return made


def test_an_approach_raises_the_warning_then_the_breach_and_a_pass_at_3_km_nothing(
    world: dict[str, Any],
    db: Database,
    workers,
    publisher: Publisher,
    alerts_heard,  # type: ignore[no-untyped-def]
) -> None:
    assert link(world, "IOM-V1", world["tokens"]["chief"]).status_code == 201
    assert link(world, "IOM-V2", world["tokens"]["probation"]).status_code == 201
    refused = link(world, "IOM-V2", world["tokens"]["chief"], breach_m=3000)
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (422, "breach_m")
    workers(TORCH_SILENT_AFTER_S="315360000")  # the tags are new: not silent ones
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)
    drive(publisher, "VT1", 0)
    drive(publisher, "VT2", 3000)
    wait_for(lambda: db.count("fixes") == 42)
    wait_for(lambda: db.fetchval(CLOSED) == 2)

    # distance 3500 - 11.5 t, accuracies 5 + 5: certainly within 2000 m from t = 131.3 s, so
    # from the fix at 150 s (and 180 s: two); within 500 m from the fix at 270 s; clearly
    # beyond 500 m again at 360 and 390 s, beyond 2000 m at 480 and 510 s
    episodes = db.fetch(
        "SELECT s.ref, e.stage, e.entered_at, e.left_at FROM victim_episodes e"
        " JOIN subjects s ON s.id = e.subject_id ORDER BY e.entered_at"
    )
    assert [(r["ref"], r["stage"], r["entered_at"], r["left_at"]) for r in episodes] == [
        ("IOM-V1", "warning", at(150), at(510)),
        ("IOM-V1", "breach", at(270), at(390)),
    ]
    heard = [alerts_heard.get(timeout=10) for _ in range(2)]
    assert [(h["topic"], h["type"], h["severity"], h["entered_at"]) for h in heard] == [
        ("torch/alerts/IOM-V1", "victim_proximity_warning", "high", at(150).isoformat()),
        ("torch/alerts/IOM-V1", "victim_proximity_breach", "critical", at(270).isoformat()),
    ]
    for h in heard:  # how close, never where the protected person is
        assert not {"lat", "lon", "position", "where"} & set(h)
    # the closest of the two fixes that opened each: 1430 m at 180 s, 50 m at 300 s
    assert [h["distance_m"] for h in heard] == [1430, 50]
    with pytest.raises(queue.Empty):
        alerts_heard.get(timeout=1)

    # only supervisors and the named officer see the protected person; each read audited
    api, tokens = world["api"], world["tokens"]

    def where(token: str) -> httpx.Response:
        return httpx.get(
            f"{api.url}/v1/victims/VIC-1/position",
            params={"at": at(300).isoformat()},
            headers={"Authorization": f"Bearer {token}"},
        )

    for who in ("chief", "named"):
        seen = where(tokens[who])
        assert seen.status_code == 200
        assert seen.json()["fix_time"] == at(280).isoformat()
    assert where(tokens["other"]).status_code == 403
    assert where(tokens["probation"]).status_code == 403
    audit = db.fetch("SELECT u.name, a.route FROM audit_log a JOIN users u ON u.id = a.user_id")
    assert sorted((r["name"], r["route"]) for r in audit) == [
        ("nora", "/v1/victims/VIC-1/position"),
        ("sam", "/v1/victims/VIC-1/position"),
    ]

    # the episodes, to the same few: who came how near and when, never where
    def episodes(token: str, start: float, end: float) -> httpx.Response:
        return httpx.get(
            f"{api.url}/v1/victims/VIC-1/episodes",
            params={"from": at(start).isoformat(), "to": at(end).isoformat()},
            headers={"Authorization": f"Bearer {token}"},
        )

    seen = episodes(tokens["named"], 0, 600)
    assert seen.status_code == 200
    v1 = world["ids"]["IOM-V1"]
    assert [
        (e["subject_id"], e["subject_ref"], e["stage"], e["entered_at"], e["left_at"])
        for e in seen.json()["episodes"]
    ] == [
        (v1, "IOM-V1", "warning", at(150).isoformat(), at(510).isoformat()),
        (v1, "IOM-V1", "breach", at(270).isoformat(), at(390).isoformat()),
    ]
    assert [e["closest_m"] for e in seen.json()["episodes"]] == [50.0, 50.0]
    assert not {"lat", "lon", "position"} & set(seen.json()["episodes"][0])
    # a window after the breach ended holds the warning only; before both, nothing
    later = episodes(tokens["chief"], 400, 600).json()["episodes"]
    assert [e["stage"] for e in later] == ["warning"]
    assert episodes(tokens["chief"], 0, 100).json()["episodes"] == []
    assert episodes(tokens["other"], 0, 600).status_code == 403
    too_long = episodes(tokens["chief"], 0, 32 * 86400)
    assert (too_long.status_code, too_long.json()["errors"][0]["field"]) == (422, "to")
    audited = db.fetch(
        "SELECT u.name, a.subject_ids FROM audit_log a JOIN users u ON u.id = a.user_id"
        " WHERE a.route = '/v1/victims/VIC-1/episodes' ORDER BY a.seq"
    )
    assert [(r["name"], r["subject_ids"]) for r in audited] == [
        ("nora", [v1]),
        ("sam", [v1]),
        ("sam", []),
    ]


def test_a_phone_fix_that_contradicts_a_stored_one_is_kept_as_a_dead_letter(
    world: dict[str, Any], db: Database, workers
) -> None:  # type: ignore[no-untyped-def]
    workers()
    sent = [
        grid_fix(at(0), VICTIM0[0], VICTIM0[1]),
        grid_fix(at(0), VICTIM0[0], VICTIM0[1]),  # again: skipped
        grid_fix(at(0), VICTIM0[0] + 400, VICTIM0[1]),  # the same moment, 400 m away
    ]
    send_from_phone(world, sent)
    wait_for(lambda: db.count("dead_letters") == 1)
    assert db.count("victim_fixes") == 1
    row = db.fetch("SELECT topic, payload, reason_code, serial FROM dead_letters")[0]
    assert (row["topic"], row["reason_code"], row["serial"]) == (
        "victims/VIC-1/fixes",
        "conflicting_fix",
        "VIC-1",
    )
    kept = json.loads(row["payload"])
    assert (kept["lat"], kept["lon"], kept["acc"]) == (sent[2]["lat"], sent[2]["lon"], 5.0)
    stored = db.fetch("SELECT lat, lon FROM victim_fixes")[0]
    assert (stored["lat"], stored["lon"]) == (sent[0]["lat"], sent[0]["lon"])


EPISODES = (
    "SELECT s.ref, e.stage, e.entered_at, e.left_at, round(e.closest_m::numeric, 1)::float8,"
    " e.detection FROM victim_episodes e JOIN subjects s ON s.id = e.subject_id"
    " ORDER BY e.entered_at"
)


def test_a_phone_that_sends_its_fixes_late_still_raises_the_approach_as_late(
    world: dict[str, Any],
    db: Database,
    workers,
    publisher: Publisher,
    alerts_heard,  # type: ignore[no-untyped-def]
) -> None:
    """The tags' fixes come first, while the protected person's phone is out of signal:
    nothing to judge them against. When the phone sends its ten minutes at last, the
    approach is found in the stored fixes, at the same moments as live (the first test),
    and raised as `late`."""
    assert link(world, "IOM-V1", world["tokens"]["chief"]).status_code == 201
    assert link(world, "IOM-V2", world["tokens"]["chief"]).status_code == 201
    workers(TORCH_SILENT_AFTER_S="315360000")
    drive(publisher, "VT1", 0)
    drive(publisher, "VT2", 3000)
    wait_for(lambda: db.count("fixes") == 42)
    time.sleep(1)  # checked: against no position of the protected person
    assert db.count("victim_episodes") == 0
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.fetchval(CLOSED) == 2)
    assert [tuple(r) for r in db.fetch(EPISODES)] == [
        ("IOM-V1", "warning", at(150), at(510), 50.0, "late"),
        ("IOM-V1", "breach", at(270), at(390), 50.0, "late"),
    ]
    heard = sorted((alerts_heard.get(timeout=10) for _ in range(2)), key=lambda h: h["type"])
    assert [(h["type"], h["entered_at"], h["distance_m"], h["detection"]) for h in heard] == [
        ("victim_proximity_breach", at(270).isoformat(), 50, "late"),
        ("victim_proximity_warning", at(150).isoformat(), 50, "late"),
    ]
    with pytest.raises(queue.Empty):
        alerts_heard.get(timeout=1)


def test_a_tag_fitted_before_it_was_recorded_is_checked_against_the_protected_person(
    world: dict[str, Any], db: Database, workers, publisher: Publisher
) -> None:  # type: ignore[no-untyped-def]
    """A tag's fixes stored as nobody's, because its fitting was recorded afterwards, are
    judged against the protected person once it is, and the approach raised as `late`."""
    torch_cli("subject", "add", "IOM-V3")
    torch_cli("device", "add", "VT3")
    subject = db.fetchval("SELECT id FROM subjects WHERE ref = 'IOM-V3'")
    world["ids"]["IOM-V3"] = subject
    assert link(world, "IOM-V3", world["tokens"]["chief"]).status_code == 201
    workers(TORCH_SILENT_AFTER_S="315360000", TORCH_SWEEP_MS="200")
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)
    drive(publisher, "VT3", 0)
    wait_for(lambda: db.count("fixes") == 21)
    time.sleep(1)  # checked: as nobody's
    assert db.count("victim_episodes") == 0
    torch_cli("assign", "VT3", "IOM-V3", "--from", (T - timedelta(hours=1)).isoformat())
    wait_for(lambda: db.fetchval(CLOSED) == 2, timeout=10)
    assert [tuple(r) for r in db.fetch(EPISODES)] == [
        ("IOM-V3", "warning", at(150), at(510), 50.0, "late"),
        ("IOM-V3", "breach", at(270), at(390), 50.0, "late"),
    ]
    assert db.fetchval("SELECT count(*) FROM alerts WHERE type LIKE 'victim%'") == 2


def test_a_tags_buffered_fixes_are_judged_in_time_order_and_what_they_hide_raised_late(
    world: dict[str, Any], db: Database, workers, publisher: Publisher
) -> None:  # type: ignore[no-untyped-def]
    """The tag loses the network for four minutes around its closest approach and sends
    those fixes after the later ones. The warning is raised live, once, with its true
    times; the breach in the missing minutes is found in the stored track and raised as
    `late`. (Judged in arrival order, the buffered fixes opened a second warning.)"""
    assert link(world, "IOM-V1", world["tokens"]["chief"]).status_code == 201
    workers(TORCH_SILENT_AFTER_S="315360000")
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)

    def send(times: range) -> None:
        for t in times:
            publisher.send("tags/VT1/fixes", grid_fix(at(t), subject_x(t), VICTIM0[1]))
        publisher.flush()

    send(range(0, 241, 30))
    send(range(480, 601, 30))
    wait_for(lambda: db.fetchval(CLOSED) == 1)
    buffered = [grid_fix(at(t), subject_x(t), VICTIM0[1]) for t in range(270, 451, 30)]
    publisher.send("tags/VT1/fixes", buffered)  # the buffer, as one message
    publisher.flush()
    wait_for(lambda: db.fetchval(CLOSED) == 2)
    time.sleep(1)
    assert [tuple(r) for r in db.fetch(EPISODES)] == [
        ("IOM-V1", "warning", at(150), at(510), 740.0, "live"),  # at 240 s
        ("IOM-V1", "breach", at(270), at(390), 50.0, "late"),
    ]
    alerts = db.fetch("SELECT type, detail->>'detection' AS d FROM alerts ORDER BY occurred_at")
    assert [tuple(r) for r in alerts] == [
        ("victim_proximity_warning", "live"),
        ("victim_proximity_breach", "late"),
    ]


def test_a_link_holds_from_its_start_and_ends_with_its_open_episodes(
    world: dict[str, Any], db: Database, workers, publisher: Publisher
) -> None:  # type: ignore[no-untyped-def]
    """IOM-V1's link holds from 400 s: the approach before it is not judged, the warning
    after it is. IOM-V2's link is ended while its warning and breach are open: both close
    then, and its fixes after the end raise nothing. The ended link is listed with who
    ended it; only its caseload's staff may end it, and only once."""
    api, tokens = world["api"], world["tokens"]
    auth = {"Authorization": f"Bearer {tokens['probation']}"}
    made = link(world, "IOM-V1", tokens["probation"], valid_from=at(400).isoformat())
    assert made.status_code == 201
    first = made.json()
    assert (first["valid_from"], first["created_by"], first["ended_at"]) == (
        at(400).isoformat(),
        "pip",
        None,
    )
    second = link(world, "IOM-V2", tokens["probation"]).json()
    workers(TORCH_SILENT_AFTER_S="315360000")
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)
    drive(publisher, "VT1", 0)
    for t in range(0, 301, 30):  # IOM-V2 on the protected person's path, up to 300 s
        publisher.send("tags/VT2/fixes", grid_fix(at(t), subject_x(t), VICTIM0[1]))
    publisher.flush()
    wait_for(lambda: db.count("victim_episodes") == 3)

    # another team's probation officer cannot see the link to end it
    torch_cli("team", "add", "north", "--force", "herts")
    outsider = {"Authorization": f"Bearer {add_user('oli', 'probation', team='north')}"}
    gone = httpx.delete(f"{api.url}/v1/victim-links/{second['id']}", headers=outsider)
    assert gone.status_code == 404
    ended = httpx.delete(f"{api.url}/v1/victim-links/{second['id']}", headers=auth)
    assert ended.status_code == 200
    ended_at = datetime.fromisoformat(ended.json()["ended_at"])
    assert ended.json()["ended_by"] == "pip"
    again = httpx.delete(f"{api.url}/v1/victim-links/{second['id']}", headers=auth)
    assert (again.status_code, again.json()["detail"]) == (
        409,
        f"victim link {second['id']} has ended already",
    )
    time.sleep(2)  # the worker takes the ended link up within a second
    # after the end, IOM-V2 right beside the protected person: nothing
    after = ended_at.replace(microsecond=0) + timedelta(seconds=1)
    beside = [grid_fix(after + timedelta(seconds=s), *VICTIM0) for s in (0, 30)]
    send_from_phone(world, beside)
    wait_for(lambda: db.count("victim_fixes") == 25)
    publisher.send_all(("tags/VT2/fixes", f) for f in beside)
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 21 + 11 + 2)
    wait_for(lambda: db.fetchval(CLOSED) == 3)
    time.sleep(1)
    # d = 3500 - 11.5 t: IOM-V1's warning from 420 s (1,330 m) to 510 s, never a breach
    assert [tuple(r) for r in db.fetch(EPISODES)] == [
        ("IOM-V2", "warning", at(150), ended_at, 50.0, "live"),  # at 300 s
        ("IOM-V2", "breach", at(270), ended_at, 50.0, "live"),
        ("IOM-V1", "warning", at(420), at(510), 1330.0, "live"),
    ]
    listed = httpx.get(f"{api.url}/v1/subjects/{world['ids']['IOM-V2']}/victim-links", headers=auth)
    assert [
        (x["id"], x["victim_ref"], x["ended_at"], x["ended_by"]) for x in listed.json()["links"]
    ] == [(second["id"], "VIC-1", ended_at.isoformat(), "pip")]
    hidden = httpx.get(
        f"{api.url}/v1/subjects/{world['ids']['IOM-V2']}/victim-links", headers=outsider
    )
    assert hidden.status_code == 404


def test_a_protected_persons_officers_and_phone_change_from_the_command_line(
    world: dict[str, Any], db: Database, workers
) -> None:  # type: ignore[no-untyped-def]
    """Staff change: otto is named and nora is not any more, each at their next request. A
    new phone: its new password works at once and the old one no longer does."""
    api, tokens = world["api"], world["tokens"]

    def where(token: str) -> int:
        seen = httpx.get(
            f"{api.url}/v1/victims/VIC-1/position", headers={"Authorization": f"Bearer {token}"}
        )
        return seen.status_code

    workers()
    send_from_phone(world, [walk(0)])
    wait_for(lambda: db.count("victim_fixes") == 1)
    assert (where(tokens["named"]), where(tokens["other"])) == (200, 403)
    named = torch_cli("victim", "officer", "VIC-1", "otto").stdout
    assert named == "otto is one of the officers of protected person VIC-1\n"
    removed = torch_cli("victim", "officer", "VIC-1", "nora", "--remove").stdout
    assert removed == "nora no longer one of the officers of protected person VIC-1\n"
    assert (where(tokens["named"]), where(tokens["other"])) == (403, 200)
    again = torch_cli("victim", "officer", "VIC-1", "nora", "--remove").stdout
    assert again == "nora was not one of the officers of protected person VIC-1\n"
    unknown = torch_cli("victim", "officer", "VIC-9", "otto", check=False)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no protected person VIC-9")

    out = torch_cli("victim", "credentials", "VIC-1").stdout.splitlines()
    assert out[0] == "new broker password for victim.VIC-1 (the old one no longer works):"
    assert sign_in("victim.VIC-1", world["password"])[1].getName() == "Not authorized"
    client, rc = sign_in("victim.VIC-1", out[-1])
    assert rc.getName() == "Success"
    client.disconnect()
    client.loop_stop()


def test_an_ended_link_still_judges_a_tags_buffer_from_before_its_end(
    world: dict[str, Any], db: Database, workers, publisher: Publisher
) -> None:  # type: ignore[no-untyped-def]
    """The link ends while the tag is out of the network; the buffer it sends afterwards,
    of minutes when the link held, shows the approach, and it is raised."""
    made = link(world, "IOM-V1", world["tokens"]["chief"]).json()
    workers(TORCH_SILENT_AFTER_S="315360000")
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)
    for t in range(0, 121, 30):
        publisher.send("tags/VT1/fixes", grid_fix(at(t), subject_x(t), VICTIM0[1]))
    publisher.flush()
    wait_for(lambda: db.count("fixes") == 5)
    ended = httpx.delete(
        f"{world['api'].url}/v1/victim-links/{made['id']}",
        headers={"Authorization": f"Bearer {world['tokens']['chief']}"},
    )
    assert ended.status_code == 200
    time.sleep(2)  # the worker takes the ended link up within a second
    buffered = [grid_fix(at(t), subject_x(t), VICTIM0[1]) for t in range(150, 601, 30)]
    publisher.send("tags/VT1/fixes", buffered)
    publisher.flush()
    wait_for(lambda: db.fetchval(CLOSED) == 2)
    assert [tuple(r) for r in db.fetch(EPISODES)] == [
        ("IOM-V1", "warning", at(150), at(510), 50.0, "live"),
        ("IOM-V1", "breach", at(270), at(390), 50.0, "live"),
    ]


def test_a_link_binds_no_fix_from_before_it_was_recorded(
    world: dict[str, Any], db: Database, workers, publisher: Publisher
) -> None:  # type: ignore[no-untyped-def]
    """Recorded now with a `valid_from` an hour before the tracks, the link does not judge
    the approach of half an hour ago: a fix is judged by the links recorded at its time, as
    by the zones, whenever it arrives."""
    made = httpx.post(
        f"{world['api'].url}/v1/subjects/{world['ids']['IOM-V1']}/victim-links",
        json={
            "victim_ref": "VIC-1",
            "warning_m": 2000,
            "breach_m": 500,
            "valid_from": (T - timedelta(hours=1)).isoformat(),
        },
        headers={"Authorization": f"Bearer {world['tokens']['chief']}"},
    )
    assert made.status_code == 201
    workers(TORCH_SILENT_AFTER_S="315360000")
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)
    drive(publisher, "VT1", 0)
    wait_for(lambda: db.count("fixes") == 21)
    # a fix of now, 5 km off, checked after the others: they were checked by then
    now = grid_fix(datetime.now(UTC), VICTIM0[0] + 5000, VICTIM0[1])
    publisher.send("tags/VT1/fixes", {**now, "batt": 5})
    publisher.flush()
    wait_for(lambda: db.fetchval("SELECT count(*) FROM alerts WHERE type = 'battery_low'") == 1)
    assert db.count("victim_episodes") == 0


def test_a_buffer_sent_in_two_messages_leaves_the_late_episodes_with_their_true_ends(
    world: dict[str, Any], db: Database, workers, publisher: Publisher
) -> None:  # type: ignore[no-untyped-def]
    """The tag was out of the network from 150 s to 510 s and sends its buffer in two
    messages after its live fixes of 540 s on. With the first part alone, the warning and
    the breach seem to last until those live fixes close them (570 s); the second part
    shows their true ends, 510 s and 390 s, as the first test found them live."""
    assert link(world, "IOM-V1", world["tokens"]["chief"]).status_code == 201
    workers(TORCH_SILENT_AFTER_S="315360000")
    send_from_phone(world, [walk(t) for t in PHONE_TIMES])
    wait_for(lambda: db.count("victim_fixes") == 23)

    def send(times: range) -> None:
        fixes = [grid_fix(at(t), subject_x(t), VICTIM0[1]) for t in times]
        publisher.send("tags/VT1/fixes", fixes)
        publisher.flush()

    send(range(0, 121, 30))
    send(range(540, 601, 30))
    wait_for(lambda: db.count("fixes") == 8)
    send(range(150, 331, 30))  # the first part of the buffer
    wait_for(lambda: db.fetchval(CLOSED) == 2)
    assert [tuple(r)[1:4] for r in db.fetch(EPISODES)] == [
        ("warning", at(150), at(570)),
        ("breach", at(270), at(570)),
    ]
    send(range(360, 511, 30))  # the rest
    wait_for(lambda: db.fetchval("SELECT max(left_at) FROM victim_episodes") == at(510))
    assert [tuple(r) for r in db.fetch(EPISODES)] == [
        ("IOM-V1", "warning", at(150), at(510), 50.0, "late"),
        ("IOM-V1", "breach", at(270), at(390), 50.0, "late"),
    ]
    assert db.fetchval("SELECT count(*) FROM alerts WHERE type LIKE 'victim%'") == 2
