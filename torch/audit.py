"""The audit trail's chain: what a walk along it finds, in words a reviewer can act on.

Each record carries the SHA-256 of the record before it and of its own fields
(the database's audit_hash, used when it is written). A record changed after it
was written no longer matches its hash; a record removed leaves a gap in the
numbering; a record moved or replaced no longer follows its predecessor.
Removing the newest records leaves no trace inside the chain: compare the head
that `torch audit verify` prints with one kept elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Link:
    """One record as the walk sees it."""

    seq: int
    intact: bool  # its stored hash matches its fields and its stored prev_hash
    linked: bool  # its prev_hash is the hash of the record before it in the walk
    hash: str  # hex


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    problem: str


@dataclass(slots=True)
class Verification:
    records: int = 0
    head_seq: int = 0
    head_hash: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def walk(links: Iterable[Link]) -> Verification:
    """Check the chain, given its records in order of their numbers."""
    out = Verification()
    expected = 1
    for link in links:
        out.records += 1
        if link.seq > expected:
            span = f"{expected}" if link.seq == expected + 1 else f"{expected} to {link.seq - 1}"
            out.problems.append(
                Problem(link.seq, f"record {span} removed before record {link.seq}")
            )
        if not link.intact:
            out.problems.append(
                Problem(link.seq, f"record {link.seq} changed after it was written")
            )
        elif not link.linked and link.seq == expected:
            out.problems.append(
                Problem(
                    link.seq,
                    f"record {link.seq} does not follow record {link.seq - 1}: "
                    "records reordered or replaced",
                )
            )
        expected = link.seq + 1
        out.head_seq, out.head_hash = link.seq, link.hash
    return out
