-- Runs once, when the database volume is created (docker-entrypoint-initdb.d).
-- The services' role: not the owner, so the audit trail's append-only grants bind it.
-- The migrations (run as the owner) grant it what it needs.
\getenv app_password TORCH_APP_DB_PASSWORD
CREATE ROLE torch_app LOGIN PASSWORD :'app_password';
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;
