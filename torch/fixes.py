"""Value types for what tags report: fixes, device events, and rejected input."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

# The times anything in the service may ask about: no tag reported before 2000 (the track
# blocks count from it), and the calendar's ends, year 1 and 9999, have no UTC for every offset.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
SERVICE_TIMES = f"between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"


def in_service_times(t: datetime) -> bool:
    """Whether the aware time t lies from EARLIEST up to LATEST."""
    try:
        return EARLIEST <= t.astimezone(UTC) < LATEST
    except OverflowError:
        return False


def service_time(text: str) -> datetime:
    """An RFC 3339 time with an offset, in the service's times, as UTC: what people type on
    the command line and in crime CSVs. ValueError says what is wrong with it."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} needs an offset, e.g. 2026-11-23T01:00:00Z")
    if not in_service_times(value):
        raise ValueError(f"{text!r} must lie {SERVICE_TIMES}")
    return value.astimezone(UTC)


def rfc3339(t: datetime | None) -> str | None:
    """A time as RFC 3339, as answers give it; None (an open end) stays None."""
    return None if t is None else t.isoformat()


class Source(StrEnum):
    GPS = "gps"
    WIFI = "wifi"
    CELL = "cell"


class Strap(StrEnum):
    OK = "ok"
    OPEN = "open"


class EventType(StrEnum):
    STRAP_OPEN = "strap_open"
    STRAP_CLOSED = "strap_closed"
    SHELL_OPEN = "shell_open"
    CHARGER_ON = "charger_on"
    CHARGER_OFF = "charger_off"
    BATTERY_LOW = "battery_low"
    POWER_ON = "power_on"


class FixReport(NamedTuple):
    """One position reading as a tag reported it (WGS84), not yet tied to a subject.

    A named tuple rather than a dataclass: the ingest path makes tens of
    thousands a second.
    """

    serial: str
    ts: datetime  # time of the fix, timezone-aware UTC
    lat: float
    lon: float
    acc: float | None = None  # horizontal accuracy, metres
    speed: float | None = None  # m/s
    heading: float | None = None  # degrees from north
    batt: int | None = None  # percent
    src: Source = Source.GPS
    strap: Strap | None = None


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    serial: str
    ts: datetime
    type: EventType


class RejectCode(StrEnum):
    """Why a message, or one item of an array, was kept as a dead letter."""

    BAD_TOPIC = "bad_topic"
    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    BAD_SHAPE = "bad_shape"
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"
    OUT_OF_RANGE = "out_of_range"
    OUTSIDE_AREA = "outside_area"
    FUTURE_TS = "future_ts"
    STALE_TS = "stale_ts"
    UNSUPPORTED = "unsupported"
    UNKNOWN_SERIAL = "unknown_serial"
    STORE_ERROR = "store_error"
    CONFLICTING_FIX = "conflicting_fix"  # the device has another at that time, saying otherwise


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode
    reason: str  # says what is wrong, for the people reading the dead letters
    index: int | None = None  # position in a JSON array, None for the whole message
    serial: str | None = None


@dataclass(slots=True)
class Decoded:
    """What one MQTT message held: fixes, events and the parts that were rejected."""

    serial: str | None  # the tag the topic names; None when the topic is not ours
    fixes: list[FixReport]
    events: list[DeviceEvent]
    rejections: list[Rejection]
    victim: bool = False  # victims/{ref}/fixes: `serial` is a protected person's reference
