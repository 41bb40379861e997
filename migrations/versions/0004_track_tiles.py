"""Track tiles: each subject's track by the hour, so that a crime-scene query
need not read every subject's fixes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per subject and UTC hour with fixes: the fixes of the devices the
-- subject wore, in time order, as a line on the British National Grid whose
-- measure is the fix time (Unix seconds), with the times and accuracies beside
-- it and the longest interval between consecutive fixes. The ingest worker keeps
-- them current from track_tiles_dirty; a query treats a subject with pending
-- changes as if it had no tiles, and reads the fixes.
CREATE TABLE track_tiles (
    subject_id  bigint NOT NULL REFERENCES subjects (id),
    tile_start  timestamptz NOT NULL,
    n           integer NOT NULL CHECK (n > 0),
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    first_x     double precision NOT NULL,
    first_y     double precision NOT NULL,
    last_x      double precision NOT NULL,
    last_y      double precision NOT NULL,
    min_x       double precision NOT NULL,
    min_y       double precision NOT NULL,
    max_x       double precision NOT NULL,
    max_y       double precision NOT NULL,
    longest_s   double precision NOT NULL,
    ts          double precision[] NOT NULL,
    accs        real[] NOT NULL,
    line        geometry(LineStringM, 27700) NOT NULL,
    PRIMARY KEY (subject_id, tile_start)
) WITH (toast_tuple_target = 8160);

-- Hours of a device with fixes stored since the tiles were last brought up to
-- date, and the earliest such fix: an append-only queue, written in the
-- transaction that stores the fixes and drained by the ingest worker.
CREATE TABLE track_tiles_dirty (
    device_id  bigint NOT NULL,
    tile_start timestamptz NOT NULL,
    first_new  timestamptz NOT NULL
);
CREATE INDEX track_tiles_dirty_tile ON track_tiles_dirty (tile_start);
"""

DOWNGRADE = """
DROP TABLE track_tiles_dirty, track_tiles;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
