"""A tamper-evident audit trail: each record carries the hash of the one before it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from migrations import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE audit_log
    ADD COLUMN seq bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;

-- The one definition of a record's hash: SHA-256 of the previous record's hash and the
-- record's own fields, in a fixed text form. Used when a record is written and when the
-- chain is verified.
CREATE FUNCTION audit_hash(
    prev bytea, seq bigint, at timestamptz, user_id bigint, method text, route text,
    crime_ref text, reason text, query_id uuid, subject_ids bigint[]
) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(prev || convert_to(jsonb_build_array(
        seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), user_id, method,
        route, crime_ref, reason, query_id::text, to_jsonb(subject_ids))::text, 'UTF8'))
$$;

-- Every record joins the chain as it is written, whoever writes it: one writer at a time
-- (the lock is held to the end of the writing transaction), numbered without gaps.
CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('torch_audit_chain'));
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM audit_log a
     ORDER BY a.seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, '\x'::bytea);
    NEW.at := clock_timestamp();
    NEW.hash := audit_hash(NEW.prev_hash, NEW.seq, NEW.at, NEW.user_id, NEW.method, NEW.route,
                           NEW.crime_ref, NEW.reason, NEW.query_id, NEW.subject_ids);
    RETURN NEW;
END $$;

-- Records written before the chain existed join it in the order they were written.
DO $$
DECLARE
    r record;
    prev bytea := '\x'::bytea;
    n bigint := 0;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        n := n + 1;
        UPDATE audit_log SET seq = n, prev_hash = prev,
               hash = audit_hash(prev, n, r.at, r.user_id, r.method, r.route, r.crime_ref,
                                 r.reason, r.query_id, r.subject_ids)
         WHERE id = r.id
        RETURNING hash INTO prev;
    END LOOP;
END $$;

ALTER TABLE audit_log
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT audit_log_seq UNIQUE (seq);

CREATE TRIGGER audit_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain();

-- The ingest worker creates tomorrow's partition of fixes; only the owner may, so the
-- function that does it runs with the owner's rights.
ALTER FUNCTION torch_ensure_fix_partitions(date, date) SECURITY DEFINER SET search_path = public;

-- Append-only for everyone who is not the owner: in particular the role the services
-- run as (scripts/setup.sh, TORCH_DATABASE_URL) reads and appends, never rewrites.
-- That role gets everything else it needs on the schema's tables, now and later.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'torch_app') THEN
        GRANT USAGE ON SCHEMA public TO torch_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO torch_app;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO torch_app;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO torch_app;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO torch_app;
        GRANT TRUNCATE ON track_tiles, track_tiles_dirty TO torch_app;  -- torch tiles rebuild
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM torch_app;
    ELSE
        RAISE NOTICE 'no role torch_app: the services will run as the owner, '
                     'who can rewrite the audit trail';
    END IF;
END $$;
"""

DOWNGRADE = """
DROP TRIGGER audit_chain ON audit_log;
DROP FUNCTION audit_chain();
DROP FUNCTION audit_hash(bytea, bigint, timestamptz, bigint, text, text, text, text, uuid,
                         bigint[]);
ALTER TABLE audit_log DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
