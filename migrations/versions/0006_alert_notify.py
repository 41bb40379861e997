"""Wake alert publishers at once: a notification on torch_alerts when an outbox entry commits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION alert_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('torch_alerts', '');
    RETURN NULL;
END $$;
CREATE TRIGGER alert_outbox_notify AFTER INSERT ON alert_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION alert_outbox_notify();
"""

DOWNGRADE = """
DROP TRIGGER alert_outbox_notify ON alert_outbox;
DROP FUNCTION alert_outbox_notify();
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
