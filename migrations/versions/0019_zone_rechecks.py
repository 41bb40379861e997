"""Stored fixes to check against a subject's zones again: an assignment recorded after the
tag was fitted makes fixes already stored the subject's, and nobody checked them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from migrations import execute_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UPGRADE = """
-- Written with the assignment, drained by the ingest worker's sweep (one worker at a time).
CREATE TABLE zone_rechecks (
    id         bigserial PRIMARY KEY,
    subject_id bigint NOT NULL REFERENCES subjects (id),
    from_at    timestamptz NOT NULL,
    to_at      timestamptz NOT NULL CHECK (to_at > from_at),
    queued_at  timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = """
DROP TABLE zone_rechecks;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
