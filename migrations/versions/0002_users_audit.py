"""Users with hashed bearer tokens, the audit trail, and recorded proximity queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TYPE user_role AS ENUM ('officer', 'probation', 'supervisor', 'admin');

CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role        user_role NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- Only a SHA-256 of each token is kept: a copy of this table opens no door.
CREATE TABLE api_tokens (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);

-- One row for every request that returned location data, written in the
-- transaction that read it.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id     bigint NOT NULL REFERENCES users (id),
    method      text NOT NULL,
    route       text NOT NULL,
    crime_ref   text,
    reason      text,
    query_id    uuid,
    subject_ids bigint[] NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);

-- What was asked and what was answered, kept for the evidence pack.
CREATE TABLE proximity_queries (
    id         uuid PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    at         timestamptz NOT NULL DEFAULT now(),
    request    jsonb NOT NULL,
    response   jsonb NOT NULL,
    version    text NOT NULL
);
"""

DOWNGRADE = """
DROP TABLE proximity_queries, audit_log, api_tokens, users;
DROP TYPE user_role;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
