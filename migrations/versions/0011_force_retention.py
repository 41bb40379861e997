"""Forces, each with its own retention period (NULL: TORCH_RETENTION_DAYS).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE forces (
    name           text PRIMARY KEY,
    retention_days integer CHECK (retention_days > 0)
);
INSERT INTO forces (name) SELECT DISTINCT force FROM teams;
ALTER TABLE teams ADD CONSTRAINT teams_force FOREIGN KEY (force) REFERENCES forces (name);
"""

DOWNGRADE = """
ALTER TABLE teams DROP CONSTRAINT teams_force;
DROP TABLE forces;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
