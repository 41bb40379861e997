"""Who was near a scene at a time: a verdict for every subject who wore a device then.

The verdicts are those of `torch.proximity.assess` on each subject's fixes.
Most subjects' tracks cover the window and pass far from the scene; for them
the track tiles give the closest approach without reading a fix. Every other
subject (near the scene, with a gap, or with tiles not yet up to date) has
their fixes read and assessed in full.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg
import shapely

from torch.proximity import Assessment, Params, Scene, assess, far_and_covered
from torch.store import proximity as store

# Settings for the sessions that run these queries: the plans are many small steps
# that JIT compilation and parallel workers only slow down, and the sorts of a
# 24-hour window want more than the default 4 MB.
SESSION = {
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    "random_page_cost": "1.1",
    "work_mem": "64MB",
}


class SubjectVerdict(NamedTuple):
    subject_id: int
    ref: str
    assessment: Assessment


async def verdicts(conn: asyncpg.Connection, scene: Scene, p: Params) -> list[SubjectVerdict]:
    start = datetime.fromtimestamp(scene.start, UTC)
    end = datetime.fromtimestamp(scene.end, UTC)
    wkb = shapely.to_wkb(scene.geometry)
    found: dict[int, SubjectVerdict] = {}
    refs: dict[int, str] = {}
    for s in await store.summaries(conn, wkb, start, end, p.max_gap_s, p.default_acc_m):
        refs[s.subject_id] = s.ref
        if s.closest_m is None or s.t is None or s.x is None or s.y is None or s.acc is None:
            continue
        a = far_and_covered(s.closest_m, s.t, (s.x, s.y), s.acc, scene, p)
        if a is not None:
            found[s.subject_id] = SubjectVerdict(s.subject_id, s.ref, a)
    rest = [i for i in refs if i not in found]
    if rest:
        for t in await store.tracks(conn, start, end, p.max_gap_s, rest):
            found[t.subject_id] = SubjectVerdict(t.subject_id, t.ref, assess(t.fixes, scene, p))
    return [found[i] for i in sorted(found)]
