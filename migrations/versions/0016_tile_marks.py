"""Marks in each track tile: where each five minutes of its hour begin in its packed fixes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from migrations import execute_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = """
-- marks[k + 1]: the number of the tile's fixes before its hour's start + 5k minutes, k = 0 to
-- 12; the crime-scene query reads from `track` only the five minutes its window needs.
-- NULL in tiles written before this migration, read whole until rebuilt
-- (torch tiles rebuild) or next written.
ALTER TABLE track_tiles ADD COLUMN marks smallint[]
    CHECK (marks IS NULL OR (cardinality(marks) = 13 AND marks[1] = 0 AND marks[13] = n));

-- Tiles and blocks stay whole in their table's pages, as 0004 and 0013 make them in a new
-- database; in one made before those said so, they went to TOAST, which took a one-hour
-- answer's reads twice as long.
ALTER TABLE track_tiles SET (toast_tuple_target = 8160);
ALTER TABLE track_blocks SET (toast_tuple_target = 8160);
"""

DOWNGRADE = """
ALTER TABLE track_tiles DROP COLUMN marks;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
