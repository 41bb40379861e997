"""Fixes published over the real broker reach PostGIS exactly once; bad input is kept."""

from __future__ import annotations

import json
import time

from tests.factories import at, fix, fixes_topic
from tests.services import wait_for


def stored(db, n: int) -> None:  # type: ignore[no-untyped-def]
    wait_for(lambda: db.count("fixes") >= n)


def test_fix_is_stored_with_its_fields_and_grid_position(db, workers, publisher, device):  # type: ignore[no-untyped-def]
    device_id = device("T1")
    workers()
    publisher.send(
        fixes_topic(),
        fix(
            0,
            lat=51.7527,
            lon=-0.3394,
            acc=12.5,
            speed=1.5,
            heading=90,
            batt=77,
            src="wifi",
            strap="ok",
        ),
    )
    publisher.flush()
    stored(db, 1)
    row = db.fetch(
        "SELECT device_id, fix_time, lat, lon, acc, speed, heading, batt, src::text,"
        " strap::text, ST_X(position) AS e, ST_Y(position) AS n, ST_SRID(position)"
        " AS srid FROM fixes"
    )[0]
    assert (row["device_id"], row["fix_time"], row["lat"], row["lon"]) == (
        device_id,
        at(0),
        51.7527,
        -0.3394,
    )
    assert (row["acc"], row["speed"], row["heading"], row["batt"]) == (12.5, 1.5, 90.0, 77)
    assert (row["src"], row["strap"], row["srid"]) == ("wifi", "ok", 27700)
    # St Albans city centre on the British National Grid, as PROJ computes it.
    assert (round(row["e"], 2), round(row["n"], 2)) == (514724.58, 207305.13)


def test_duplicates_are_stored_once_and_late_fixes_are_kept(db, workers, publisher, device):  # type: ignore[no-untyped-def]
    device("T1")
    workers()
    publisher.send(fixes_topic(), [fix(120), fix(60)])
    publisher.send(fixes_topic(), fix(60))  # delivered again
    publisher.send(fixes_topic(), [fix(120), fix(-6 * 3600)])  # again, and six hours late
    publisher.flush()
    wait_for(lambda: db.fetchval("SELECT count(*) FROM fixes WHERE fix_time = $1", at(-6 * 3600)))
    times = [r["fix_time"] for r in db.fetch("SELECT fix_time FROM fixes ORDER BY fix_time")]
    assert times == [at(-6 * 3600), at(60), at(120)]
    time.sleep(1.5)  # device_state is written once a second, after the late fix too
    state = db.fetch("SELECT last_fix_at FROM device_state")
    assert [s["last_fix_at"] for s in state] == [at(120)]  # a late fix does not move it back


def test_a_fix_that_contradicts_a_stored_one_is_kept_as_a_dead_letter(
    db, workers, publisher, device
):  # type: ignore[no-untyped-def]
    """Two positions for one tag at one moment is not a second delivery: the first stays,
    and the other is kept with the reason, never silently dropped."""
    device("T1")
    workers()
    publisher.send(fixes_topic(), fix(60, lat=51.75, batt=80))
    publisher.flush()
    stored(db, 1)
    publisher.send(fixes_topic(), fix(60, lat=51.75, batt=80))  # the same fix again: skipped
    # in one array: a new fix, and another at 60 s somewhere else
    publisher.send(fixes_topic(), [fix(120), fix(60, lat=51.76, batt=80)])
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 1 and db.count("fixes") == 2)
    time.sleep(0.5)  # and no further letter, for the second delivery
    rows = db.fetch(
        "SELECT topic, payload, reason_code, reason, item_index, serial FROM dead_letters"
    )
    assert [(r["topic"], r["reason_code"], r["item_index"], r["serial"]) for r in rows] == [
        ("tags/T1/fixes", "conflicting_fix", None, "T1")
    ]
    assert rows[0]["reason"] == (
        f"another fix of T1 at {at(60).isoformat().replace('+00:00', 'Z')} is stored, with a"
        " different position or reading; this one is kept here, not stored"
    )
    assert json.loads(rows[0]["payload"]) == {
        "ts": at(60).isoformat().replace("+00:00", "Z"),
        "lat": 51.76,
        "lon": -0.34,
        "acc": 8.0,
        "batt": 80,
        "src": "gps",
    }
    kept = db.fetch("SELECT fix_time, lat FROM fixes ORDER BY fix_time")
    assert [(r["fix_time"], r["lat"]) for r in kept] == [(at(60), 51.75), (at(120), 51.75)]


def test_bad_items_go_to_dead_letters_and_good_neighbours_are_stored(
    db, workers, publisher, device
):  # type: ignore[no-untyped-def]
    device("T1")
    workers()
    payload = json.dumps([fix(0), {"lat": 51.7, "lon": -0.3}, fix(60, lat=91), fix(120)])
    publisher.send(fixes_topic(), payload)
    publisher.send(fixes_topic(), b"{not json")
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 3 and db.count("fixes") == 2)
    rows = db.fetch(
        "SELECT topic, payload, reason_code, reason, item_index, serial"
        " FROM dead_letters ORDER BY id"
    )
    got = [(r["topic"], r["reason_code"], r["reason"], r["item_index"], r["serial"]) for r in rows]
    assert got[0] == ("tags/T1/fixes", "missing_field", "ts is required", 1, "T1")
    assert got[1] == ("tags/T1/fixes", "out_of_range", "lat 91 is out of range -90..90", 2, "T1")
    assert got[2][:2] == ("tags/T1/fixes", "bad_json")
    assert bytes(rows[0]["payload"]) == payload.encode()  # the raw bytes, as received
    assert bytes(rows[2]["payload"]) == b"{not json"
    times = [r["fix_time"] for r in db.fetch("SELECT fix_time FROM fixes ORDER BY fix_time")]
    assert times == [at(0), at(120)]


def test_unknown_serial_is_kept_and_replayed_once_registered(db, workers, publisher, device):  # type: ignore[no-untyped-def]
    from tests.services import torch_cli

    workers()
    publisher.send(fixes_topic("NEW1"), [fix(0), fix(60)])
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 1)
    assert db.fetchval("SELECT reason_code FROM dead_letters") == "unknown_serial"
    assert torch_cli("deadletters", "replay").stdout.startswith("replayed: 0 fixes stored")
    device("NEW1")
    out = torch_cli("deadletters", "replay").stdout
    assert out == "replayed: 2 fixes stored, 0 duplicates, 0 events, 0 new dead letters\n"
    assert db.count("fixes") == 2
    assert db.fetchval("SELECT replayed_at IS NOT NULL FROM dead_letters")
    again = torch_cli("deadletters", "replay").stdout  # a letter is replayed once only
    assert again.startswith("replayed: 0 fixes stored")


def test_events_are_stored_once_and_update_last_seen(db, workers, publisher, device):  # type: ignore[no-untyped-def]
    device_id = device("T1")
    workers()
    event = {"ts": at(0).isoformat(), "type": "strap_open"}
    publisher.send("tags/T1/events", event)
    publisher.send("tags/T1/events", event)
    publisher.send("tags/T1/events", {"ts": at(5).isoformat(), "type": "unplugged"})
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 1)
    wait_for(lambda: db.count("device_events") == 1)
    row = db.fetch("SELECT device_id, event_time, type::text FROM device_events")[0]
    assert tuple(row) == (device_id, at(0), "strap_open")
    assert db.fetchval("SELECT reason_code FROM dead_letters") == "bad_value"
    assert db.fetchval("SELECT last_seen_at IS NOT NULL FROM device_state")


def test_owntracks_location_is_a_fix_of_user_device(db, workers, publisher, device):  # type: ignore[no-untyped-def]
    device("alice-phone")
    workers()
    publisher.send(
        "owntracks/alice/phone",
        {
            "_type": "location",
            "tst": int(at(0).timestamp()),
            "lat": 51.9,
            "lon": -0.2,
            "acc": 15,
            "vel": 36,
            "cog": 270,
            "batt": 55,
        },
    )
    publisher.flush()
    stored(db, 1)
    row = db.fetch("SELECT fix_time, lat, lon, acc, speed, heading, batt FROM fixes")[0]
    assert tuple(row) == (at(0), 51.9, -0.2, 15.0, 10.0, 270.0, 55)


def test_device_state_holds_the_newest_fix_within_a_second(db, workers, publisher, device):  # type: ignore[no-untyped-def]
    device_id = device("T1")
    workers()
    publisher.send(fixes_topic(), [fix(0, batt=90), fix(60, lat=51.76, batt=88, strap="ok")])
    publisher.send(fixes_topic(), fix(30, batt=89, strap="open"))  # older than the newest
    publisher.flush()
    row = wait_for(
        lambda: db.fetch(
            "SELECT device_id, last_fix_at, last_lat, last_lon, last_acc, battery, strap::text"
            " FROM device_state"
        ),
        timeout=5,
    )[0]
    assert tuple(row) == (device_id, at(60), 51.76, -0.34, 8.0, 88, "ok")


def test_a_message_the_database_refuses_is_dead_lettered_and_its_neighbours_stored(
    db, workers, publisher, device
):  # type: ignore[no-untyped-def]
    """A batch the database refuses is split until only the offending message is left."""
    device("T1")
    db.execute("ALTER TABLE fixes ADD CONSTRAINT refuse_acc_1234 CHECK (acc IS DISTINCT FROM 1234)")
    try:
        workers(TORCH_FLUSH_INTERVAL_MS="1000")  # the three messages share one batch
        for payload in (fix(0), fix(60, acc=1234), fix(120)):
            publisher.send(fixes_topic(), payload)
        publisher.flush()
        wait_for(lambda: db.count("dead_letters") == 1 and db.count("fixes") == 2)
        row = db.fetch("SELECT reason_code, reason, payload FROM dead_letters")[0]
        assert row["reason_code"] == "store_error"
        assert row["reason"].startswith("the database refused it: new row for relation")
        assert "refuse_acc_1234" in row["reason"]
        assert json.loads(bytes(row["payload"]))["acc"] == 1234
        times = [r["fix_time"] for r in db.fetch("SELECT fix_time FROM fixes ORDER BY fix_time")]
        assert times == [at(0), at(120)]
    finally:
        db.execute("ALTER TABLE fixes DROP CONSTRAINT refuse_acc_1234")


def test_a_payload_nested_too_deeply_is_dead_lettered_and_the_worker_goes_on(
    db, workers, publisher, device
):  # type: ignore[no-untyped-def]
    """JSON nested thousands deep (a firmware bug, or someone's test of us) exhausts Python's
    recursion in the parser: it is a dead letter like any other, and the fixes around it are
    stored by the same worker."""
    device("T1")
    worker = workers()
    publisher.send(fixes_topic(), json.dumps([fix(0)]))
    publisher.send(fixes_topic(), b"[" * 5000 + b"]" * 5000)
    publisher.send(fixes_topic(), b'{"a": ' * 5000 + b"1" + b"}" * 5000)
    publisher.send(fixes_topic(), json.dumps([fix(60)]))
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 2 and db.count("fixes") == 2)
    rows = db.fetch("SELECT reason_code, reason FROM dead_letters ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("bad_json", "not JSON we accept: nested too deeply"),
        ("bad_json", "not JSON we accept: nested too deeply"),
    ]
    assert worker.proc.poll() is None
