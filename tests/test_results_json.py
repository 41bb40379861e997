"""The verdicts written in bulk are the bytes the verdicts written one by one make."""

from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from api.proximity import result, results
from torch.nearby import Answer
from torch.proximity import Assessment, Far, TrackFix, Verdict, iso
from torch.store.proximity import Wearer, Wearers

RADIUS = 200.0

# A far subject: beyond the radius by more than the accuracy.
far_subject = st.tuples(
    st.floats(0.0, 30.0),  # accuracy
    st.floats(0.0, 80_000.0),  # metres beyond radius + accuracy
    st.floats(1.7e9, 1.9e9),  # time of the closest approach
)


def one_by_one(answer: Answer, allowed: set[int]) -> bytes:
    return msgspec.json.encode(
        [
            result(v.subject_id, v.ref, v.assessment, iso(v.assessment.closest_at))
            for v in answer.verdicts()
            if v.subject_id in allowed and v.assessment.closest_at is not None
        ]
    )


def answer_of(rows: list[tuple[float, float, float]], refs: list[str]) -> Answer:
    """Far subjects from `rows`, with a present one second, by subject id."""
    who = Wearers.of([Wearer(10 + k, ref, True) for k, ref in enumerate(refs)])
    u = np.array([r[0] for r in rows])
    d = RADIUS + u + np.array([r[1] for r in rows]) + 1e-6
    t = np.array([r[2] for r in rows])
    which = np.array([k for k in range(len(who)) if k != 1], np.int64)
    far = Far(which, d, t, d + 500_000.0, t * 0 + 200_000.0, u, RADIUS)
    fix = TrackFix(1.8e9, 1.0, 2.0, 5.0, 51.75, -0.34)
    present = Assessment(
        Verdict.PRESENT, 12.5, 1.8e9, (1.0, 2.0), 5.0, 1.0, [], ["at the scene"], [fix]
    )
    return Answer(who, far, {1: present})


@settings(max_examples=200)
@given(st.lists(far_subject, min_size=1, max_size=12))
def test_far_verdicts_written_in_bulk_are_those_written_one_by_one(
    rows: list[tuple[float, float, float]],
) -> None:
    refs = [f"IOM-{k:04d}" for k in range(len(rows) + 1)]
    answer = answer_of(rows, refs)
    everyone = {w.subject_id for w in answer.who}
    assert results(answer, everyone) == one_by_one(answer, everyone)


def test_bulk_results_escape_refs_and_leave_out_subjects_not_allowed() -> None:
    rows = [(20.0, 1234.56, 1.8e9 + 0.25), (5.5, 0.0, 1.8e9), (29.0, 10.0, 1.8e9 + 7)]
    refs = ['IOM-"7"', "IOM-Ω\\1", "IOM-0003", "IOM-0004"]
    answer = answer_of(rows, refs)
    allowed = {10, 11, 13}
    text = results(answer, allowed)
    assert text == one_by_one(answer, allowed)
    decoded = msgspec.json.decode(text)
    assert [r["subject_ref"] for r in decoded] == ['IOM-"7"', "IOM-Ω\\1", "IOM-0004"]
    assert [r["verdict"] for r in decoded] == ["excluded", "present", "excluded"]
    assert decoded[0]["closest_m"] == 1454.6
    assert decoded[0]["closest_at"] == "2027-01-15T08:00:00.250Z"
    assert decoded[0]["reasons"] == [
        "closest approach 1455 m at 2027-01-15T08:00:00Z: more than 200 m even allowing"
        " for an accuracy of 20 m",
        "every moment of the window is accounted for away from the scene",
    ]
    assert decoded[2]["accuracy_m"] == 29.0
    assert decoded[2]["closest_point"] is None and decoded[2]["fixes"] == []
