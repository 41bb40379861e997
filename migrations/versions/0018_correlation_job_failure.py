"""Why a bulk correlation job stopped, for the officer who ran it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
-- A job that failed or was interrupted said only so; this says what to do about it.
ALTER TABLE correlation_jobs ADD COLUMN failure text;
"""

DOWNGRADE = """
ALTER TABLE correlation_jobs DROP COLUMN failure;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
