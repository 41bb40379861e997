"""Why a breach episode may not be real: a transit found, at the next fix, to run to a GPS
outlier.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE breach_episodes ADD COLUMN doubt text;
"""

DOWNGRADE = """
ALTER TABLE breach_episodes DROP COLUMN doubt;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
