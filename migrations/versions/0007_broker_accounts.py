"""Broker accounts: one per tag, named by its serial, and the services' own.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Only Mosquitto's PBKDF2 hash of each password is kept (the form of its password file).
CREATE TABLE broker_accounts (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    kind          text NOT NULL CHECK (kind IN ('device', 'ingest', 'listener', 'relay')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz,
    revoked_at    timestamptz
);
"""

DOWNGRADE = """
DROP TABLE broker_accounts;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
