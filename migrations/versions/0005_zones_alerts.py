"""Zones with versions, breach episodes, alerts with their workflow, and the alert outbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE zones (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id bigint NOT NULL REFERENCES subjects (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX zones_subject ON zones (subject_id);

-- A change never overwrites: each version records when it was the zone's
-- definition (`recorded`, closed when the next version or the deletion came),
-- and the database refuses two versions of a zone current at once.
CREATE TABLE zone_versions (
    zone_id     bigint NOT NULL REFERENCES zones (id),
    version     integer NOT NULL CHECK (version > 0),
    kind        text NOT NULL CHECK (kind IN ('exclusion', 'inclusion')),
    label       text NOT NULL,
    geometry    jsonb NOT NULL,
    radius_m    double precision,
    area        geometry(MultiPolygon, 27700) NOT NULL,
    schedule    jsonb,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz CHECK (valid_until IS NULL OR valid_until > valid_from),
    recorded    tstzrange NOT NULL,
    made_by     bigint REFERENCES users (id),
    PRIMARY KEY (zone_id, version),
    CONSTRAINT zone_versions_one_current EXCLUDE USING gist (zone_id WITH =, recorded WITH &&)
);

CREATE TABLE breach_episodes (
    id           uuid PRIMARY KEY,
    subject_id   bigint NOT NULL REFERENCES subjects (id),
    zone_id      bigint NOT NULL,
    version      integer NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('exclusion', 'inclusion', 'transit')),
    entered_at   timestamptz NOT NULL,
    left_at      timestamptz,
    deepest_m    double precision NOT NULL,
    fixes_inside integer NOT NULL,
    detection    text NOT NULL CHECK (detection IN ('live', 'late')),
    found_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (zone_id, version) REFERENCES zone_versions (zone_id, version)
);
CREATE INDEX breach_episodes_subject ON breach_episodes (subject_id, entered_at);

CREATE TABLE alerts (
    id          uuid PRIMARY KEY,
    subject_id  bigint REFERENCES subjects (id),
    device_id   bigint REFERENCES devices (id),
    type        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status      text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'acknowledged', 'closed')),
    occurred_at timestamptz NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    episode_id  uuid UNIQUE REFERENCES breach_episodes (id),
    detail      jsonb NOT NULL DEFAULT '{}',
    escalations integer NOT NULL DEFAULT 0,
    escalated_at timestamptz
);
-- One unresolved alert of a kind per device: a flapping strap or a tag that stays
-- silent raises one alert, not a storm.
CREATE UNIQUE INDEX alerts_one_open_per_device ON alerts (device_id, type)
    WHERE device_id IS NOT NULL AND status <> 'closed';
CREATE INDEX alerts_status ON alerts (status, raised_at);
CREATE INDEX alerts_subject ON alerts (subject_id, raised_at);

-- Who did what to an alert, and when: kept, never changed.
CREATE TABLE alert_actions (
    alert_id uuid NOT NULL REFERENCES alerts (id),
    at       timestamptz NOT NULL DEFAULT now(),
    user_id  bigint NOT NULL REFERENCES users (id),
    action   text NOT NULL CHECK (action IN ('acknowledge', 'close')),
    note     text NOT NULL
);
CREATE INDEX alert_actions_alert ON alert_actions (alert_id, at);

-- Alerts to publish on MQTT, written in the transaction that raised them and
-- marked once the broker has acknowledged them.
CREATE TABLE alert_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     uuid NOT NULL REFERENCES alerts (id),
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX alert_outbox_pending ON alert_outbox (id) WHERE published_at IS NULL;
"""

DOWNGRADE = """
DROP TABLE alert_outbox, alert_actions, alerts, breach_episodes, zone_versions, zones;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
