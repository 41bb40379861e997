"""Track tiles as packed binary, and six-hour blocks of their sketches, so that a
crime-scene query reads a few compact rows per subject instead of geometry.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from migrations import execute_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
-- The hourly tiles keep their summary columns; the track moves from a LineStringM
-- and two arrays to two packed columns (big-endian, one record per fix in time order):
--   track: float8 (Unix time, easting, northing, accuracy or NaN), exact;
--   sketch: float4 (easting, northing less those of the tile's first fix), a quarter of
--           the size, for bounding distances.
-- exact: whether the sketch holds every position exactly (it does for positions on
-- torch.grid's lattice within 16 km of the hour's first fix);
-- max_acc: the largest accuracy of the hour's fixes (NULL when none has one), so that
-- a search can widen each tile by what its fixes may be off.
-- They are rebuilt from the fixes by the ingest worker (requeued below).
TRUNCATE track_tiles;
ALTER TABLE track_tiles
    DROP COLUMN ts, DROP COLUMN accs, DROP COLUMN line,
    ADD COLUMN track bytea NOT NULL, ADD COLUMN sketch bytea NOT NULL,
    ADD COLUMN max_acc double precision,
    ADD COLUMN exact boolean NOT NULL,
    DROP CONSTRAINT track_tiles_pkey,
    ADD PRIMARY KEY (tile_start, subject_id);
ALTER TABLE track_tiles ALTER COLUMN track SET STORAGE EXTERNAL,
                        ALTER COLUMN sketch SET STORAGE EXTERNAL;
-- a few subjects' hours (bulk correlation's suspects)
CREATE INDEX track_tiles_subject ON track_tiles (subject_id, tile_start);

-- Six hours of a subject's sketches in one row (UTC 00, 06, 12, 18), with each hour's
-- summary, so that the long middle of a 24-hour window is five rows per subject.
--   marks: the number of fixes before each hour of the block (7 values; the last is n),
--          so that a query can take the sketch of some hours only;
--   hours: per hour with fixes, float8 (hour start, n, first fix time, last fix time,
--          longest interval between consecutive fixes in the hour, first fix's easting
--          and northing: the origin of the hour's sketch, 1 where the sketch is exact).
CREATE TABLE track_blocks (
    block_start timestamptz NOT NULL,
    subject_id  bigint NOT NULL REFERENCES subjects (id),
    marks       smallint[] NOT NULL,
    hours       bytea NOT NULL,
    sketch      bytea NOT NULL,
    PRIMARY KEY (block_start, subject_id)
) WITH (toast_tuple_target = 8160);
ALTER TABLE track_blocks ALTER COLUMN sketch SET STORAGE EXTERNAL,
                         ALTER COLUMN hours SET STORAGE EXTERNAL;

-- Hours of the current hour whose tiles changed: their blocks are rebuilt once the
-- hour is over, not every few seconds.
CREATE TABLE track_blocks_dirty (
    subject_id bigint NOT NULL,
    tile_start timestamptz NOT NULL,
    PRIMARY KEY (subject_id, tile_start)
);
CREATE INDEX track_blocks_dirty_tile ON track_blocks_dirty (tile_start);

INSERT INTO track_tiles_dirty (device_id, tile_start, first_new)
SELECT device_id, date_bin('1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       min(fix_time)
FROM fixes GROUP BY 1, 2;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'torch_app') THEN
        GRANT TRUNCATE ON track_blocks, track_blocks_dirty TO torch_app;  -- tiles rebuild
    END IF;
END $$;
"""

DOWNGRADE = """
DROP TABLE track_blocks, track_blocks_dirty;
DROP INDEX track_tiles_subject;
TRUNCATE track_tiles;
ALTER TABLE track_tiles
    DROP COLUMN track, DROP COLUMN sketch, DROP COLUMN max_acc, DROP COLUMN exact,
    ADD COLUMN ts double precision[] NOT NULL,
    ADD COLUMN accs real[] NOT NULL,
    ADD COLUMN line geometry(LineStringM, 27700) NOT NULL,
    DROP CONSTRAINT track_tiles_pkey,
    ADD PRIMARY KEY (subject_id, tile_start);
INSERT INTO track_tiles_dirty (device_id, tile_start, first_new)
SELECT device_id, date_bin('1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       min(fix_time)
FROM fixes GROUP BY 1, 2;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
