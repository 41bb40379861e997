"""A link to a protected person holds from a time (a subject's fixes before it are not judged
against the person), and records who ended it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE victim_links ADD COLUMN valid_from timestamptz;
UPDATE victim_links SET valid_from = created_at;
ALTER TABLE victim_links ALTER COLUMN valid_from SET NOT NULL,
                         ALTER COLUMN valid_from SET DEFAULT now();
ALTER TABLE victim_links ADD COLUMN ended_by bigint REFERENCES users (id);
ALTER TABLE victim_links ADD CONSTRAINT victim_links_ends_after_start
    CHECK (ended_at IS NULL OR ended_at >= valid_from);
"""

DOWNGRADE = """
ALTER TABLE victim_links DROP CONSTRAINT victim_links_ends_after_start;
ALTER TABLE victim_links DROP COLUMN ended_by, DROP COLUMN valid_from;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
