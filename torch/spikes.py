"""GPS outliers: a fix the track around it does not bear out.

Receivers put the odd fix far from the truth (a signal reflected off buildings) with
nothing in its stated accuracy to say so. A fix b between fixes a and c is a **spike**
when reaching it from a and leaving it for c would each take more than `max_speed_ms`,
even allowing for the accuracies of both fixes of each step, while a and c are within
that speed of each other; all three at most `max_gap_s` apart. Pure arithmetic in grid
metres: the proximity method (torch.proximity) and the zone rules (torch.breach) both
ask it.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Point(NamedTuple):
    t: float  # Unix seconds
    x: float  # grid metres
    y: float
    acc: float  # metres; the default where the fix has none


class Speeds(NamedTuple):
    into: float  # m/s, from the fix before
    out: float  # to the fix after
    across: float  # from the fix before to the fix after


def spike(a: Point, b: Point, c: Point, max_gap_s: float, max_speed_ms: float) -> Speeds | None:
    """The speeds that make b a spike between a and c, or None if it is not one."""
    if not (0 < b.t - a.t <= max_gap_s and 0 < c.t - b.t <= max_gap_s):
        return None
    speeds = Speeds(_speed(a, b), _speed(b, c), _speed(a, c))
    if speeds.into > max_speed_ms and speeds.out > max_speed_ms:
        return speeds if speeds.across <= max_speed_ms else None
    return None


def _speed(p: Point, q: Point) -> float:
    """The least speed from p to q: the distance less both accuracies, over the time."""
    return max(0.0, math.hypot(q.x - p.x, q.y - p.y) - p.acc - q.acc) / (q.t - p.t)


def describe(clock: str, s: Speeds) -> str:
    """A spike at the time written `clock`, in words."""
    return (
        f"the fix at {clock} would mean {s.into:.0f} m/s from the fix before it and"
        f" {s.out:.0f} m/s to the one after, even allowing for their accuracy, while those"
        f" two are {s.across:.0f} m/s apart: it may be a GPS outlier"
    )
