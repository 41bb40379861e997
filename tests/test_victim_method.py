"""Mobile victim zones on hand-made positions: where the protected person is, and stages."""

from __future__ import annotations

from torch.victim import Link, Position, Positions, Stage, Watch

LINK = Link(1, subject_id=10, victim_id=20, warning_m=2000, breach_m=500)


def test_positions_interpolate_and_hold_for_two_minutes_only() -> None:
    p = Positions()
    p.add(Position(100, 0.0, 0.0, 5))
    p.add(Position(160, 60.0, 0.0, 8))
    assert p.at(130) == Position(130, 30.0, 0.0, 8)  # between two fixes: the larger accuracy
    assert p.at(160 + 120) == Position(280, 60.0, 0.0, 8)  # held, two minutes old
    assert p.at(160 + 121) is None  # older than that: does not count
    assert p.at(100 - 121) is None
    p.add(Position(130, 10.0, 0.0, 5))  # late: put in its place
    assert p.at(115) == Position(115, 5.0, 0.0, 5)


def test_stages_open_after_two_fixes_within_and_close_after_two_clear() -> None:
    w = Watch(LINK)
    victim = Position(0, 0.0, 0.0, 5)
    opened, closed = [], []
    # the subject's distance at each fix (accuracy 5: certainly within when d + 10 <= r)
    for t, d in enumerate([2500, 1995, 1985, 1900, 600, 485, 480, 505, 400, 515, 520, 1000,
                           2005, 2020, 2030]):  # fmt: skip
        for c in w.step(float(t), Position(t, float(d), 0.0, 5), victim):
            (opened if c.opened else closed).append((c.stage, c.episode.entered, c.episode.left))
    # 1995 + 10 > 2000: uncertain, so the warning run starts at t = 2
    assert opened == [(Stage.WARNING, 2.0, None), (Stage.BREACH, 5.0, None)]
    # breach: 505 is uncertain (no step out); 515 and 520 are clearly beyond 500
    # warning: 2005 is uncertain; 2020 and 2030 clearly beyond
    assert [(s, e, left) for s, e, left in closed if left is not None] == [
        (Stage.BREACH, 5.0, 10.0),
        (Stage.WARNING, 2.0, 14.0),
    ]


def test_drift_at_the_edge_opens_nothing() -> None:
    w = Watch(LINK)
    victim = Position(0, 0.0, 0.0, 10)
    changes = []
    for t, d in enumerate([1985, 2015, 1985, 2015, 1985, 2015]):  # within, then uncertain
        changes += w.step(float(t), Position(t, float(d), 0.0, 5), victim)
    assert changes == []
