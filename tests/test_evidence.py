"""The evidence pack's files, from a recorded answer."""

from __future__ import annotations

from datetime import UTC, datetime

from torch.evidence import files


def test_each_fix_is_attributed_to_the_tag_worn_at_its_time() -> None:
    """A tag swapped in the window: each fix names the tag worn then, by the answer's
    `devices`; an answer recorded before answers named them leaves the column empty."""
    fix = {"lat": 51.75, "lon": -0.34, "acc": 5.0}
    response = {
        "query_id": "q",
        "parameters": {},
        "results": [
            {
                "subject_id": 1,
                "subject_ref": "IOM-0001",
                "verdict": "present",
                "fixes": [
                    {"time": "2026-11-21T01:29:59.999Z", **fix},
                    {"time": "2026-11-21T01:30:00.000Z", **fix},
                    {"time": "2026-11-21T01:45:00.000Z", **fix},
                    {"time": "2026-11-21T02:10:00.000Z", **fix},
                ],
                "devices": [
                    {
                        "serial": "HT-1001",
                        "from": "2026-11-01T00:00:00+00:00",
                        "to": "2026-11-21T01:30:00+00:00",
                    },
                    {"serial": "HT-2002", "from": "2026-11-21T02:00:00+00:00", "to": None},
                ],
            },
            {
                "subject_id": 2,
                "subject_ref": "IOM-0002",
                "verdict": "possible",
                "fixes": [{"time": "2026-11-21T01:00:00.000Z", **fix}],
            },
        ],
    }
    made = files({}, response, b"{}", "1", datetime(2026, 11, 21, 4, tzinfo=UTC), "dc.smith")
    assert made["fixes.csv"].decode().splitlines() == [
        "subject_id,subject_ref,verdict,time,lat,lon,acc,serial",
        "1,IOM-0001,present,2026-11-21T01:29:59.999Z,51.75,-0.34,5.0,HT-1001",
        "1,IOM-0001,present,2026-11-21T01:30:00.000Z,51.75,-0.34,5.0,",  # taken off then
        "1,IOM-0001,present,2026-11-21T01:45:00.000Z,51.75,-0.34,5.0,",
        "1,IOM-0001,present,2026-11-21T02:10:00.000Z,51.75,-0.34,5.0,HT-2002",
        "2,IOM-0002,possible,2026-11-21T01:00:00.000Z,51.75,-0.34,5.0,",
    ]
