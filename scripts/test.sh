#!/usr/bin/env bash
# Run the whole suite against the real services that scripts/setup.sh started.
# The tests use their own database (torch_test) and start their own broker
# (on TORCH_TEST_MQTT_PORT, default 18830) so they can restart it at will.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCH_TEST_DATABASE_URL=${TORCH_TEST_DATABASE_URL:-postgresql://torch:torch@127.0.0.1:5432/torch_test}
export TORCH_TEST_MQTT_PORT=${TORCH_TEST_MQTT_PORT:-18830}
exec .venv/bin/pytest "$@"
