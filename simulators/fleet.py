"""A fleet of simulated tags, merged into one stream in publishing order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from simulators.routine import make_subject
from simulators.tag import Options, Out, Tag


@dataclass(frozen=True, slots=True)
class Member:
    ref: str
    serial: str


def tags(n: int, seed: int, opts: Options, begin: float, end: float) -> list[Tag]:
    return [Tag(make_subject(i, seed), seed, opts, begin, end) for i in range(n)]


def members(fleet: list[Tag]) -> list[Member]:
    return [Member(t.s.ref, t.serial) for t in fleet]


def stream(fleet: list[Tag]) -> Iterator[Out]:
    """Every tag's messages, ordered by publishing time (ties by tag, then sequence)."""
    return heapq.merge(*(t.messages() for t in fleet), key=lambda m: (m.t, m.tag, m.seq))


def fix_count(out: Out) -> int:
    if out.kind == "fixes":
        return out.payload.count('"ts"')
    return 1 if out.kind in ("fix", "duplicate") else 0
