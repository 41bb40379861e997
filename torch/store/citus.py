"""Distributing the tables over a Citus cluster (Citus 12 on PostgreSQL 15): docs/citus.md.

Run once, on the coordinator, as the owner (`torch db distribute`), after `torch db upgrade`
and before the services start; it moves the rows already there to the worker nodes.
"""

from __future__ import annotations

import asyncpg

from torch.errors import Conflict

DISTRIBUTE = """
--
-- Three groups:
--   * by device: fixes, the queue of hours to tile, device state and events: everything the
--     ingest worker writes per fix, co-located, so a device's rows of one batch meet on one
--     shard and a device's track is read from one;
--   * by subject: track tiles and blocks: what the queries read per subject;
--   * reference tables (a copy on every node): who wears what, zones, users, teams: small,
--     read by nearly every query, joined to both groups above.
-- Everything else (audit, queries recorded, jobs, dead letters, the outbox) stays on the
-- coordinator: written rarely, read by id.

SET citus.shard_count = 64;  -- a few shards a core: 64 is room for a 16-node cluster

-- reference tables first: distributed tables keep foreign keys to them
SELECT create_reference_table('forces');
SELECT create_reference_table('teams');
SELECT create_reference_table('subjects');
SELECT create_reference_table('devices');
SELECT create_reference_table('device_assignments');
SELECT create_reference_table('users');
SELECT create_reference_table('zones');
SELECT create_reference_table('zone_versions');
SELECT create_reference_table('legal_holds');
SELECT create_reference_table('victims');
SELECT create_reference_table('victim_officers');
SELECT create_reference_table('victim_links');

-- by device (fixes is partitioned by day: its partitions, present and future, follow it)
SELECT create_distributed_table('fixes', 'device_id');
SELECT create_distributed_table('track_tiles_dirty', 'device_id', colocate_with => 'fixes');
SELECT create_distributed_table('device_state', 'device_id', colocate_with => 'fixes');
SELECT create_distributed_table('device_events', 'device_id', colocate_with => 'fixes');

-- by subject
SELECT create_distributed_table('track_tiles', 'subject_id', colocate_with => 'none');
SELECT create_distributed_table('track_blocks', 'subject_id', colocate_with => 'track_tiles');
SELECT create_distributed_table('track_blocks_dirty', 'subject_id', colocate_with => 'track_tiles');
"""

# Left on the coordinator: written rarely, read by id (docs/citus.md).
COORDINATOR_ONLY = (
    "alembic_version", "audit_log", "api_tokens", "proximity_queries", "correlation_jobs",
    "dead_letters", "alerts", "alert_actions", "alert_outbox", "breach_episodes",
    "broker_accounts", "victim_fixes", "victim_episodes", "zone_rechecks",
)  # fmt: skip


async def distribute(conn: asyncpg.Connection) -> int:
    """Run DISTRIBUTE in one transaction; returns the tables distributed or referenced."""
    if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
        raise Conflict(
            "the citus extension is not installed in this database: this is not a Citus"
            " coordinator (docs/citus.md)"
        )
    async with conn.transaction():
        await conn.execute(DISTRIBUTE)
    return DISTRIBUTE.count("SELECT create_")
