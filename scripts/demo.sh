#!/usr/bin/env bash
# Run the system on the services that scripts/setup.sh started: the ingest
# worker and the API in the background, a simulated fleet in the foreground.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
TAGS=${TAGS:-20}
API=http://${TORCH_API_HOST:-127.0.0.1}:${TORCH_API_PORT:-8000}
mkdir -p .run/logs
pids=()
stop() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

set -a; . .run/secrets/ingest.env; set +a  # the worker's broker account (setup.sh)
# Mosquitto 2.0.11 can die in a reload (docs/operations.md, "The broker"): started again
# within a second if it does, as a restart policy would in production
( while sleep 1; do
    scripts/broker.sh status > /dev/null || {
      echo "demo: the broker died (docs/operations.md); starting it again" >&2
      scripts/broker.sh start
    }
  done ) &
pids+=($!)
.venv/bin/torch ingest >> .run/logs/ingest.log 2>&1 &
pids+=($!)
.venv/bin/torch api >> .run/logs/api.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/${TORCH_API_HOST:-127.0.0.1}/${TORCH_API_PORT:-8000}") 2>/dev/null && break
  sleep 0.1
done

cat <<MSG

TORCH is running.
  web app       $API/   (sign in with a token: .venv/bin/torch user add NAME --role probation)
  API           $API/docs   (health: $API/healthz)
  ingest log    .run/logs/ingest.log
  API log       .run/logs/api.log
  fixes stored  PGPASSWORD=torch psql -h 127.0.0.1 -U torch torch -c 'SELECT count(*) FROM fixes'
  dead letters  .venv/bin/torch deadletters list
Simulating $TAGS tags in Hertfordshire; Ctrl-C stops everything.

MSG
# each simulated tag signs in with its own broker account, made as it is registered.
# In the background and waited for: a TERM (not only Ctrl-C) then stops it with the rest,
# where a foreground child would keep running until it ended by itself.
.venv/bin/torch sim --tags "$TAGS" --pace 60 &
pids+=($!)
wait $!
