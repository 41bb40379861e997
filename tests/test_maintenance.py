"""The maintenance loop makes the day partitions of fixes ahead and applies retention."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from tests.services import TORCH, Database, add_user, service_env, torch_cli, wait_for
from tests.test_retention import OLD, TODAY, fixes_on, name, partitions


def test_one_round_makes_partitions_ahead_and_purges_past_retention(db: Database) -> None:
    for partition in partitions(db):  # days left by other tests, empty
        db.execute(f'DROP TABLE "{partition}"')
    fixes_on(db, [OLD])
    ahead = [name(TODAY + timedelta(days=k)) for k in range(4)]

    out = torch_cli("maintain", "--once", "--days-ahead", "3").stdout
    assert out.strip() == "4 partitions made (3 days ahead); retention not applied"
    assert partitions(db) == [name(OLD), *ahead]

    add_user("ops", "admin")
    # a protected person's fixes: one 91 days old (past TORCH_VICTIM_RETENTION_DAYS), one new
    torch_cli("victim", "add", "VIC-OLD")
    for age in (91, 1):
        db.execute(
            "INSERT INTO victim_fixes (victim_id, fix_time, received_at, lat, lon, position)"
            " SELECT id, now() - make_interval(days => $1), now(), 51.75, -0.34,"
            " ST_SetSRID(ST_MakePoint(515000, 207000), 27700) FROM victims",
            age,
        )
    # dead letters (positions as sent): one received 400 days ago, past retention; one today
    for age in (400, 0):
        db.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, reason_code, reason, serial)"
            " VALUES (now() - make_interval(days => $1), 'tags/X9/fixes', '{}', 'unknown_serial',"
            " 'no device', 'X9')",
            age,
        )
    out = torch_cli("maintain", "--once", "--days-ahead", "3", "--user", "ops").stdout
    assert out.strip() == (
        "0 partitions made (3 days ahead); 1 day past retention, 4 fixes purged, 0 kept;"
        " 1 protected persons' fixes purged; 1 dead letters purged"
    )
    assert partitions(db) == ahead
    assert db.count("victim_fixes") == 1
    assert db.fetchval("SELECT received_at > now() - interval '1 day' FROM dead_letters")
    purge = db.fetch(
        "SELECT u.name, a.method FROM audit_log a JOIN users u ON u.id = a.user_id ORDER BY a.id"
    )
    assert [(r["name"], r["method"]) for r in purge] == [("ops", "PURGE")] * 3

    refused = torch_cli("maintain", "--once", "--user", "nobody", check=False)
    assert refused.returncode == 1


def test_the_loop_runs_rounds_until_told_to_stop(db: Database, tmp_path: Path) -> None:
    for partition in partitions(db):
        db.execute(f'DROP TABLE "{partition}"')
    log = tmp_path / "maintain.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TORCH, "maintain", "--every", "0.2", "--days-ahead", "2"],
            env=service_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: log.read_text().count("maintenance:") >= 2)
        db.execute(f'DROP TABLE "{name(TODAY + timedelta(days=2))}"')  # made again next round
        wait_for(lambda: name(TODAY + timedelta(days=2)) in partitions(db))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    rounds = [json.loads(line) for line in log.read_text().splitlines()]
    assert rounds[0]["partitions_made"] == 3
    assert rounds[1]["partitions_made"] == 0
    assert partitions(db) == [name(TODAY + timedelta(days=k)) for k in range(3)]


def test_every_table_has_a_place_in_the_citus_layout(db: Database) -> None:
    from torch.store import citus

    tables = {
        r["relname"]
        for r in db.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'p') AND NOT relispartition AND relname <> 'spatial_ref_sys'"
        )
    }
    placed = set(re.findall(r"create_\w+_table\('(\w+)'", citus.DISTRIBUTE))
    assert tables == placed | set(citus.COORDINATOR_ONLY)
    assert "create_distributed_table('fixes', 'device_id')" in citus.DISTRIBUTE


def test_distribute_refuses_a_database_without_citus(db: Database) -> None:
    refused = torch_cli("db", "distribute", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: the citus extension is not installed in this database: this is not a Citus"
        " coordinator (docs/citus.md)"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["deadletters", "list", "--limit", "-1"],
            "torch deadletters list: error: argument --limit: -1 is less than 1",
        ),
        (
            ["maintain", "--once", "--every", "-1"],
            "torch maintain: error: argument --every: -1 is not more than 0",
        ),
        (
            ["maintain", "--once", "--days-ahead", "0"],
            "torch maintain: error: argument --days-ahead: 0 is less than 1",
        ),
    ],
)
def test_numbers_out_of_range_are_usage_errors(args: list[str], said: str) -> None:
    done = torch_cli(*args, check=False)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (2, said)


def test_an_unknown_migration_is_named_not_a_traceback() -> None:
    done = torch_cli("db", "upgrade", "nope", check=False)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (
        1,
        "error: cannot upgrade to 'nope': Can't locate revision identified by 'nope'",
    )
