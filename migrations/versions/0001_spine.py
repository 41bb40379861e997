"""The spine: subjects, devices, assignments, fixes by day, device state and events, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TYPE fix_source AS ENUM ('gps', 'wifi', 'cell');
CREATE TYPE strap_state AS ENUM ('ok', 'open');
CREATE TYPE device_event_type AS ENUM (
    'strap_open', 'strap_closed', 'shell_open', 'charger_on', 'charger_off',
    'battery_low', 'power_on');

CREATE TABLE subjects (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ref          text NOT NULL UNIQUE CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}$'),
    display_name text,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'ended')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial     text NOT NULL UNIQUE CHECK (serial ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    model      text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Which device a subject wore when. A device is worn by one subject at a time
-- and a subject wears one device at a time: the database enforces both.
CREATE TABLE device_assignments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  bigint NOT NULL REFERENCES devices (id),
    subject_id bigint NOT NULL REFERENCES subjects (id),
    during     tstzrange NOT NULL CHECK (NOT isempty(during) AND NOT lower_inf(during)),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_assignments_device_no_overlap
        EXCLUDE USING gist (device_id WITH =, during WITH &&),
    CONSTRAINT device_assignments_subject_no_overlap
        EXCLUDE USING gist (subject_id WITH =, during WITH &&)
);

-- One row per fix, partitioned by UTC day of the fix so that retention drops
-- whole partitions. lat/lon are kept exactly as the tag reported them (the
-- evidence); position is the same point on the British National Grid, in
-- metres, for distance queries. Every unique key starts with device_id so the
-- table can later be distributed by device. There is no foreign key to
-- devices: the ingest worker resolves serials itself, and a per-row check
-- would halve the insert rate.
CREATE TABLE fixes (
    device_id   bigint NOT NULL,
    fix_time    timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    position    geometry(Point, 27700) NOT NULL,
    acc         real,
    speed       real,
    heading     real,
    batt        smallint,
    src         fix_source NOT NULL DEFAULT 'gps',
    strap       strap_state,
    PRIMARY KEY (device_id, fix_time)
) PARTITION BY RANGE (fix_time);

-- "Fixes within r metres of a point in a time window": a composite GiST on
-- (position, time) per daily partition measured 0.37 ms (1 h) and 2.4 ms (24 h)
-- p95 on 30M fixes, against 4.6 / 87 ms for GiST(position) + B-tree(time).
CREATE INDEX fixes_position_time ON fixes USING gist (position, fix_time);

CREATE FUNCTION torch_ensure_fix_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date;
    made integer := 0;
    name text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('torch_fix_partitions'));
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        name := format('fixes_%s', to_char(day, 'YYYYMMDD'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF fixes FOR VALUES FROM (%L) TO (%L)',
                name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

CREATE TABLE device_state (
    device_id     bigint PRIMARY KEY REFERENCES devices (id),
    last_fix_at   timestamptz,
    last_lat      double precision,
    last_lon      double precision,
    last_acc      real,
    last_seen_at  timestamptz NOT NULL,
    battery       smallint,
    strap         strap_state
);

CREATE TABLE device_events (
    device_id   bigint NOT NULL REFERENCES devices (id),
    event_time  timestamptz NOT NULL,
    type        device_event_type NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, event_time, type)
);

-- Everything that could not be stored, kept byte for byte with the reason.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason_code text NOT NULL,
    reason      text NOT NULL,
    item_index  integer,
    serial      text,
    worker_id   text,
    replayed_at timestamptz
);
CREATE INDEX dead_letters_pending_serial ON dead_letters (serial)
    WHERE reason_code = 'unknown_serial' AND replayed_at IS NULL;
CREATE INDEX dead_letters_received ON dead_letters (received_at);
"""

DOWNGRADE = """
DROP TABLE dead_letters, device_events, device_state, fixes, device_assignments, devices, subjects;
DROP FUNCTION torch_ensure_fix_partitions(date, date);
DROP TYPE device_event_type, strap_state, fix_source;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
