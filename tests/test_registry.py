"""Subjects, devices and assignments through the command line, checked in the database."""

from __future__ import annotations

import base64

import asyncpg
import pytest

from tests.services import Database, add_user, torch_cli
from torch.broker import password_hash


def test_subject_device_and_assignment(db: Database) -> None:
    assert torch_cli("subject", "add", "IOM-0042", "--name", "A Person").stdout == (
        "subject IOM-0042 added (id 1)\n"
    )
    first, password = torch_cli("device", "add", "HT-1001", "--model", "Buddi").stdout.splitlines()
    assert first == "device HT-1001 added (id 1); broker user HT-1001, password:"
    assert len(password) == 43  # 32 random bytes, URL-safe base64
    stored = db.fetchval("SELECT password_hash FROM broker_accounts WHERE name = 'HT-1001'")
    iterations, salt = stored.split("$")[2:4]
    assert stored == password_hash(password, base64.b64decode(salt), int(iterations))
    assert password not in stored
    out = torch_cli(
        "assign",
        "HT-1001",
        "IOM-0042",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-11-20T00:00:00Z",
    ).stdout
    assert out == (
        "device HT-1001 assigned to IOM-0042 from 2026-11-01T00:00:00+00:00"
        " to 2026-11-20T00:00:00+00:00\n"
    )
    row = db.fetch(
        "SELECT device_id, subject_id, lower(during) AS a, upper(during) AS b"
        " FROM device_assignments"
    )[0]
    assert (row["device_id"], row["subject_id"]) == (1, 1)
    assert (row["a"].isoformat(), row["b"].isoformat()) == (
        "2026-11-01T00:00:00+00:00",
        "2026-11-20T00:00:00+00:00",
    )


def test_duplicates_and_unknowns_are_refused_with_a_message(db: Database) -> None:
    torch_cli("subject", "add", "IOM-0001")
    again = torch_cli("subject", "add", "IOM-0001", check=False)
    assert (again.returncode, again.stderr) == (1, "error: subject IOM-0001 already exists\n")
    missing = torch_cli("assign", "NOPE", "IOM-0001", check=False)
    assert (missing.returncode, missing.stderr) == (1, "error: no device with serial NOPE\n")
    bad = torch_cli("device", "add", "bad serial", check=False)
    assert bad.returncode == 1
    assert (
        bad.stderr == "error: serial 'bad serial' must be 1-64 letters, digits, '.', '_' or '-'\n"
    )
    usage = torch_cli("assign", "X", "Y", "--from", "tomorrow", check=False)
    assert usage.returncode == 2 and "'tomorrow' is not an RFC 3339 time" in usage.stderr


def test_overlapping_assignments_are_refused_for_device_and_subject(db: Database) -> None:
    for cmd in (
        ("subject", "add", "S1"),
        ("subject", "add", "S2"),
        ("device", "add", "D1"),
        ("device", "add", "D2"),
    ):
        torch_cli(*cmd)
    torch_cli(
        "assign", "D1", "S1", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-10T00:00:00Z"
    )
    same_device = torch_cli("assign", "D1", "S2", "--from", "2026-11-09T00:00:00Z", check=False)
    assert same_device.returncode == 1
    assert same_device.stderr.startswith(
        "error: the device already has an assignment that overlaps"
    )
    same_subject = torch_cli(
        "assign",
        "D2",
        "S1",
        "--from",
        "2026-11-05T00:00:00Z",
        "--to",
        "2026-11-06T00:00:00Z",
        check=False,
    )
    assert same_subject.returncode == 1
    assert same_subject.stderr.startswith(
        "error: the subject already has an assignment that overlaps"
    )
    # Back to back is fine: ranges are half-open.
    torch_cli(
        "assign", "D1", "S2", "--from", "2026-11-10T00:00:00Z", "--to", "2026-11-20T00:00:00Z"
    )
    assert db.count("device_assignments") == 2
    # a fitting still to come is recorded too, with nothing stored to check again
    torch_cli("assign", "D1", "S2", "--from", "2099-01-01T00:00:00Z")
    assert db.count("device_assignments") == 3
    rechecks = db.fetch("SELECT from_at, to_at FROM zone_rechecks ORDER BY id")
    assert [(r["from_at"].isoformat(), r["to_at"].isoformat()) for r in rechecks] == [
        ("2026-11-01T00:00:00+00:00", "2026-11-10T00:00:00+00:00"),
        ("2026-11-10T00:00:00+00:00", "2026-11-20T00:00:00+00:00"),
    ]


def test_a_tag_taken_off_ends_its_assignment_and_can_be_worn_by_another(db: Database) -> None:
    for cmd in (("subject", "add", "S1"), ("subject", "add", "S2"), ("device", "add", "D1")):
        torch_cli(*cmd)
    add_user("fitter", "probation")
    add_user("sam", "supervisor")
    torch_cli("assign", "D1", "S1", "--from", "2026-11-01T00:00:00Z", "--user", "fitter")
    out = torch_cli("unassign", "D1", "--at", "2026-11-10T08:30:00Z", "--user", "sam").stdout
    assert out == "device D1 taken off S1 at 2026-11-10T08:30:00+00:00\n"
    nobody = torch_cli("assign", "D1", "S2", "--user", "ghost", check=False)
    assert (nobody.returncode, nobody.stderr) == (1, "error: no active user named ghost\n")
    torch_cli("assign", "D1", "S2", "--from", "2026-11-10T09:00:00Z")
    rows = db.fetch(
        "SELECT s.ref, lower(a.during) AS a, upper(a.during) AS b FROM device_assignments a"
        " JOIN subjects s ON s.id = a.subject_id ORDER BY lower(a.during)"
    )
    assert [(r["ref"], r["a"].isoformat(), r["b"] and r["b"].isoformat()) for r in rows] == [
        ("S1", "2026-11-01T00:00:00+00:00", "2026-11-10T08:30:00+00:00"),
        ("S2", "2026-11-10T09:00:00+00:00", None),
    ]
    # the gap between the two: worn by nobody
    gap = torch_cli("unassign", "D1", "--at", "2026-11-10T08:45:00Z", check=False)
    assert (gap.returncode, gap.stderr) == (
        1,
        "error: device D1 is not assigned to anyone at 2026-11-10T08:45:00+00:00\n",
    )
    start = torch_cli("unassign", "D1", "--at", "2026-11-10T09:00:00Z", check=False)
    assert (start.returncode, start.stderr) == (
        1,
        "error: --at 2026-11-10T09:00:00+00:00 is when the assignment to S2 starts: it would"
        " end before it began; give a later time\n",
    )
    unknown = torch_cli("unassign", "NOPE", check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "error: no device with serial NOPE\n")
    # the register, with when each assignment and its end were recorded (by the database's
    # clock: this test's own steps, a moment ago)
    s1, s2 = db.fetch(
        "SELECT recorded_at, end_recorded_at FROM device_assignments ORDER BY lower(during)"
    )
    assert s1["end_recorded_at"] is not None and s2["end_recorded_at"] is None
    lines = torch_cli("assignments", "--serial", "D1").stdout.splitlines()
    assert lines == [
        "serial\tsubject\tfrom\tto\trecorded\tend recorded\trecorded by\tend recorded by",
        f"D1\tS1\t2026-11-01T00:00:00+00:00\t2026-11-10T08:30:00+00:00"
        f"\t{s1['recorded_at'].isoformat()}\t{s1['end_recorded_at'].isoformat()}\tfitter\tsam",
        f"D1\tS2\t2026-11-10T09:00:00+00:00\topen\t{s2['recorded_at'].isoformat()}\t-\t-\t-",
    ]
    assert torch_cli("assignments", "--ref", "S2").stdout.splitlines()[1:] == lines[2:]
    assert torch_cli("assignments", "--ref", "S3").stdout.splitlines()[1:] == []


def test_database_itself_refuses_overlap(db: Database) -> None:
    """The rule holds for every writer, not only the CLI."""
    s = db.fetchval("INSERT INTO subjects (ref) VALUES ('S9') RETURNING id")
    d = db.fetchval("INSERT INTO devices (serial) VALUES ('D9') RETURNING id")
    db.execute(
        "INSERT INTO device_assignments (device_id, subject_id, during)"
        " VALUES ($1, $2, '[2026-01-01,2026-02-01)')",
        d,
        s,
    )
    with pytest.raises(asyncpg.ExclusionViolationError):
        db.execute(
            "INSERT INTO device_assignments (device_id, subject_id, during)"
            " VALUES ($1, $2, '[2026-01-31,2026-03-01)')",
            d,
            s,
        )


def test_fixes_are_partitioned_by_day_with_the_composite_index(db: Database) -> None:
    db.execute("SELECT torch_ensure_fix_partitions('2026-11-20', '2026-11-22')")
    names = [
        r["relname"]
        for r in db.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'fixes'::regclass AND c.relname BETWEEN 'fixes_20261120'"
            " AND 'fixes_20261122' ORDER BY 1"
        )
    ]
    assert names == ["fixes_20261120", "fixes_20261121", "fixes_20261122"]
    assert db.fetchval("SELECT torch_ensure_fix_partitions('2026-11-20', '2026-11-22')") == 0
    index = db.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'fixes_20261121_position_fix_time_idx'"
    )
    assert index == (
        "CREATE INDEX fixes_20261121_position_fix_time_idx ON public.fixes_20261121"
        ' USING gist ("position", fix_time)'
    )
