"""The compiled bounds of torch.bounds against distances measured one piece at a time."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from torch import approach, bounds


def sketch(seed: int, subjects: int) -> tuple[np.ndarray, ...]:
    """Rows of 1 to 12 fixes, one to four rows a subject, offsets within a few km."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 5, subjects)
    subject = np.repeat(np.arange(subjects), per)
    counts = rng.integers(1, 13, len(subject))
    ox, oy = rng.uniform(-5000, 5000, (2, len(subject)))
    dx, dy = rng.uniform(-800, 800, (2, counts.sum())).astype(np.float32)
    return ox, oy, counts, subject, dx, dy


def measured(ox, oy, counts, subject, dx, dy):  # type: ignore[no-untyped-def]
    """Each piece (by its first fix) with its subject and distance from the origin, by
    shapely: a piece joins each fix to the next of the same subject."""
    row = np.repeat(np.arange(len(counts)), counts)
    x, y = ox[row] + dx, oy[row] + dy
    same = subject[row][1:] == subject[row][:-1]
    i = np.flatnonzero(same)
    lines = shapely.linestrings(np.stack([np.c_[x[i], y[i]], np.c_[x[i + 1], y[i + 1]]], axis=1))
    return i, subject[row][i], shapely.distance(lines, shapely.points(0, 0))


@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.sampled_from([0.0, 50.0]))
@settings(max_examples=60, deadline=None)
def test_every_subjects_nearest_piece_is_among_the_chosen(seed: int, n: int, r: float) -> None:
    ox, oy, counts, subject, dx, dy = sketch(seed, n)
    keep = np.ones(n, bool)
    keep[::7] = False  # a subject not kept has no pieces bounded, nor chosen
    limit = np.full(n, np.inf)
    d_s, least = np.empty(len(dx), np.float32), np.empty(len(counts))
    bounds.sketch_bounds(ox, oy, counts, subject, keep, dx, dy, r, limit, d_s, least)
    chosen = set(bounds.sketch_chosen(counts, subject, d_s, least, r, limit).tolist())
    piece, whose, d = measured(ox, oy, counts, subject, dx, dy)
    for s in range(n):
        mine = whose == s
        if not keep[s] or not mine.any():
            assert limit[s] == np.inf
            assert not chosen & set(piece[mine].tolist())
            continue
        nearest = d[mine].min()
        # the limit is the nearest distance and the allowances, to within float4 rounding
        expected = nearest + r + bounds.SLACK_M + bounds.SLACK_PER_M * nearest
        assert abs(limit[s] - expected) <= 1e-7 * nearest
        # every piece as near, to within the allowances, is chosen; none farther
        kept = d_s[piece[mine]].astype(float)  # as the kernel keeps them, in float4
        assert np.allclose(kept, d[mine], rtol=1e-7, atol=0)
        may = piece[mine][kept - r - bounds.SLACK_M - bounds.SLACK_PER_M * kept <= limit[s]]
        assert set(may.tolist()) == chosen & set(piece[mine].tolist())
        assert int(piece[mine][np.argmin(d[mine])]) in chosen


def test_pieces_bounded_one_by_one() -> None:
    """A piece inside the window sets the limit; one outside it is measured but sets none."""
    xa, ya = np.array([100.0, 0.0, 30.0]), np.array([0.0, 40.0, 0.0])
    xb, yb = np.array([100.0, 10.0, 40.0]), np.array([50.0, 40.0, 0.0])
    valid = np.array([True, True, False])
    inside = np.array([True, False, True])
    subject = np.array([0, 0, 0])
    limit = np.full(1, np.inf)
    d = bounds.piece_bounds(xa, ya, xb, yb, valid, inside, subject, 0.0, limit)
    assert d.tolist() == [100.0, 40.0, np.inf]
    assert limit[0] == 100.0 + bounds.SLACK_M + bounds.SLACK_PER_M * 100.0
    assert bounds.piece_chosen(subject, d, 0.0, limit).tolist() == [0, 1]


def test_a_sketch_bounded_on_two_threads_is_bounded_as_on_one() -> None:
    ox, oy, counts, subject, dx, dy = sketch(20261130, 1500)  # about 3,750 rows: split
    assert len(counts) >= approach.SPLIT_ROWS
    keep = np.ones(1500, bool)
    keep[::5] = False
    one_limit = np.full(1500, np.inf)
    one_d, one_least = np.empty(len(dx), np.float32), np.empty(len(counts))
    bounds.sketch_bounds(ox, oy, counts, subject, keep, dx, dy, 0.0, one_limit, one_d, one_least)
    pieces = approach.SketchPieces(ox, oy, np.r_[0, np.cumsum(counts)], subject, dx, dy, keep)
    two_limit = np.full(1500, np.inf)
    two_d, two_least = approach._sketch_bounds(pieces, 0.0, two_limit)
    assert np.array_equal(two_limit, one_limit)
    assert np.array_equal(two_least, one_least)
    piece, _, _ = measured(ox, oy, counts, subject, dx, dy)
    kept = piece[keep[subject[np.repeat(np.arange(len(counts)), counts)][piece]]]
    assert np.array_equal(two_d[kept], one_d[kept])
    # the split was worth testing: both halves held subjects with pieces
    assert np.isinf(one_limit[~keep]).all() and np.isfinite(one_limit[keep]).sum() > 1000


def test_the_closest_pieces_of_many_tracks_are_each_tracks_own() -> None:
    """closest_pieces over tracks laid end to end gives, for each, what closest_piece gives
    of it alone, its fixes counted from the first of all; a track with no fix in the
    window, or none at all, has none (-1)."""
    rng = np.random.default_rng(7)
    lengths = [40, 0, 1, 25, 60]
    tracks = [
        (np.sort(rng.uniform(-600, 4200, k)), *rng.uniform(-3000, 3000, (2, k))) for k in lengths
    ]
    tracks[2] = (np.array([9000.0]), np.array([1.0]), np.array([2.0]))  # after the window
    t, x, y = (np.concatenate([tr[c] for tr in tracks]) for c in range(3))
    stop = np.cumsum(lengths)
    first = stop - lengths
    a, b, d, nx, ny, at = bounds.closest_pieces(first, stop, t, x, y, 0.0, 3600.0, 300.0, 5.0, 7.0)
    for k, (tk, xk, yk) in enumerate(tracks):
        ka, kb, kd, kx, ky, kt = bounds.closest_piece(tk, xk, yk, 0.0, 3600.0, 300.0, 5.0, 7.0)
        shift = first[k] if ka >= 0 else 0
        assert (a[k], b[k]) == (ka + shift, kb + shift)
        assert [d[k], nx[k], ny[k], at[k]] == pytest.approx([kd, kx, ky, kt], nan_ok=True, rel=0)
    assert (a < 0).tolist() == [False, True, True, False, False]
