"""Recorded crime-scene answers kept as the bytes sent, compressed with lz4.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from migrations import execute_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = """
-- An answer for two thousand subjects is about 0.8 MB of JSON; parsing it into jsonb
-- took a fifth of the time of a one-hour answer. The bytes sent are also what an
-- evidence pack should rest on.
ALTER TABLE proximity_queries
    ALTER COLUMN response TYPE bytea USING convert_to(response::text, 'UTF8');
DO $$
BEGIN
    ALTER TABLE proximity_queries ALTER COLUMN response SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'no lz4 in this PostgreSQL: answers are compressed with pglz';
END $$;
"""

DOWNGRADE = """
ALTER TABLE proximity_queries ALTER COLUMN response SET COMPRESSION default;
ALTER TABLE proximity_queries
    ALTER COLUMN response TYPE jsonb USING convert_from(response, 'UTF8')::jsonb;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
