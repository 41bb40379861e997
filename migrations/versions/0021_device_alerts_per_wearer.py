"""One unresolved device alert of a kind per device and wearer, not per device: a tag
reissued to another subject with an alert of its last wearer's still open raised nothing for
the new one.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UPGRADE = """
DROP INDEX alerts_one_open_per_device;
-- a tag worn by nobody (subject_id NULL) is one wearer too
CREATE UNIQUE INDEX alerts_one_open_per_device ON alerts (device_id, subject_id, type)
    NULLS NOT DISTINCT WHERE device_id IS NOT NULL AND status <> 'closed';
"""

DOWNGRADE = """
DROP INDEX alerts_one_open_per_device;
CREATE UNIQUE INDEX alerts_one_open_per_device ON alerts (device_id, type)
    WHERE device_id IS NOT NULL AND status <> 'closed';
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
