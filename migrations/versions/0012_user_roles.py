"""Further roles for a user: an admin may also be given a location role.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE users ADD COLUMN also user_role[] NOT NULL DEFAULT '{}';
"""

DOWNGRADE = """
ALTER TABLE users DROP COLUMN also;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
