"""Protected persons (victims), the subjects linked to them, their fixes and episodes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from migrations import execute_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
-- A protected person, known here only by a pseudonymous reference.
CREATE TABLE victims (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ref        text NOT NULL UNIQUE CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The officers named for a protected person: with supervisors, the only people who may
-- see where they are.
CREATE TABLE victim_officers (
    victim_id bigint NOT NULL REFERENCES victims (id),
    user_id   bigint NOT NULL REFERENCES users (id),
    PRIMARY KEY (victim_id, user_id)
);

-- A subject who must keep away from a protected person: warned within warning_m, in
-- breach within breach_m. A link is ended, never deleted.
CREATE TABLE victim_links (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id bigint NOT NULL REFERENCES subjects (id),
    victim_id  bigint NOT NULL REFERENCES victims (id),
    warning_m  double precision NOT NULL CHECK (warning_m > 0 AND warning_m <= 50000),
    breach_m   double precision NOT NULL CHECK (breach_m > 0 AND breach_m < warning_m),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by bigint REFERENCES users (id),
    ended_at   timestamptz
);
CREATE UNIQUE INDEX victim_links_one_live ON victim_links (subject_id, victim_id)
    WHERE ended_at IS NULL;

-- The protected person's positions: the most sensitive rows of the system. Only the
-- ingest worker writes them, and only the victim's route reads them (audited).
CREATE TABLE victim_fixes (
    victim_id   bigint NOT NULL REFERENCES victims (id),
    fix_time    timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    position    geometry(Point, 27700) NOT NULL,
    acc         real,
    PRIMARY KEY (victim_id, fix_time)
);

-- A subject within a link's warning or breach distance of the protected person.
CREATE TABLE victim_episodes (
    id           uuid PRIMARY KEY,
    link_id      bigint NOT NULL REFERENCES victim_links (id),
    subject_id   bigint NOT NULL REFERENCES subjects (id),
    victim_id    bigint NOT NULL REFERENCES victims (id),
    stage        text NOT NULL CHECK (stage IN ('warning', 'breach')),
    entered_at   timestamptz NOT NULL,
    left_at      timestamptz,
    closest_m    double precision NOT NULL,
    fixes_inside integer NOT NULL,
    found_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX victim_episodes_subject ON victim_episodes (subject_id, entered_at);

ALTER TABLE alerts ADD COLUMN victim_episode_id uuid UNIQUE REFERENCES victim_episodes (id);

-- A protected person's device signs in to the broker as victim.{ref}.
ALTER TABLE broker_accounts DROP CONSTRAINT broker_accounts_kind_check;
ALTER TABLE broker_accounts ADD CONSTRAINT broker_accounts_kind_check
    CHECK (kind IN ('device', 'ingest', 'listener', 'relay', 'victim'));
"""

DOWNGRADE = """
DELETE FROM broker_accounts WHERE kind = 'victim';
ALTER TABLE broker_accounts DROP CONSTRAINT broker_accounts_kind_check;
ALTER TABLE broker_accounts ADD CONSTRAINT broker_accounts_kind_check
    CHECK (kind IN ('device', 'ingest', 'listener', 'relay'));
ALTER TABLE alerts DROP COLUMN victim_episode_id;
DROP TABLE victim_episodes, victim_fixes, victim_links, victim_officers, victims;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
