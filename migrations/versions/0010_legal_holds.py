"""Legal holds: fixes of a subject over a time range kept past retention until released.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE legal_holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id  bigint NOT NULL REFERENCES subjects (id),
    during      tstzrange NOT NULL CHECK (NOT isempty(during)),
    case_ref    text NOT NULL CHECK (length(case_ref) BETWEEN 1 AND 100),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 3 AND 500),
    created_by  bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    released_by bigint REFERENCES users (id),
    released_at timestamptz
);
CREATE INDEX legal_holds_live ON legal_holds USING gist (subject_id, during)
    WHERE released_at IS NULL;
"""

DOWNGRADE = """
DROP TABLE legal_holds;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
