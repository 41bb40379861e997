"""Bulk crime correlation jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE correlation_jobs (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    total       integer NOT NULL,
    done        integer NOT NULL DEFAULT 0,
    errors      jsonb NOT NULL DEFAULT '[]',
    results     jsonb
);
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script("DROP TABLE correlation_jobs;")
