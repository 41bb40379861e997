"""A committed batch's fixes as each subject's track on the grid: what the zone checks and
the mobile victim zones both step through; and when what a late check finds corrects an
episode stored before."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Container
from datetime import UTC, datetime, timedelta

from torch import grid
from torch.breach import Fix
from torch.intake import Batch
from torch.store.breaches import Stored

SubjectOf = Callable[[int, datetime], int | None]  # (device id, fix time) -> the wearer

LATE_CONTEXT = timedelta(minutes=30)  # how much stored track around late fixes is checked
LATE_REACH = timedelta(days=1)  # how much further back a late check goes for a stored episode


def subject_tracks(
    batch: Batch, subject_of: SubjectOf, wanted: Container[int]
) -> dict[int, list[Fix]]:
    """The batch's fixes of the wanted subjects, on the grid, in time order (a fix sent
    twice counts once)."""
    mine = []
    for s in batch.fixes:
        subject_id = subject_of(s.device_id, s.fix.ts)
        if subject_id is not None and subject_id in wanted:
            mine.append((subject_id, s.fix))
    if not mine:
        return {}
    xs, ys = grid.to_grid([f.lon for _, f in mine], [f.lat for _, f in mine])
    out: dict[int, dict[float, Fix]] = defaultdict(dict)
    for (subject_id, f), x, y in zip(mine, xs, ys, strict=True):
        t = f.ts.timestamp()
        out[subject_id][t] = Fix(t, x, y, f.acc)
    return {k: sorted(v.values(), key=lambda f: f.t) for k, v in out.items()}


def corrects(stored: Stored, entered: float, left: float | None) -> bool:
    """Whether an episode found again (from `entered` to `left`, Unix times) corrects one
    stored from an earlier late check: the same start, another end. An earlier check may
    have had only part of a buffer sent in several messages, and closed the episode at a
    fix after the part still to come. An episode found live stands as it was raised."""
    return (
        stored.detection == "late"
        and abs(stored.entered - entered) < 1e-3  # as stored: to the microsecond
        and stored.left is not None
        and left is not None
        and abs(stored.left - left) >= 1e-3
    )


def late_span(lo: float, hi: float) -> tuple[datetime, datetime]:
    """The stored track a late check of fixes from lo to hi (Unix times) reads."""
    return datetime.fromtimestamp(lo, UTC) - LATE_CONTEXT, datetime.fromtimestamp(
        hi, UTC
    ) + LATE_CONTEXT


def reach_back(start: datetime, earliest: datetime | None) -> datetime:
    """Where a late check that would start at `start` starts, so as to find whole again the
    earliest stored episode it overlaps (which began at `earliest`), if that is not more
    than LATE_REACH further back."""
    if earliest is None:
        return start
    return max(min(start, earliest - LATE_CONTEXT), start - LATE_REACH)
