"""Screening many crimes against the track tiles: which subjects need a verdict worked out.

Bulk correlation reports, per crime, only the subjects present or possible. A
subject whose track covers a crime's window without a gap, and whose every
hour of track (with the stretch that joins it to the hour before) keeps further
from the scene than the radius and the largest accuracy there, is excluded
without a look at a fix: its closest approach is at least that far. Every
other wearer (near the scene, with a gap, with more than one tag, or with
tiles not yet up to date) is a suspect, assessed in full by torch.proximity.

Crimes are screened in groups that share a day or so of tiles, read once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from torch import approach

HOUR = 3600.0
GROUP_SPAN_S = 30 * HOUR  # a group's tiles: at most this span, but for a longer crime


class Window(NamedTuple):
    """A crime as screening sees it: a point on the grid, a radius and a time window."""

    x: float
    y: float
    radius_m: float
    start: float
    end: float


def groups(windows: Sequence[Window], max_gap_s: float) -> list[list[int]]:
    """The crimes (by index) in groups whose tiles span at most GROUP_SPAN_S (one crime
    longer than that is a group of its own), in order of their start."""
    out: list[list[int]] = []
    lo = math.inf
    for i in sorted(range(len(windows)), key=lambda i: windows[i].start):
        w = windows[i]
        if out and w.end - lo <= GROUP_SPAN_S - 2 * max_gap_s - 2 * HOUR:
            out[-1].append(i)
            continue
        out.append([i])
        lo = w.start
    return out


def span(windows: Sequence[Window], max_gap_s: float) -> tuple[float, float]:
    """The hours of tiles a group needs, as the first and last hour start: from the hour
    before the earliest crime's first one (for the stretch into it) to the last."""
    first = min(w.start for w in windows) - max_gap_s
    last = max(w.end for w in windows) + max_gap_s
    return math.floor(first / HOUR) * HOUR - HOUR, math.floor(last / HOUR) * HOUR


class Tiles(NamedTuple):
    """Tile summaries of a group, in (subject, hour) order; subject is a dense index."""

    subject: np.ndarray
    hour: np.ndarray
    n: np.ndarray
    first_t: np.ndarray
    last_t: np.ndarray
    first_x: np.ndarray
    first_y: np.ndarray
    last_x: np.ndarray
    last_y: np.ndarray
    min_x: np.ndarray
    min_y: np.ndarray
    max_x: np.ndarray
    max_y: np.ndarray
    longest_s: np.ndarray
    max_acc: np.ndarray  # NaN where no fix of the hour has an accuracy


FIELDS = len(Tiles._fields) - 1  # all but the subject come packed


def tiles_of(subjects: Sequence[int], packed: Sequence[bytes]) -> Tiles:
    """Tile summaries from rows packed as float8 big-endian, in the order of Tiles."""
    a = np.frombuffer(b"".join(packed), ">f8").reshape(-1, FIELDS)
    # a field a contiguous array: every crime of the group reads them whole, and read
    # across the rows (a stride of 112 bytes) each took several times as long
    fields = np.ascontiguousarray(a.T, np.float64)
    return Tiles(np.asarray(subjects, np.int64), *fields)


@dataclass(frozen=True, slots=True)
class Reach:
    """Each tile's track with the stretch from the fix before it: its time span, its
    bounding box, and the largest accuracy of the fixes in it (NaN where none had one)."""

    since: np.ndarray
    min_x: np.ndarray
    min_y: np.ndarray
    max_x: np.ndarray
    max_y: np.ndarray
    acc: np.ndarray


def reach(t: Tiles) -> Reach:
    """The tiles widened by the stretch that joins each to the tile before (a car can pass
    a scene between the last fix of one hour and the first of the next)."""
    n = len(t.subject)
    prev = np.zeros(n, bool)
    prev[1:] = t.subject[1:] == t.subject[:-1]
    before = np.maximum(np.arange(n) - 1, 0)
    since = np.where(prev, t.last_t[before], t.first_t)
    px = np.where(prev, t.last_x[before], t.first_x)
    py = np.where(prev, t.last_y[before], t.first_y)
    acc = np.where(prev, np.fmax(t.max_acc, t.max_acc[before]), t.max_acc)
    return Reach(
        since,
        np.minimum(t.min_x, px),
        np.minimum(t.min_y, py),
        np.maximum(t.max_x, px),
        np.maximum(t.max_y, py),
        acc,
    )


def suspects(
    t: Tiles,
    r: Reach,
    w: Window,
    worn: np.ndarray,
    tiled: np.ndarray,
    max_gap_s: float,
    default_acc_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The subjects (dense indices) whose verdict for the crime needs a look at their
    track: every wearer but those whose tiles show a whole track far from the scene; and
    of them, those whose tiles show a whole track (no gap, one tag, up to date)."""
    plan = approach.plan(w.start, w.end, max_gap_s, math.inf)  # only `whole` reads it
    spans = approach.Spans(t.subject, t.hour, t.first_t, t.last_t, t.longest_s)
    covered = approach.whole(spans, plan, len(worn)) & tiled
    live = (r.since <= w.end) & (t.last_t >= w.start)
    dx = np.maximum(np.maximum(r.min_x - w.x, w.x - r.max_x), 0.0)
    dy = np.maximum(np.maximum(r.min_y - w.y, w.y - r.max_y), 0.0)
    margin = w.radius_m + np.fmax(r.acc, default_acc_m)
    near = np.zeros(len(worn), bool)
    near[t.subject[live & (dx * dx + dy * dy <= margin * margin)]] = True
    chosen = np.flatnonzero(worn & (near | ~covered))
    return chosen, chosen[covered[chosen]]
