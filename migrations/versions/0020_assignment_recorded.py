"""When an assignment, and its end, were recorded: a tag fitted at ten and recorded at two
is a fact an officer may need to explain.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UPGRADE = """
-- NULL for assignments recorded before this column: when is not known.
ALTER TABLE device_assignments ADD COLUMN recorded_at timestamptz;
ALTER TABLE device_assignments ALTER COLUMN recorded_at SET DEFAULT now();
ALTER TABLE device_assignments ADD COLUMN end_recorded_at timestamptz;
"""

DOWNGRADE = """
ALTER TABLE device_assignments DROP COLUMN recorded_at, DROP COLUMN end_recorded_at;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
