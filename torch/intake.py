"""Turn decoded MQTT messages into what one ingest transaction stores."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from torch.fixes import Decoded, DeviceEvent, FixReport, RejectCode


class Message(NamedTuple):  # named tuples: the ingest path makes thousands a second
    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    payload: bytes
    code: RejectCode
    reason: str
    item_index: int | None = None
    serial: str | None = None


def conflicting(
    received_at: datetime, topic: str, serial: str, at: datetime, fix: dict[str, Any]
) -> DeadLetter:
    """A fix not stored because one of the same tag (or phone) at the same time `at` is
    stored and says otherwise: a dead letter with the fix as read (`fix`, its fields but
    the time), since the message it came in may hold others that were stored."""
    when = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return DeadLetter(
        received_at,
        topic,
        json.dumps({"ts": when, **fix}).encode(),
        RejectCode.CONFLICTING_FIX,
        f"another fix of {serial} at {when} is stored, with a different position or reading;"
        " this one is kept here, not stored",
        serial=serial,
    )


class VictimFix(NamedTuple):
    victim_id: int
    received_at: datetime
    fix: FixReport


class StoredFix(NamedTuple):
    device_id: int
    received_at: datetime
    fix: FixReport


@dataclass(frozen=True, slots=True)
class StoredEvent:
    device_id: int
    received_at: datetime
    event: DeviceEvent


class DeviceState(NamedTuple):
    """A device's newest fix, and when it was last heard from."""

    device_id: int
    fix: FixReport
    seen: datetime


def merge_newest(states: dict[int, DeviceState], fixes: Iterable[StoredFix]) -> None:
    """Fold fixes into each device's newest state; a late fix never moves it back."""
    for s in fixes:
        held = states.get(s.device_id)
        if held is None:
            states[s.device_id] = DeviceState(s.device_id, s.fix, s.received_at)
        elif s.fix.ts > held.fix.ts or s.received_at > held.seen:
            newest = s.fix if s.fix.ts > held.fix.ts else held.fix
            states[s.device_id] = DeviceState(s.device_id, newest, max(s.received_at, held.seen))


@dataclass(slots=True)
class Batch:
    fixes: list[StoredFix] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    victim_fixes: list[VictimFix] = field(default_factory=list)

    def days(self) -> set[date]:
        """The UTC days the fixes fall on: each needs its partition."""
        return {f.fix.ts.date() for f in self.fixes}


def serials(decoded: Iterable[Decoded]) -> set[str]:
    return {d.serial for d in decoded if d.serial is not None and not d.victim}


def victim_refs(decoded: Iterable[Decoded]) -> set[str]:
    return {d.serial for d in decoded if d.serial is not None and d.victim}


def assemble(
    messages: Iterable[tuple[Message, Decoded]],
    device_ids: Mapping[str, int],
    victim_ids: Mapping[str, int] | None = None,
) -> Batch:
    """Route each decoded message to fixes, events, victims' fixes or dead letters.

    A message from a serial that is not registered is kept whole, so it can be
    replayed once the device is registered; so is one for a protected person not known.
    """
    batch = Batch()
    for msg, dec in messages:
        if dec.victim:
            _victim(batch, msg, dec, victim_ids or {})
            continue
        device_id = device_ids.get(dec.serial) if dec.serial is not None else None
        if dec.serial is not None and device_id is None:
            batch.dead_letters.append(_unknown_serial(msg, dec.serial))
            continue
        for rej in dec.rejections:
            batch.dead_letters.append(
                DeadLetter(
                    msg.received_at,
                    msg.topic,
                    msg.payload,
                    rej.code,
                    rej.reason,
                    rej.index,
                    rej.serial,
                )
            )
        if device_id is not None:
            batch.fixes.extend(StoredFix(device_id, msg.received_at, f) for f in dec.fixes)
            batch.events.extend(StoredEvent(device_id, msg.received_at, e) for e in dec.events)
    return batch


def _victim(batch: Batch, msg: Message, dec: Decoded, victim_ids: Mapping[str, int]) -> None:
    victim_id = victim_ids.get(dec.serial or "")
    if victim_id is None:
        reason = "no protected person is registered with this reference"
        batch.dead_letters.append(
            DeadLetter(
                msg.received_at,
                msg.topic,
                msg.payload,
                RejectCode.UNKNOWN_SERIAL,
                reason,
                None,
                dec.serial,
            )
        )
        return
    for rej in dec.rejections:
        batch.dead_letters.append(
            DeadLetter(msg.received_at, msg.topic, msg.payload, rej.code, rej.reason, rej.index)
        )
    batch.victim_fixes.extend(VictimFix(victim_id, msg.received_at, f) for f in dec.fixes)


def _unknown_serial(msg: Message, serial: str) -> DeadLetter:
    return DeadLetter(
        msg.received_at,
        msg.topic,
        msg.payload,
        RejectCode.UNKNOWN_SERIAL,
        f"no device is registered with serial {serial}; replay once it is",
        None,
        serial,
    )
