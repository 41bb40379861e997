"""Whether a protected person's episode was found live or late: a subject's fixes are now
checked again when the person's phone sends its fixes late, or the tag its own.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE victim_episodes ADD COLUMN detection text NOT NULL DEFAULT 'live'
    CHECK (detection IN ('live', 'late'));
"""

DOWNGRADE = """
ALTER TABLE victim_episodes DROP COLUMN detection;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
