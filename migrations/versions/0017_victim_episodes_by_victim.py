"""An index of victim episodes by protected person, for their episodes route.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from migrations import execute_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
-- GET /v1/victims/{ref}/episodes reads one protected person's episodes that began before a
-- window's end (torch.store.victims.episodes): without this it read every episode.
CREATE INDEX victim_episodes_victim ON victim_episodes (victim_id, entered_at);
"""

DOWNGRADE = """
DROP INDEX victim_episodes_victim;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
