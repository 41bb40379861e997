"""Retention drops whole day partitions, keeps what a legal hold covers, and audits both."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests.services import Database, torch_cli

TODAY = datetime.now(UTC).date()
OLD = TODAY - timedelta(days=500)  # two days past the default retention of 365 days
# a day within retention whose every hour is over, and so tiled, whatever the time of the run
RECENT = TODAY - timedelta(days=1)


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def fixes_on(db: Database, days: list[date], serial: str = "R1", team: int = 1) -> None:
    """A subject of the team wearing tag `serial` since long ago, with a fix at 01:00, 05:00,
    09:00 and 13:00 of each day."""
    subject = db.fetchval(
        "INSERT INTO subjects (ref, team_id) VALUES ($1, $2) RETURNING id", f"IOM-{serial}", team
    )
    device = db.fetchval("INSERT INTO devices (serial) VALUES ($1) RETURNING id", serial)
    db.execute(
        "INSERT INTO device_assignments (device_id, subject_id, during)"
        " VALUES ($1, $2, tstzrange('2020-01-01', NULL))",
        device,
        subject,
    )
    for day in days:
        db.execute("SELECT torch_ensure_fix_partitions($1, $1)", day)
    for day in days:
        for hour in (1, 5, 9, 13):
            db.execute(
                "INSERT INTO fixes (device_id, fix_time, received_at, lat, lon, position)"
                " VALUES ($1, $2, $2, 51.75, -0.34,"
                " ST_Transform(ST_SetSRID(ST_MakePoint(-0.34, 51.75), 4326), 27700))",
                device,
                at(day, hour),
            )


def dead_letter(db: Database, received: datetime, serial: str) -> None:
    db.execute(
        "INSERT INTO dead_letters (received_at, topic, payload, reason_code, reason, serial)"
        " VALUES ($1, $2, '{}', 'bad_json', 'not JSON', $3)",
        received,
        f"tags/{serial}/fixes",
        serial,
    )


def partitions(db: Database) -> list[str]:
    rows = db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'fixes'::regclass ORDER BY 1"
    )
    return [r["relname"] for r in rows]


def name(day: date) -> str:
    return f"fixes_{day:%Y%m%d}"


def test_purge_drops_old_days_and_trims_held_ones(db: Database) -> None:
    for partition in partitions(db):  # days left by other tests, empty
        db.execute(f'DROP TABLE "{partition}"')
    d1, d2 = OLD, OLD + timedelta(days=1)
    fixes_on(db, [d1, d2, RECENT])
    torch_cli("tiles", "rebuild")
    assert db.count("track_tiles") == 12
    assert (
        db.fetchval("SELECT count(*) FROM track_blocks WHERE block_start < $1", at(RECENT, 0)) == 6
    )
    torch_cli("user", "add", "rita", "--role", "supervisor")
    held = torch_cli(
        "hold", "add", "IOM-R1",
        "--from", at(d2, 4).isoformat(), "--to", at(d2, 10).isoformat(),
        "--case", "OP-KESTREL", "--reason", "trial in March", "--user", "rita",
    ).stdout  # fmt: skip
    assert held == (
        f"legal hold 1 on IOM-R1 from {at(d2, 4).isoformat()} to {at(d2, 10).isoformat()}\n"
    )
    # dead letters, which hold positions as sent: of R1 on each old day (the second's under
    # the hold), of a serial nobody registered on the first, and of R1 yesterday
    for received in (at(d1, 6), at(d2, 6), at(RECENT, 6)):
        dead_letter(db, received, "R1")
    dead_letter(db, at(d1, 7), "NOBODY")
    dry = torch_cli("retention", "run", "--dry-run").stdout.splitlines()
    assert dry == [
        f"{name(d1)}: would drop (4 fixes)",
        f"{name(d2)}: would trim (2 fixes; 2 kept)",
        "retention 365 days unless a force sets its own: 2 day partitions, 6 fixes to purge,"
        " 2 kept (legal hold or a longer retention)",
        f"dead letters received before {TODAY - timedelta(days=365)}: 2 to purge",
    ]
    assert db.count("fixes") == 12 and db.count("dead_letters") == 4  # a dry run changes nothing

    refused = torch_cli("retention", "run", check=False)
    assert (refused.returncode, refused.stderr) == (
        1,
        "error: --user NAME is needed to purge (the purge is audited)\n",
    )
    torch_cli("retention", "run", "--user", "rita")
    letters = db.fetch("SELECT received_at, serial FROM dead_letters ORDER BY received_at")
    assert [tuple(r) for r in letters] == [(at(d2, 6), "R1"), (at(RECENT, 6), "R1")]
    assert name(d1) not in partitions(db)
    assert name(d2) in partitions(db) and name(RECENT) in partitions(db)
    kept = db.fetch("SELECT fix_time FROM fixes WHERE fix_time < $1 ORDER BY 1", at(RECENT, 0))
    assert [r["fix_time"] for r in kept] == [at(d2, 5), at(d2, 9)]
    assert db.count("fixes") == 6
    # the trimmed day is a partition like the others: the index and the key came back
    indexes = db.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = $1", name(d2))
    assert indexes == 2
    audit = db.fetch("SELECT method, reason, subject_ids FROM audit_log ORDER BY seq")
    assert [(r["method"], r["subject_ids"]) for r in audit] == [
        ("HOLD", [1]),
        ("PURGE", []),
        ("PURGE", []),
    ]
    assert audit[1]["reason"] == (
        "2 day partitions, 6 fixes purged, 2 kept (legal hold or a longer retention)"
    )
    before = datetime.combine(TODAY - timedelta(days=365), datetime.min.time(), UTC)
    assert audit[2]["reason"] == f"2 dead letters received before {before.isoformat()} purged"
    # the purged hours' tiles went, and the blocks that held them keep only the held hours
    tiles = db.fetch(
        "SELECT tile_start FROM track_tiles WHERE tile_start < $1 ORDER BY 1", at(RECENT, 0)
    )
    assert [r["tile_start"] for r in tiles] == [at(d2, 5), at(d2, 9)]
    blocks = db.fetch(
        "SELECT block_start, marks, length(sketch) AS size FROM track_blocks"
        " WHERE block_start < $1 ORDER BY 1",
        at(RECENT, 0),
    )
    assert [tuple(r) for r in blocks] == [
        (at(d2, 0), [0, 0, 0, 0, 0, 0, 1], 8),
        (at(d2, 6), [0, 0, 0, 0, 1, 1, 1], 8),
    ]

    # released, the held fixes follow retention like any others
    torch_cli("hold", "release", "1", "--reason", "trial over", "--user", "rita")
    assert torch_cli("retention", "run", "--user", "rita").stdout.splitlines()[0] == (
        f"{name(d2)}: did drop (2 fixes)"
    )
    assert db.count("fixes") == 4 and name(d2) not in partitions(db)
    assert db.fetchval("SELECT array_agg(received_at) FROM dead_letters") == [at(RECENT, 6)]
    assert [r["method"] for r in db.fetch("SELECT method FROM audit_log ORDER BY seq")] == [
        "HOLD",
        "PURGE",
        "PURGE",
        "RELEASE",
        "PURGE",
        "PURGE",
    ]


def test_a_force_keeps_its_fixes_for_its_own_retention(db: Database) -> None:
    for partition in partitions(db):
        db.execute(f'DROP TABLE "{partition}"')
    torch_cli("team", "add", "long", "--force", "archivists")
    torch_cli("user", "add", "rita", "--role", "supervisor")
    assert torch_cli("force", "retention", "archivists", "--days", "730").stdout == (
        "force archivists: fixes kept for 730 days\n"
    )
    fixes_on(db, [OLD], "R1")  # the default force: 365 days
    fixes_on(db, [OLD], "R2", team=db.fetchval("SELECT id FROM teams WHERE name = 'long'"))
    torch_cli("retention", "run", "--user", "rita")
    rows = db.fetch("SELECT d.serial FROM fixes f JOIN devices d ON d.id = f.device_id")
    assert sorted(r["serial"] for r in rows) == ["R2"] * 4
    # back to the default, they go too
    torch_cli("force", "retention", "archivists", "--default")
    assert torch_cli("retention", "run", "--user", "rita").stdout.splitlines()[0] == (
        f"{name(OLD)}: did drop (4 fixes)"
    )
    assert db.count("fixes") == 0
