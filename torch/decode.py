"""Decode and validate MQTT payloads into fixes and events (see README: MQTT contract).

Pure functions: no I/O. A bad item of an array is rejected on its own; the good
items beside it are kept.
"""

from __future__ import annotations

import json
import logging
import math
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from torch.fixes import (
    Decoded,
    DeviceEvent,
    EventType,
    FixReport,
    RejectCode,
    Rejection,
    Source,
    Strap,
)

log = logging.getLogger("torch.ingest")

SERIAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
OWNTRACKS_MS_PER_KMH = 1 / 3.6
E = TypeVar("E", bound=StrEnum)


class Invalid(Exception):
    def __init__(self, code: RejectCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    """What the decoder accepts; built from Settings by the ingest worker."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=400)
    max_payload_bytes: int = 1_048_576
    area: tuple[float, float, float, float] = (-9.0, 49.75, 2.0, 61.0)  # W, S, E, N


# Range of each numeric field: (low, high, low inclusive).
RANGES: dict[str, tuple[float, float, bool]] = {
    "lat": (-90.0, 90.0, True),
    "lon": (-180.0, 180.0, True),
    "acc": (0.0, 50_000.0, False),
    "speed": (0.0, 150.0, True),
    "heading": (0.0, 360.0, True),
    "batt": (0.0, 100.0, True),
    "vel": (0.0, 540.0, True),  # OwnTracks speed, km/h
}


def decode(topic: str, payload: bytes, received_at: datetime, limits: Limits) -> Decoded:
    """Decode one MQTT message. Never raises on bad input: it reports rejections. An error
    no check foresaw is a rejection too (and logged), so that one message can never stop
    the worker, which would meet it again on every restart."""
    out = Decoded(None, [], [], [])
    try:
        kind, serial = _route(topic)
        out.serial = serial
        out.victim = kind == "victim"
        if kind == "fixes" and _fast_fixes(payload, serial, received_at, limits, out):
            return out
        body = _parse_json(payload, limits)
    except Invalid as bad:
        out.rejections.append(Rejection(bad.code, bad.reason, serial=out.serial))
        return out
    except Exception as err:
        out.fixes.clear()
        out.rejections.append(_unforeseen(err, topic, None, out.serial))
        return out
    handler = _HANDLERS[kind]
    items = body if isinstance(body, list) else [body]
    index_of = (lambda i: i) if isinstance(body, list) else (lambda i: None)
    if isinstance(body, list) and not body:
        out.rejections.append(Rejection(RejectCode.BAD_SHAPE, "empty array", serial=serial))
    for i, item in enumerate(items):
        try:
            handler(item, serial, received_at, limits, out)
        except Invalid as bad:
            out.rejections.append(Rejection(bad.code, bad.reason, index_of(i), serial))
        except Exception as err:
            out.rejections.append(_unforeseen(err, topic, index_of(i), serial))
    return out


def _unforeseen(err: Exception, topic: str, index: int | None, serial: str | None) -> Rejection:
    """A rejection for an error no check foresaw, logged with where it was raised: not its
    message, nor the payload, either of which may hold a position."""
    where = traceback.extract_tb(err.__traceback__)[-1]
    log.error(
        "a message on %s could not be decoded: %s at %s:%s in %s (kept as a dead letter)",
        topic,
        type(err).__name__,
        where.filename,
        where.lineno,
        where.name,
    )
    reason = f"could not be read: {type(err).__name__}"
    return Rejection(RejectCode.BAD_VALUE, reason, index, serial)


class _Fix(msgspec.Struct):
    """The fix contract for the fast path; the limits are those of RANGES."""

    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    lat: Annotated[float, msgspec.Meta(ge=RANGES["lat"][0], le=RANGES["lat"][1])]
    lon: Annotated[float, msgspec.Meta(ge=RANGES["lon"][0], le=RANGES["lon"][1])]
    acc: Annotated[float, msgspec.Meta(gt=RANGES["acc"][0], le=RANGES["acc"][1])] | None = None
    speed: Annotated[float, msgspec.Meta(ge=RANGES["speed"][0], le=RANGES["speed"][1])] | None = (
        None
    )
    heading: (
        Annotated[float, msgspec.Meta(ge=RANGES["heading"][0], le=RANGES["heading"][1])] | None
    ) = None
    batt: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    src: Literal["gps", "wifi", "cell"] = "gps"
    strap: Literal["ok", "open"] | None = None


_FAST = msgspec.json.Decoder(list[_Fix] | _Fix)
_SOURCES = {s.value: s for s in Source}
_STRAPS = {s.value: s for s in Strap}


def _fast_fixes(
    payload: bytes, serial: str, received_at: datetime, limits: Limits, out: Decoded
) -> bool:
    """Decode a payload of well-formed fixes in one pass of C code.

    Returns False, having added nothing, for anything unusual: the careful
    path then finds and explains each bad item. So both paths accept exactly
    the same fixes, and this one only makes the common case fast.
    """
    if len(payload) > limits.max_payload_bytes:
        return False
    try:
        body = _FAST.decode(payload)
    except (msgspec.DecodeError, RecursionError):  # not JSON, not the contract, too deep
        return False
    items = body if isinstance(body, list) else [body]
    west, south, east, north = limits.area
    earliest = received_at - limits.max_age
    latest = received_at + limits.max_future
    fixes = []
    for f in items:
        try:
            ts = f.ts.astimezone(UTC)
        except OverflowError:  # the careful path explains it
            return False
        if not (earliest <= ts <= latest and west <= f.lon <= east and south <= f.lat <= north):
            return False
        fixes.append(
            FixReport(
                serial,
                ts,
                f.lat,
                f.lon,
                f.acc,
                f.speed,
                f.heading,
                f.batt,
                _SOURCES[f.src],
                None if f.strap is None else _STRAPS[f.strap],
            )
        )
    if not fixes:
        return False
    out.fixes.extend(fixes)
    return True


@lru_cache(maxsize=65_536)
def _route(topic: str) -> tuple[str, str]:
    """(kind, serial) of a topic; a fleet has few topics, so the answers are kept."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "tags" and parts[2] in ("fixes", "events"):
        return parts[2], _serial(parts[1])
    if len(parts) == 3 and parts[0] == "victims" and parts[2] == "fixes":
        return "victim", _serial(parts[1])
    if len(parts) == 3 and parts[0] == "owntracks":
        return "owntracks", _serial(f"{parts[1]}-{parts[2]}")
    raise Invalid(RejectCode.BAD_TOPIC, f"topic {'/'.join(parts)!r} is not part of the contract")


def topic_serial(topic: str) -> str | None:
    """The serial a topic of the contract names, or None for a topic outside it."""
    try:
        return _route(topic)[1]
    except Invalid:
        return None


def _serial(serial: str) -> str:
    if not SERIAL_RE.match(serial):
        raise Invalid(RejectCode.BAD_TOPIC, f"serial {serial!r} is not 1-64 of A-Z a-z 0-9 . _ -")
    return serial


def _parse_json(payload: bytes, limits: Limits) -> Any:
    if len(payload) > limits.max_payload_bytes:
        raise Invalid(
            RejectCode.TOO_LARGE,
            f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}",
        )
    try:
        return json.loads(payload, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise Invalid(RejectCode.BAD_JSON, f"not JSON: {err}") from None
    except RecursionError:  # arrays or objects nested about a thousand deep
        raise Invalid(RejectCode.BAD_JSON, "not JSON we accept: nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _fix(item: Any, serial: str, received_at: datetime, limits: Limits, out: Decoded) -> None:
    obj = _object(item)
    ts = _timestamp(_required(obj, "ts"), received_at, limits)
    lat, lon = _position(obj, limits)
    out.fixes.append(
        FixReport(
            serial=serial,
            ts=ts,
            lat=lat,
            lon=lon,
            acc=_optional_number(obj, "acc"),
            speed=_optional_number(obj, "speed"),
            heading=_optional_number(obj, "heading"),
            batt=_optional_percent(obj, "batt"),
            src=_choice(obj, "src", Source) or Source.GPS,
            strap=_choice(obj, "strap", Strap),
        )
    )


def _event(item: Any, serial: str, received_at: datetime, limits: Limits, out: Decoded) -> None:
    obj = _object(item)
    ts = _timestamp(_required(obj, "ts"), received_at, limits)
    kind = _choice(obj, "type", EventType)
    if kind is None:
        raise Invalid(RejectCode.MISSING_FIELD, "type is required")
    out.events.append(DeviceEvent(serial, ts, kind))


def _owntracks(item: Any, serial: str, received_at: datetime, limits: Limits, out: Decoded) -> None:
    obj = _object(item)
    if obj.get("_type") != "location":
        raise Invalid(
            RejectCode.UNSUPPORTED, f"OwnTracks _type {obj.get('_type')!r} is not a location"
        )
    tst = _required(obj, "tst")
    if isinstance(tst, bool) or not isinstance(tst, int | float) or not math.isfinite(tst):
        raise Invalid(RejectCode.BAD_VALUE, f"tst {tst!r} is not a Unix time in seconds")
    try:
        when = datetime.fromtimestamp(tst, UTC)
    except (OverflowError, OSError, ValueError):
        raise Invalid(RejectCode.OUT_OF_RANGE, f"tst {tst!r} is not a usable time") from None
    lat, lon = _position(obj, limits)
    vel = _optional_number(obj, "vel")
    out.fixes.append(
        FixReport(
            serial=serial,
            ts=_check_time(when, received_at, limits),
            lat=lat,
            lon=lon,
            acc=_optional_number(obj, "acc"),
            speed=None if vel is None else vel * OWNTRACKS_MS_PER_KMH,
            heading=_optional_number(obj, "cog", limit_key="heading"),
            batt=_optional_percent(obj, "batt"),
        )
    )


Handler = Callable[[Any, str, datetime, Limits, Decoded], None]


def _victim(item: Any, serial: str, received_at: datetime, limits: Limits, out: Decoded) -> None:
    """A protected person's fix: the tags' payload, or an OwnTracks location from a phone."""
    if isinstance(item, dict) and "_type" in item:
        _owntracks(item, serial, received_at, limits, out)
    else:
        _fix(item, serial, received_at, limits, out)


_HANDLERS: dict[str, Handler] = {
    "fixes": _fix,
    "events": _event,
    "owntracks": _owntracks,
    "victim": _victim,
}


def _object(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Invalid(RejectCode.BAD_SHAPE, f"expected a JSON object, got {type(item).__name__}")
    return item


def _required(obj: dict[str, Any], name: str) -> Any:
    if obj.get(name) is None:
        raise Invalid(RejectCode.MISSING_FIELD, f"{name} is required")
    return obj[name]


def _timestamp(value: Any, received_at: datetime, limits: Limits) -> datetime:
    if not isinstance(value, str):
        raise Invalid(RejectCode.BAD_VALUE, f"ts {value!r} is not an RFC 3339 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(RejectCode.BAD_VALUE, f"ts {value!r} is not RFC 3339") from None
    if when.tzinfo is None or ("T" not in value.upper() and " " not in value):
        raise Invalid(RejectCode.BAD_VALUE, f"ts {value!r} needs a date, a time and an offset")
    try:
        utc = when.astimezone(UTC)
    except OverflowError:  # year 1 or 9999, offset past the calendar's end
        raise Invalid(RejectCode.OUT_OF_RANGE, f"ts {value!r} is not a usable time") from None
    return _check_time(utc, received_at, limits)


def _check_time(when: datetime, received_at: datetime, limits: Limits) -> datetime:
    if when - received_at > limits.max_future:
        ahead = (when - received_at).total_seconds()
        raise Invalid(
            RejectCode.FUTURE_TS,
            f"ts {when.isoformat()} is {ahead:.0f} s after receipt "
            f"(limit {limits.max_future.total_seconds():.0f} s)",
        )
    if received_at - when > limits.max_age:
        raise Invalid(
            RejectCode.STALE_TS,
            f"ts {when.isoformat()} is older than {limits.max_age.days} days",
        )
    return when


def _position(obj: dict[str, Any], limits: Limits) -> tuple[float, float]:
    lat = _number(obj, "lat", _required(obj, "lat"))
    lon = _number(obj, "lon", _required(obj, "lon"))
    west, south, east, north = limits.area
    if not (west <= lon <= east and south <= lat <= north):
        raise Invalid(
            RejectCode.OUTSIDE_AREA,
            f"position {lat}, {lon} is outside the service area "
            f"(lat {south}..{north}, lon {west}..{east})",
        )
    return lat, lon


def _number(obj: dict[str, Any], name: str, value: Any, limit_key: str | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(RejectCode.BAD_VALUE, f"{name} {value!r} is not a number")
    low, high, low_inclusive = RANGES[limit_key or name]
    if not (low <= value <= high) or (value == low and not low_inclusive):
        bound = "" if low_inclusive else " (exclusive)"
        raise Invalid(
            RejectCode.OUT_OF_RANGE, f"{name} {value} is out of range {low:g}{bound}..{high:g}"
        )
    return float(value)


def _optional_number(obj: dict[str, Any], name: str, limit_key: str | None = None) -> float | None:
    value = obj.get(name)
    return None if value is None else _number(obj, name, value, limit_key)


def _optional_percent(obj: dict[str, Any], name: str) -> int | None:
    value = _optional_number(obj, name, limit_key="batt")
    if value is None:
        return None
    if value != int(value):
        raise Invalid(RejectCode.BAD_VALUE, f"{name} {value} is not a whole percentage")
    return int(value)


def _choice(obj: dict[str, Any], name: str, enum: type[E]) -> E | None:
    value = obj.get(name)
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise Invalid(RejectCode.BAD_VALUE, f"{name} {value!r} is not one of {allowed}") from None
