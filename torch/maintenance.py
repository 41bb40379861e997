"""The maintenance loop: day partitions of fixes made ahead of time, and retention applied.

The ingest worker makes a missing partition itself when a fix needs one, but that puts a
DDL statement (and its lock on `fixes`) into the ingest path at midnight; made days ahead,
it never does. Retention detaches and drops the days past it (torch.store.retention), on
the authority of a named user, and is audited like a purge from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from torch.store import db, ingest, retention, users, victims
from torch.words import plural

log = logging.getLogger("torch.maintenance")


@dataclass(frozen=True, slots=True)
class Round:
    made: int  # partitions created
    purged_days: int | None  # None: retention not applied (no user named for it)
    purged_fixes: int
    kept_fixes: int
    victim_fixes: int = 0  # protected persons' fixes purged
    dead_letters: int = 0  # dead letters purged

    def summary(self, days_ahead: int) -> str:
        made = f"{plural(self.made, 'partition')} made ({days_ahead} days ahead)"
        if self.purged_days is None:
            return f"{made}; retention not applied"
        days = plural(self.purged_days, "day")
        return (
            f"{made}; {days} past retention, {self.purged_fixes} fixes purged,"
            f" {self.kept_fixes} kept; {self.victim_fixes} protected persons' fixes purged;"
            f" {self.dead_letters} dead letters purged"
        )


async def once(
    conn: asyncpg.Connection,
    days_ahead: int,
    retention_days: int,
    user_name: str | None,
    victim_days: int = 90,
) -> Round:
    today = datetime.now(UTC).date()
    ahead = [today + timedelta(days=k) for k in range(days_ahead + 1)]
    made = await ingest.ensure_partitions(conn, ahead)
    if user_name is None:
        return Round(made, None, 0, 0)
    user = await users.user_named(conn, user_name)
    if user is None:
        log.error("retention not applied: no active user named %s", user_name)
        return Round(made, None, 0, 0)
    done = await retention.apply(conn, today, retention_days, user)
    purged, kept = retention.totals(done.days)
    gone = await victims.purge(conn, datetime.now(UTC) - timedelta(days=victim_days), user)
    return Round(made, len(done.days), purged, kept, gone, done.letters)


async def loop(
    url: str, every_s: float, days_ahead: int, retention_days: int, user_name: str | None,
    stop: asyncio.Event, victim_days: int = 90,
) -> None:  # fmt: skip
    """A round every `every_s` seconds until `stop` is set; a failed round is logged and
    tried again at the next."""
    while not stop.is_set():
        try:
            conn = await db.connect(url, application_name="torch-maintain")
            try:
                r = await once(conn, days_ahead, retention_days, user_name, victim_days)
            finally:
                await conn.close()
            log.info(
                "maintenance: %s",
                r.summary(days_ahead),
                extra={"partitions_made": r.made, "purged_fixes": r.purged_fixes},
            )
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("maintenance round failed (%s); next in %.0f s", err, every_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
