"""Who recorded an assignment and its end, where the command named them: the register is
what ties a fix to its wearer, and a court may ask who wrote it.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE device_assignments ADD COLUMN recorded_by bigint REFERENCES users (id),
                               ADD COLUMN end_recorded_by bigint REFERENCES users (id);
"""

DOWNGRADE = """
ALTER TABLE device_assignments DROP COLUMN recorded_by, DROP COLUMN end_recorded_by;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
