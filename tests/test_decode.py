"""The decoder against a golden set of raw payloads, good and bad."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torch.decode import Limits, decode
from torch.fixes import DeviceEvent, EventType, FixReport, RejectCode, Source, Strap

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = Limits()
T = "2026-11-23T11:59:00Z"
T_UTC = datetime(2026, 11, 23, 11, 59, tzinfo=UTC)


def reasons(topic: str, payload: bytes) -> list[tuple[RejectCode, str, int | None]]:
    return [
        (r.code, r.reason, r.index) for r in decode(topic, payload, RECEIVED, LIMITS).rejections
    ]


def test_full_fix() -> None:
    payload = (
        b'{"ts":"2026-11-23T12:59:00+01:00","lat":51.7527,"lon":-0.3394,"acc":6.5,'
        b'"speed":1.4,"heading":271,"batt":64,"src":"cell","strap":"open","extra":1}'
    )
    out = decode("tags/HT-0001/fixes", payload, RECEIVED, LIMITS)
    assert out.rejections == []
    assert out.fixes == [
        FixReport("HT-0001", T_UTC, 51.7527, -0.3394, 6.5, 1.4, 271.0, 64, Source.CELL, Strap.OPEN)
    ]


def test_minimal_fix_defaults_to_gps() -> None:
    out = decode(
        "tags/T1/fixes", json.dumps({"ts": T, "lat": 51.9, "lon": 0.1}).encode(), RECEIVED, LIMITS
    )
    assert out.fixes == [FixReport("T1", T_UTC, 51.9, 0.1)]


def test_array_keeps_good_items_beside_bad_ones() -> None:
    payload = json.dumps(
        [
            {"ts": T, "lat": 51.7, "lon": -0.3},
            {"ts": T, "lat": 51.7},
            "nonsense",
            {"ts": "2026-11-23T11:00:00Z", "lat": 51.8, "lon": -0.2},
        ]
    ).encode()
    out = decode("tags/T1/fixes", payload, RECEIVED, LIMITS)
    assert [f.lat for f in out.fixes] == [51.7, 51.8]
    assert [(r.code, r.index, r.serial) for r in out.rejections] == [
        (RejectCode.MISSING_FIELD, 1, "T1"),
        (RejectCode.BAD_SHAPE, 2, "T1"),
    ]


GOLDEN_BAD = [
    # (topic, payload, code, reason, index)
    ("tags/T1/fixes", b"{oops", RejectCode.BAD_JSON, None, None),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":NaN,"lon":0}',
        RejectCode.BAD_JSON,
        None,
        None,
    ),
    ("tags/T1/fixes", b"\xff\xfe", RejectCode.BAD_JSON, None, None),
    ("tags/T1/fixes", b"[]", RejectCode.BAD_SHAPE, "empty array", None),
    ("tags/T1/fixes", b"42", RejectCode.BAD_SHAPE, "expected a JSON object, got int", None),
    ("tags/T1/fixes", b'{"lat":51,"lon":0}', RejectCode.MISSING_FIELD, "ts is required", None),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lon":0}',
        RejectCode.MISSING_FIELD,
        "lat is required",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"2026-11-23T11:59:00","lat":51,"lon":0}',
        RejectCode.BAD_VALUE,
        "ts '2026-11-23T11:59:00' needs a date, a time and an offset",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"yesterday","lat":51,"lon":0}',
        RejectCode.BAD_VALUE,
        "ts 'yesterday' is not RFC 3339",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":1700000000,"lat":51,"lon":0}',
        RejectCode.BAD_VALUE,
        "ts 1700000000 is not an RFC 3339 string",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"2026-11-23T12:05:01Z","lat":51,"lon":0}',
        RejectCode.FUTURE_TS,
        "ts 2026-11-23T12:05:01+00:00 is 301 s after receipt (limit 300 s)",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"2024-01-01T00:00:00Z","lat":51,"lon":0}',
        RejectCode.STALE_TS,
        "ts 2024-01-01T00:00:00+00:00 is older than 400 days",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":"51.7","lon":0}',
        RejectCode.BAD_VALUE,
        "lat '51.7' is not a number",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":true,"lon":0}',
        RejectCode.BAD_VALUE,
        "lat True is not a number",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":-91,"lon":0}',
        RejectCode.OUT_OF_RANGE,
        "lat -91 is out of range -90..90",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":181}',
        RejectCode.OUT_OF_RANGE,
        "lon 181 is out of range -180..180",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":40.7,"lon":-74}',
        RejectCode.OUTSIDE_AREA,
        "position 40.7, -74.0 is outside the service area (lat 49.75..61.0, lon -9.0..2.0)",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"acc":0}',
        RejectCode.OUT_OF_RANGE,
        "acc 0 is out of range 0 (exclusive)..50000",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"acc":-3}',
        RejectCode.OUT_OF_RANGE,
        "acc -3 is out of range 0 (exclusive)..50000",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"batt":101}',
        RejectCode.OUT_OF_RANGE,
        "batt 101 is out of range 0..100",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"batt":50.5}',
        RejectCode.BAD_VALUE,
        "batt 50.5 is not a whole percentage",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"speed":200}',
        RejectCode.OUT_OF_RANGE,
        "speed 200 is out of range 0..150",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"heading":361}',
        RejectCode.OUT_OF_RANGE,
        "heading 361 is out of range 0..360",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"src":"glonass"}',
        RejectCode.BAD_VALUE,
        "src 'glonass' is not one of gps, wifi, cell",
        None,
    ),
    (
        "tags/T1/fixes",
        b'{"ts":"' + T.encode() + b'","lat":51,"lon":0,"strap":"cut"}',
        RejectCode.BAD_VALUE,
        "strap 'cut' is not one of ok, open",
        None,
    ),
    (
        "tags/T1/events",
        b'{"ts":"' + T.encode() + b'"}',
        RejectCode.MISSING_FIELD,
        "type is required",
        None,
    ),
    (
        "tags/T1/position",
        b"{}",
        RejectCode.BAD_TOPIC,
        "topic 'tags/T1/position' is not part of the contract",
        None,
    ),
    (
        "tags/bad serial!/fixes",
        b"{}",
        RejectCode.BAD_TOPIC,
        "serial 'bad serial!' is not 1-64 of A-Z a-z 0-9 . _ -",
        None,
    ),
    (
        "owntracks/u/d",
        b'{"_type":"waypoint"}',
        RejectCode.UNSUPPORTED,
        "OwnTracks _type 'waypoint' is not a location",
        None,
    ),
    (
        "owntracks/u/d",
        b'{"_type":"location","tst":"now","lat":51,"lon":0}',
        RejectCode.BAD_VALUE,
        "tst 'now' is not a Unix time in seconds",
        None,
    ),
]


@pytest.mark.parametrize(("topic", "payload", "code", "reason", "index"), GOLDEN_BAD)
def test_golden_bad_payloads(
    topic: str, payload: bytes, code: RejectCode, reason: str | None, index: int | None
) -> None:
    out = decode(topic, payload, RECEIVED, LIMITS)
    assert out.fixes == [] and out.events == []
    assert [(r.code, r.index) for r in out.rejections] == [(code, index)]
    if reason is not None:
        assert out.rejections[0].reason == reason


def test_oversized_payload_is_rejected_before_parsing() -> None:
    small = Limits(max_payload_bytes=100)
    out = decode("tags/T1/fixes", b" " * 101, RECEIVED, small)
    assert [(r.code, r.reason) for r in out.rejections] == [
        (RejectCode.TOO_LARGE, "payload of 101 bytes exceeds 100")
    ]


def test_event() -> None:
    out = decode(
        "tags/T1/events", b'{"ts":"' + T.encode() + b'","type":"battery_low"}', RECEIVED, LIMITS
    )
    assert out.events == [DeviceEvent("T1", T_UTC, EventType.BATTERY_LOW)]


def test_owntracks_location_maps_units_and_serial() -> None:
    payload = json.dumps(
        {
            "_type": "location",
            "tst": int(T_UTC.timestamp()),
            "lat": 51.65,
            "lon": -0.39,
            "acc": 12,
            "vel": 18,
            "cog": 45,
            "batt": 80,
        }
    ).encode()
    out = decode("owntracks/alice/phone", payload, RECEIVED, LIMITS)
    assert out.fixes == [FixReport("alice-phone", T_UTC, 51.65, -0.39, 12.0, 5.0, 45.0, 80)]


def test_a_protected_persons_fix_comes_as_a_tag_fix_or_an_owntracks_location() -> None:
    phone = json.dumps(
        {"_type": "location", "tst": int(T_UTC.timestamp()), "lat": 51.65, "lon": -0.39, "acc": 9}
    ).encode()
    out = decode("victims/VIC-1/fixes", phone, RECEIVED, LIMITS)
    assert (out.victim, out.serial, out.rejections) == (True, "VIC-1", [])
    assert out.fixes == [FixReport("VIC-1", T_UTC, 51.65, -0.39, 9.0)]
    tag = json.dumps([{"ts": T_UTC.isoformat(), "lat": 51.65, "lon": -0.39}, {"lat": 51, "lon": 0}])
    out = decode("victims/VIC-1/fixes", tag.encode(), RECEIVED, LIMITS)
    assert [f.lat for f in out.fixes] == [51.65]
    assert [(r.code, r.index) for r in out.rejections] == [(RejectCode.MISSING_FIELD, 1)]
    assert decode("victims/VIC-1/events", tag.encode(), RECEIVED, LIMITS).rejections[0].code == (
        RejectCode.BAD_TOPIC
    )


def test_five_minutes_ahead_is_accepted_one_second_more_is_not() -> None:
    edge = (RECEIVED + timedelta(minutes=5)).isoformat()
    out = decode(
        "tags/T1/fixes", json.dumps({"ts": edge, "lat": 51, "lon": 0}).encode(), RECEIVED, LIMITS
    )
    assert len(out.fixes) == 1 and out.rejections == []


lats = st.floats(49.75, 61.0, allow_nan=False)
lons = st.floats(-9.0, 2.0, allow_nan=False)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))
seconds_before = st.integers(0, 399 * 86400)


@given(
    lat=lats,
    lon=lons,
    offset=offsets,
    before=seconds_before,
    acc=st.floats(0.1, 50_000),
    batt=st.integers(0, 100),
)
def test_any_valid_fix_round_trips(
    lat: float, lon: float, offset: timedelta, before: int, acc: float, batt: int
) -> None:
    from datetime import timezone

    when = RECEIVED - timedelta(seconds=before)
    ts = when.astimezone(timezone(offset)).isoformat()
    payload = json.dumps({"ts": ts, "lat": lat, "lon": lon, "acc": acc, "batt": batt}).encode()
    out = decode("tags/T1/fixes", payload, RECEIVED, LIMITS)
    assert out.rejections == []
    assert out.fixes == [FixReport("T1", when, lat, lon, acc, None, None, batt)]


@pytest.mark.parametrize(
    "topic", ["tags/HT-0001/fixes", "tags/HT-0001/events", "owntracks/jo/phone", "victims/V1/fixes"]
)
@pytest.mark.parametrize(
    "nested", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000]
)
def test_json_nested_too_deeply_for_the_parser_is_a_rejection(topic: str, nested: bytes) -> None:
    assert reasons(topic, nested) == [
        (RejectCode.BAD_JSON, "not JSON we accept: nested too deeply", None)
    ]


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_past_the_calendars_ends_is_out_of_range_and_its_neighbours_kept(ts: str) -> None:
    payload = json.dumps(
        [{"ts": ts, "lat": 51.75, "lon": -0.34}, {"ts": T, "lat": 51.75, "lon": -0.34}]
    )
    out = decode("tags/HT-0001/fixes", payload.encode(), RECEIVED, LIMITS)
    assert [(r.code, r.reason, r.index) for r in out.rejections] == [
        (RejectCode.OUT_OF_RANGE, f"ts {ts!r} is not a usable time", 0)
    ]
    assert [f.ts for f in out.fixes] == [T_UTC]
    event = json.dumps({"ts": ts, "type": "strap_open"}).encode()
    assert reasons("tags/HT-0001/events", event) == [
        (RejectCode.OUT_OF_RANGE, f"ts {ts!r} is not a usable time", None)
    ]


def test_an_error_no_check_foresaw_is_a_rejection_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever goes wrong in reading one item, the message is kept as a dead letter and
    the items beside it are read: a message that stopped the worker would stop it again on
    every restart, since the broker delivers it again."""
    from torch import decode as module

    real = module._HANDLERS["events"]

    def broken(item: object, *rest: object) -> None:
        if isinstance(item, dict) and item.get("type") == "power_on":
            raise KeyError("a bug")
        real(item, *rest)  # type: ignore[arg-type]

    monkeypatch.setitem(module._HANDLERS, "events", broken)
    payload = json.dumps([{"ts": T, "type": "power_on"}, {"ts": T, "type": "strap_open"}]).encode()
    out = decode("tags/HT-0001/events", payload, RECEIVED, LIMITS)
    assert [(r.code, r.reason, r.index, r.serial) for r in out.rejections] == [
        (RejectCode.BAD_VALUE, "could not be read: KeyError", 0, "HT-0001")
    ]
    assert out.events == [DeviceEvent("HT-0001", T_UTC, EventType.STRAP_OPEN)]
    assert "a bug" not in caplog.text
    assert "tags/HT-0001/events could not be decoded: KeyError at" in caplog.text
