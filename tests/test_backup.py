"""A backup taken with `torch db backup` restores into an empty database, whole and exact."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import DATABASE_URL, TORCH, Database, add_user, service_env
from tests.test_retention import OLD, TODAY, fixes_on

RESTORED = DATABASE_URL.rsplit("/", 1)[0] + "/torch_restore"


def as_postgres(sql: str, database: str = "postgres") -> None:
    sudo = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else ["sudo", "-u", "postgres"]
    subprocess.run([*sudo, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
                   check=True, capture_output=True)  # fmt: skip


@pytest.fixture
def empty_database() -> Iterator[Database]:
    """torch_restore, empty but for the extensions (as scripts/setup.sh makes a database)."""
    as_postgres("DROP DATABASE IF EXISTS torch_restore")
    as_postgres("CREATE DATABASE torch_restore OWNER torch")
    as_postgres("CREATE EXTENSION postgis; CREATE EXTENSION btree_gist", "torch_restore")
    target = Database(RESTORED)
    yield target
    target.close()
    as_postgres("DROP DATABASE torch_restore")


def fingerprint(db: Database) -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of all its rows."""
    tables = [
        r["tablename"]
        for r in db.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'spatial_ref_sys' ORDER BY 1"
        )
    ]
    return {
        t: tuple(
            db.fetch(
                "SELECT count(*) AS n, md5(coalesce(string_agg(r::text, ',' ORDER BY r::text),"
                f" '')) AS digest FROM \"{t}\" r"
            )[0].values()
        )
        for t in tables
    }


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = service_env(TORCH_ADMIN_DATABASE_URL=url, TORCH_DATABASE_URL=url)
    return subprocess.run([TORCH, *args], env=env, capture_output=True, text=True, timeout=120)


def test_backup_restores_every_table_exactly(
    db: Database, empty_database: Database, tmp_path: Path
) -> None:
    fixes_on(db, [OLD, TODAY])
    add_user("backup-admin", "admin")
    held = cli(
        "hold", "add", "IOM-R1", "--from", f"{OLD}T00:00:00Z", "--to", f"{OLD}T12:00:00Z",
        "--case", "OP-1", "--reason", "trial", "--user", "backup-admin", url=DATABASE_URL,
    )  # fmt: skip
    assert held.returncode == 0, held.stderr  # audited: the audit chain has a record
    dump = tmp_path / "torch.dump"

    taken = cli("db", "backup", str(dump), url=DATABASE_URL)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith(f"{dump}: ")
    assert "dumped table" in taken.stderr  # progress
    restored = cli("db", "restore", str(dump), url=RESTORED)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.strip() == f"restored {dump} into the configured database"

    before = fingerprint(db)
    assert before["fixes"][0] == 8  # four a day, in the two day partitions
    assert before[f"fixes_{OLD:%Y%m%d}"][0] == 4
    assert fingerprint(empty_database) == before
    verified = cli("audit", "verify", url=RESTORED)
    assert verified.returncode == 0, verified.stdout
    assert "audit trail intact" in verified.stdout
    upgraded = cli("db", "upgrade", url=RESTORED)
    assert upgraded.returncode == 0, upgraded.stderr
    assert fingerprint(empty_database) == before  # at the newest schema already

    again = cli("db", "restore", str(dump), url=RESTORED)  # not empty now: refused whole
    assert again.returncode == 1
    assert "pg_restore failed: " in again.stderr
    assert fingerprint(empty_database) == before
