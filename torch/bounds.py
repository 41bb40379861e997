"""Bounds on the distances of many pieces of track from a scene's centre, compiled.

A crime-scene query over a day bounds two to three million pieces (torch.approach):
in numpy that took some twenty passes over arrays of that length, here it takes one,
and a second over the few rows that may hold a subject's nearest piece. The arithmetic
is in float64 on positions given as offsets from the scene's centre, the distances kept
in float4; `SLACK_M` and `SLACK_PER_M` allow for the float4 sketches the offsets come
from and for that rounding, so that a bound never excludes the nearest piece.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

SLACK_M = 0.05  # a float4 offset is within a few centimetres of the exact one ...
SLACK_PER_M = 2e-6  # ... and within two parts in a million of its length

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(f: F) -> F:
    """Compiled on first use, and kept in __pycache__ (or NUMBA_CACHE_DIR) for the next
    process; where neither can be written, compiled anew by each process (some seconds)
    rather than not at all."""
    try:
        return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(f))
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return cast(F, numba.njit(nogil=True, error_model="numpy")(f))


@_compiled
def _from_origin(ax: float, ay: float, bx: float, by: float) -> float:
    """The distance of the segment from (ax, ay) to (bx, by) from the origin."""
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    k = 0.0 if l2 == 0.0 else min(1.0, max(0.0, -(ax * dx + ay * dy) / l2))
    return math.sqrt((ax + k * dx) ** 2 + (ay + k * dy) ** 2)


@_compiled
def _slack(d: float) -> float:
    return SLACK_M + SLACK_PER_M * d


@_compiled
def _row(
    x0: float, y0: float, dx: np.ndarray, dy: np.ndarray, k0: int, k1: int, d: np.ndarray
) -> None:
    """d[j] = the distance of the piece from sketch fix j to j + 1, for j in [k0, k1 - 1):
    fixes of one row, offsets from (x0, y0). A loop the compiler vectorises."""
    for j in range(k0, k1 - 1):
        d[j] = _from_origin(x0 + dx[j], y0 + dy[j], x0 + dx[j + 1], y0 + dy[j + 1])


@_compiled
def sketch_bounds(
    ox: np.ndarray,
    oy: np.ndarray,
    counts: np.ndarray,
    subject: np.ndarray,
    keep: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    r: float,
    limit: np.ndarray,
    d: np.ndarray,
    least: np.ndarray,
) -> None:
    """Sets d to the distance of each piece of a sketch, by its first fix (float4; unset
    where the next fix is another subject's or the subject is not in `keep`), and least to
    the least of each row's (inf where none); lowers limit[s] to the greatest distance that
    subject s's nearest piece can have. Row i of the sketch holds counts[i] fixes of
    subject[i], as offsets (dx, dy) from (ox[i], oy[i]); the rows of a subject follow each
    other in time order, and a piece joins each fix to the next of its subject. Writes
    limit only for the subjects of these rows: two threads may share it, given rows of
    different subjects."""
    rows = counts.shape[0]
    least[:] = np.inf
    k0 = 0
    for row in range(rows):
        s, m = subject[row], counts[row]
        k1 = k0 + m
        if keep[s] and m > 0:
            _row(ox[row], oy[row], dx, dy, k0, k1, d)
            if row + 1 < rows and subject[row + 1] == s:
                d[k1 - 1] = _from_origin(
                    ox[row] + dx[k1 - 1],
                    oy[row] + dy[k1 - 1],
                    ox[row + 1] + dx[k1],
                    oy[row + 1] + dy[k1],
                )
                k1 += 1
            low = np.inf
            for j in range(k0, k1 - 1):
                low = min(low, d[j])
            least[row] = low
            if low < np.inf:
                limit[s] = min(limit[s], low + r + _slack(low))
        k0 += m


@_compiled
def sketch_chosen(
    counts: np.ndarray,
    subject: np.ndarray,
    d: np.ndarray,
    least: np.ndarray,
    r: float,
    limit: np.ndarray,
) -> np.ndarray:
    """The pieces of a sketch (by their first fix) that may be their subject's nearest:
    those whose least possible distance is within the subject's limit, looked for only in
    the rows whose least distance may be (from `sketch_bounds`)."""
    rows = counts.shape[0]
    out = np.empty(d.shape[0], np.int64)
    n, k0 = 0, 0
    for row in range(rows):
        s, m = subject[row], counts[row]
        if least[row] < np.inf and least[row] - r - _slack(least[row]) <= limit[s]:
            k1 = k0 + m - 1 + (row + 1 < rows and subject[row + 1] == s)
            for j in range(k0, k1):
                if d[j] - r - _slack(d[j]) <= limit[s]:
                    out[n] = j
                    n += 1
        k0 += m
    return out[:n]


@_compiled
def piece_bounds(
    xa: np.ndarray,
    ya: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    valid: np.ndarray,
    inside: np.ndarray,
    subject: np.ndarray,
    r: float,
    limit: np.ndarray,
) -> np.ndarray:
    """The distance of each valid piece from (xa, ya) to (xb, yb) (inf for the others);
    the pieces wholly inside the window lower their subject's limit."""
    d = np.full(xa.shape[0], np.inf)
    for i in range(xa.shape[0]):
        if valid[i]:
            d[i] = _from_origin(xa[i], ya[i], xb[i], yb[i])
            if inside[i]:
                s = subject[i]
                limit[s] = min(limit[s], d[i] + r + _slack(d[i]))
    return d


@_compiled
def edge_bounds(
    subject: np.ndarray,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    after: np.ndarray,
    keep: np.ndarray,
    cx: float,
    cy: float,
    start: float,
    end: float,
    r: float,
    limit: np.ndarray,
) -> np.ndarray:
    """The distance from (cx, cy) of each piece of an edge's exact fixes, by its first fix
    (inf where the next fix is another subject's or on the other side of the window's
    interior (`after`), where the subject is not in `keep`, or where the piece lies outside
    the window [start, end]); the pieces wholly inside the window lower their subject's
    limit. The fixes are in (subject, time) order."""
    n = t.shape[0]
    d = np.full(max(n - 1, 0), np.inf)
    for i in range(n - 1):
        s = subject[i]
        if subject[i + 1] != s or after[i + 1] != after[i] or not keep[s]:
            continue
        if t[i + 1] < start or t[i] > end:
            continue
        d[i] = _from_origin(x[i] - cx, y[i] - cy, x[i + 1] - cx, y[i + 1] - cy)
        if t[i] >= start and t[i + 1] <= end:
            limit[s] = min(limit[s], d[i] + r + _slack(d[i]))
    return d


@_compiled
def piece_chosen(subject: np.ndarray, d: np.ndarray, r: float, limit: np.ndarray) -> np.ndarray:
    """The pieces that may be their subject's nearest."""
    out = np.empty(d.shape[0], np.int64)
    m = 0
    for i in range(d.shape[0]):
        if d[i] < np.inf and d[i] - r - _slack(d[i]) <= limit[subject[i]]:
            out[m] = i
            m += 1
    return out[:m]


@_compiled
def _projection(
    ta: float,
    xa: float,
    ya: float,
    tb: float,
    xb: float,
    yb: float,
    t0: float,
    t1: float,
    px: float,
    py: float,
) -> tuple[float, float, float, float]:
    """The piece from fix (ta, xa, ya) to fix (tb, xb, yb) clipped to [t0, t1]: the
    distance of its point nearest (px, py), that point and the time there. The place
    along it is the projection clamped to its ends, and the time is as far through."""
    k0 = k1 = 0.0
    if tb != ta:
        k0, k1 = (t0 - ta) / (tb - ta), (t1 - ta) / (tb - ta)
    x0, y0 = xa + (xb - xa) * k0, ya + (yb - ya) * k0
    x1, y1 = xa + (xb - xa) * k1, ya + (yb - ya) * k1
    dx, dy = x1 - x0, y1 - y0
    l2 = dx * dx + dy * dy
    k = ((px - x0) * dx + (py - y0) * dy) / (1.0 if l2 == 0 else l2)
    k = min(max(k, 0.0), 1.0)
    nx, ny = x0 + k * dx, y0 + k * dy
    return math.hypot(nx - px, ny - py), nx, ny, t0 + (t1 - t0) * k


@_compiled
def projections(
    ta: np.ndarray,
    xa: np.ndarray,
    ya: np.ndarray,
    tb: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    px: float,
    py: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_projection` of each piece (torch.proximity.Pieces' arrays): distances, nearest
    points (x, y) and times."""
    n = ta.shape[0]
    d, nx, ny, t = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        d[i], nx[i], ny[i], t[i] = _projection(
            ta[i], xa[i], ya[i], tb[i], xb[i], yb[i], t0[i], t1[i], px, py
        )
    return d, nx, ny, t


@_compiled
def _beyond(xa: float, ya: float, xb: float, yb: float, px: float, py: float, d: float) -> bool:
    """Whether every point of the segment from (xa, ya) to (xb, yb) lies further than d
    (plus a micrometre for rounding) from (px, py): its bounding box does. No division
    and no root, so that most pieces of a track are passed over at that cost."""
    dx = max(min(xa, xb) - px, 0.0, px - max(xa, xb))
    dy = max(min(ya, yb) - py, 0.0, py - max(ya, yb))
    near = d + 1e-6
    return dx * dx + dy * dy > near * near


@_compiled
def _joins(t: np.ndarray, i: int, start: float, end: float, max_gap: float) -> bool:
    """Whether fixes i and i + 1 make a piece in the window [start, end]: at most max_gap
    apart, and the piece between them reaches into it."""
    return bool(t[i + 1] - t[i] <= max_gap and max(t[i], start) <= min(t[i + 1], end))


@_compiled
def closest_piece(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    start: float,
    end: float,
    max_gap: float,
    px: float,
    py: float,
) -> tuple[int, int, float, float, float, float]:
    """torch.proximity.closest_in around the point (px, py), in one pass: the fixes (a,
    b) around the first of the track's pieces in the window (`_pieces`' order: the
    pieces between fixes, then lone fixes) at the least distance, that distance, the
    nearest point and the time there; a = -1 where the track has no piece in the window.
    A piece whose bounding box lies beyond the least distance so far is not measured: it
    cannot be nearer, nor as near. Bulk correlation asks it of a dozen tracks a crime,
    where numpy's steps on arrays of a few hundred fixes cost more than the arithmetic."""
    n = t.shape[0]
    best, ba, bb, bx, by, bt = np.inf, -1, -1, np.nan, np.nan, np.nan
    lone = joined = False  # any lone fix in the window; whether a piece ends at fix i
    for i in range(n - 1):
        if not _joins(t, i, start, end, max_gap):
            lone = lone or (not joined and t[i] >= start and t[i] <= end)
            joined = False
            continue
        joined = True
        if ba >= 0 and _beyond(x[i], y[i], x[i + 1], y[i + 1], px, py, best):
            continue
        t0, t1 = max(t[i], start), min(t[i + 1], end)
        d, nx, ny, tt = _projection(t[i], x[i], y[i], t[i + 1], x[i + 1], y[i + 1], t0, t1, px, py)
        if d < best or ba < 0:
            best, ba, bb, bx, by, bt = d, i, i + 1, nx, ny, tt
    lone = lone or (n > 0 and not joined and t[n - 1] >= start and t[n - 1] <= end)
    for i in range(n if lone else 0):
        if t[i] < start or t[i] > end:
            continue
        if (i > 0 and _joins(t, i - 1, start, end, max_gap)) or (
            i + 1 < n and _joins(t, i, start, end, max_gap)
        ):
            continue  # not lone: a piece joins it
        d, nx, ny, tt = _projection(t[i], x[i], y[i], t[i], x[i], y[i], t[i], t[i], px, py)
        if d < best or ba < 0:
            best, ba, bb, bx, by, bt = d, i, i, nx, ny, tt
    return ba, bb, best, bx, by, bt


@_compiled
def closest_pieces(
    first: np.ndarray,
    stop: np.ndarray,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    start: float,
    end: float,
    max_gap: float,
    px: float,
    py: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`closest_piece` of many tracks at once: track k is fixes first[k] to stop[k] - 1 of
    t, x, y. Arrays of its results, the fixes (a, b) as indices into t (-1: no piece)."""
    m = first.shape[0]
    a, b = np.full(m, -1, np.int64), np.full(m, -1, np.int64)
    d, nx, ny, tt = np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan)
    for k in range(m):
        i, j = first[k], stop[k]
        ka, kb, d[k], nx[k], ny[k], tt[k] = closest_piece(
            t[i:j], x[i:j], y[i:j], start, end, max_gap, px, py
        )
        if ka >= 0:
            a[k], b[k] = i + ka, i + kb
    return a, b, d, nx, ny, tt


def warm() -> None:
    """Compile (or load from the cache) every loop here, so that no answer waits for it."""
    one, none = np.zeros(2), np.zeros(2, np.int64)
    limit = np.full(1, np.inf)
    xy = np.zeros(2, np.float32)
    counts = np.ones(2, np.int64)
    d, least = np.empty(2, np.float32), np.empty(2)
    sketch_bounds(one, one, counts, none, np.ones(1, bool), xy, xy, 0.0, limit, d, least)
    sketch_chosen(counts, none, d, least, 0.0, limit)
    d = piece_bounds(one, one, one, one, np.ones(2, bool), np.ones(2, bool), none, 0.0, limit)
    piece_chosen(none, d, 0.0, limit)
    yes = np.ones(2, bool)
    edge_bounds(none, one, one, one, yes, yes, 0.0, 0.0, 0.0, 1.0, 0.0, limit)
    closest_piece(one, one, one, 0.0, 1.0, 300.0, 0.0, 0.0)
    closest_pieces(none, none + 2, one, one, one, 0.0, 1.0, 300.0, 0.0, 0.0)
    projections(one, one, one, one, one, one, one, one, 0.0, 0.0)
