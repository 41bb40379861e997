"""Logical backups with pg_dump and their restore with pg_restore.

The dump is PostgreSQL's custom format (compressed, restorable table by table). The
password reaches pg_dump and pg_restore in their environment (PGPASSWORD), never on a
command line, where any local user could read it.

A restore goes into an empty database that already has the PostGIS and btree_gist
extensions (creating them needs a superuser; `scripts/setup.sh` and
`deploy/postgres/init.sql` do it) and a cluster that has the roles (`pg_dumpall
--roles-only`): the dump's own extension entries are left out, and it is restored in one
transaction, so that a failure leaves the database empty rather than half restored.
The rows of PostGIS's spatial_ref_sys come with the extension, not from the dump.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from torch.errors import TorchError

Progress = Callable[[int, int], None]  # (tables done, tables in all)


def pg_env(url: str) -> dict[str, str]:
    """libpq's environment variables for a postgresql:// URL."""
    u = urlsplit(url)
    env = dict(os.environ)
    env.update(
        PGHOST=u.hostname or "127.0.0.1",
        PGPORT=str(u.port or 5432),
        PGDATABASE=unquote(u.path.lstrip("/")),
    )
    if u.username:
        env["PGUSER"] = unquote(u.username)
    if u.password:
        env["PGPASSWORD"] = unquote(u.password)
    return env


async def tables_with_data(conn: asyncpg.Connection) -> int:
    """The tables of the public schema (partitions and PostGIS's own included) whose rows
    a dump holds."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    )


def dump(url: str, path: Path, tables: int, progress: Progress) -> None:
    """Dump the database at `url` into `path`; `tables` is how many have data to dump."""
    _run(
        ["pg_dump", "--format=custom", "--verbose", f"--file={path}"],
        pg_env(url),
        re.compile(r"dumping contents of table"),
        tables,
        progress,
    )


def restore(url: str, path: Path, progress: Progress) -> None:
    """Restore the dump at `path` into the (empty) database at `url`."""
    env = pg_env(url)
    listing = subprocess.run(
        ["pg_restore", "--list", str(path)], env=env, check=True, capture_output=True, text=True
    ).stdout
    kept = [line for line in listing.splitlines() if not _extension_entry(line)]
    tables = sum(" TABLE DATA " in line for line in kept)
    with tempfile.NamedTemporaryFile("w", suffix=".list") as entries:
        entries.write("\n".join(kept) + "\n")
        entries.flush()
        _run(
            [
                "pg_restore", "--verbose", "--single-transaction", "--exit-on-error",
                f"--use-list={entries.name}", f"--dbname={env['PGDATABASE']}", str(path),
            ],
            env,
            re.compile(r"processing data for table"),
            tables,
            progress,
        )  # fmt: skip


def _extension_entry(line: str) -> bool:
    """An entry of `pg_restore --list` that creates or comments on an extension, or holds the
    rows of PostGIS's own table (the extension, already there, has them)."""
    return bool(
        re.search(r" (EXTENSION|COMMENT - EXTENSION) ", line)
        or re.search(r" TABLE DATA public spatial_ref_sys ", line)
    )


def _run(cmd: list[str], env: dict[str, str], step: re.Pattern[str], total: int,
         progress: Progress) -> None:  # fmt: skip
    """Run a pg_dump or pg_restore with --verbose, reporting a step per table it reports."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    done, errors = 0, []
    for line in proc.stderr:
        if step.search(line):
            done += 1
            progress(min(done, total), total)
        elif "error" in line.lower() or "fatal" in line.lower():
            errors.append(line.strip())
    if proc.wait() != 0:
        raise TorchError(f"{cmd[0]} failed: {' / '.join(errors) or 'see its messages'}")
