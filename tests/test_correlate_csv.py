"""Reading a bulk correlation's CSV: every good row kept, every bad one reported by line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.services import torch_cli
from torch import correlate, grid
from torch.correlate import RowError

AREA = (-9.0, 49.75, 2.0, 61.0)
WEEK = timedelta(days=7)
HEADER = "crime_ref,offence,lat,lon,easting,northing,from,to,radius_m\n"
WHEN = "2026-11-21T01:00:00Z,2026-11-21T03:00:00Z"


def test_good_rows_are_kept_and_bad_ones_reported_with_their_line() -> None:
    text = HEADER + "\n".join(
        [
            f"41/1/26,burglary,51.7527,-0.3394,,,{WHEN},100",
            f"41/2/26,robbery,,,515000,207000,{WHEN},50",
            f"41/3/26,theft,,,,,{WHEN},100",
            f"41/4/26,theft,51.75,,,,{WHEN},100",
            f"41/5/26,theft,91,-0.34,,,{WHEN},100",
            f"41/6/26,theft,,,-5,207000,{WHEN},100",
            f",theft,51.75,-0.34,,,{WHEN},100",
            "41/8/26,theft,51.75,-0.34,,,2026-11-21T03:00:00Z,2026-11-21T01:00:00Z,100",
            "41/9/26,theft,51.75,-0.34,,,2026-11-21T01:00:00,2026-11-21T03:00:00Z,100",
            f"41/10/26,theft,51.75,-0.34,,,{WHEN},nan",
            "41/11/26,theft,51.75,-0.34,,,2026-11-01T00:00:00Z,2026-11-09T00:00:00Z,100",
            "41/12/26,theft,51.75,-0.34,,,0001-01-01T00:00:00+01:00,2026-11-09T00:00:00Z,100",
        ]
    )
    crimes, errors = correlate.parse(text, AREA, WEEK)
    x, y = grid.point_to_grid(-0.3394, 51.7527)
    start = datetime(2026, 11, 21, 1, tzinfo=UTC)
    end = datetime(2026, 11, 21, 3, tzinfo=UTC)
    assert crimes == [
        correlate.Crime(2, "41/1/26", "burglary", x, y, start, end, 100.0),
        correlate.Crime(3, "41/2/26", "robbery", 515000.0, 207000.0, start, end, 50.0),
    ]
    assert errors == [
        RowError(4, "no place: give lat and lon, or easting and northing"),
        RowError(5, "lon '' is not a number"),
        RowError(6, "lat 91, lon -0.34 is outside the service area"),
        RowError(7, "easting -5, northing 207000 is not on the British National Grid"),
        RowError(8, "crime_ref is empty"),
        RowError(9, "to must be after from"),
        RowError(10, "from '2026-11-21T01:00:00' needs an offset, e.g. 2026-11-23T01:00:00Z"),
        RowError(11, "radius_m nan is not between 0 and 5000"),
        RowError(12, "the window may be at most 7 days long"),
        RowError(
            13,
            "from '0001-01-01T00:00:00+01:00' must lie between 2000-01-01 and 2100-01-01 (UTC)",
        ),
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("", ""),
        ("crime_ref,lat,lon\n41/1/26,51.75,-0.34\n", "crime_ref,lat,lon"),
        (HEADER.replace(",", ";"), HEADER.replace(",", ";").strip()),
    ],
)
def test_a_header_without_the_columns_is_reported_on_line_one_with_what_it_is(
    text: str, found: str
) -> None:
    assert correlate.parse(text, AREA, WEEK) == (
        [],
        [
            RowError(
                1,
                f"the header must name {correlate.COLUMNS} (comma-separated); it is {found!r}",
            )
        ],
    )


def test_a_header_as_spreadsheets_write_it_is_read() -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark; people write names in any case."""
    header = "\ufeffCrime_Ref, Offence ,LAT,Lon,From,To,Radius_m\r\n"
    crimes, errors = correlate.parse(
        header + f"41/1/26,burglary,51.75,-0.34,{WHEN},100\r\n", AREA, WEEK
    )
    assert errors == []
    assert [(c.line, c.crime_ref, c.offence, c.radius_m) for c in crimes] == [
        (2, "41/1/26", "burglary", 100.0)
    ]


def test_rows_past_the_limit_are_reported_once() -> None:
    row = f"41/1/26,burglary,51.75,-0.34,,,{WHEN},100\n"
    crimes, errors = correlate.parse(HEADER + row * (correlate.MAX_CRIMES + 5), AREA, WEEK)
    assert len(crimes) == correlate.MAX_CRIMES
    limit = correlate.MAX_CRIMES + 2
    assert errors == [RowError(limit, "more than 10,000 crimes; the rest were not read")]


def test_the_command_line_says_when_it_cannot_read_the_file(tmp_path: Path) -> None:
    latin = tmp_path / "crimes.csv"
    latin.write_bytes(HEADER.encode() + "41/1/26,café".encode("latin-1") + b"\n")
    missing = tmp_path / "none.csv"
    for path, said in [
        (missing, f"error: cannot read {missing}: No such file or directory\n"),
        (latin, f"error: {latin} is not UTF-8 text: save it as CSV UTF-8\n"),
    ]:
        done = torch_cli("correlate", str(path), "--user", "x", "--reason", "weekly", check=False)
        assert (done.returncode, done.stdout, done.stderr) == (1, "", said)


def test_findings_that_would_be_formulas_in_a_spreadsheet_are_written_as_text() -> None:
    row = {
        "line": 2,
        "crime_ref": '=HYPERLINK("http://example.invalid","41/1/26")',
        "offence": "@SUM(A1)",
        "subject_id": 7,
        "subject_ref": "IOM-0007",
        "verdict": "present",
        "closest_m": 3.5,
        "closest_at": "2026-11-21T01:10:00Z",
        "caveat": "",
    }
    lines = correlate.to_csv([row, {**row, "crime_ref": "41/2/26", "offence": "burglary"}])
    assert lines.splitlines() == [
        "line,crime_ref,offence,subject_id,subject_ref,verdict,closest_m,closest_at,caveat",
        '2,"\'=HYPERLINK(""http://example.invalid"",""41/1/26"")",\'@SUM(A1),7,IOM-0007,'
        "present,3.5,2026-11-21T01:10:00Z,",
        "2,41/2/26,burglary,7,IOM-0007,present,3.5,2026-11-21T01:10:00Z,",
    ]
