#!/usr/bin/env bash
# Idempotent set-up shared by `make demo` and `make test`: installs what is
# missing, starts PostgreSQL and Mosquitto if they are not running, creates the
# project's role and databases, builds the virtual environment and migrates.
# It changes nothing on a second run except to start what is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

DB_USER=${TORCH_DB_USER:-torch}
DB_PASSWORD=${TORCH_DB_PASSWORD:-torch}
APP_DB_PASSWORD=${TORCH_APP_DB_PASSWORD:-torch}
DATABASES=${TORCH_DATABASES:-torch torch_test torch_bench}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -q >/dev/null; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

install_packages() {
  local missing=()
  installed postgresql-common || missing+=(postgresql)
  command -v mosquitto >/dev/null || missing+=(mosquitto)
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then say "installing ${missing[*]}"; apt_install "${missing[@]}"; fi
  PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! installed "postgresql-$PG_VERSION-postgis-3"; then
    say "installing PostGIS for PostgreSQL $PG_VERSION"
    apt_install "postgresql-$PG_VERSION-postgis-3"
  fi
  # A distribution broker started by the package would hold port 1883 with
  # Mosquitto's default queue limit of 1,000 messages; the project runs its
  # own instance (scripts/broker.sh) instead.
  if [[ " ${missing[*]} " == *" mosquitto "* ]] && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
}

start_postgres() {
  if ! pg_lsclusters -h | grep -q "^$PG_VERSION "; then
    say "creating PostgreSQL $PG_VERSION cluster"
    as_root pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  local cluster; cluster=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v {print $2; exit}')
  if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
    say "starting PostgreSQL $PG_VERSION/$cluster"
    as_root pg_ctlcluster "$PG_VERSION" "$cluster" start
  fi
}

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Fewer and smaller full-page images in the WAL: at 5,000 fixes/s the checkpoints every five
# minutes with uncompressed page images held alerts back by seconds (bench/RESULTS.md).
tune_postgres() {
  local changed= name value
  for setting in wal_compression=lz4 checkpoint_timeout=15min max_wal_size=4GB; do
    name=${setting%%=*}; value=${setting#*=}
    if [ "$(psql_admin -tAc "SHOW $name")" != "$value" ]; then
      # a PostgreSQL built without lz4 compresses page images with pglz instead
      psql_admin -c "ALTER SYSTEM SET $name = '$value'" 2>/dev/null \
        || psql_admin -c "ALTER SYSTEM SET $name = 'on'"
      changed=1
    fi
  done
  if [ -n "$changed" ]; then
    say "tuning PostgreSQL's WAL (compressed page images, checkpoints every 15 minutes)"
    psql_admin -c "SELECT pg_reload_conf()" >/dev/null
  fi
  # A quarter of memory for PostgreSQL's own cache, half for what it may expect the system's
  # to hold: with the default 128 MB, a crime-scene query's tiles came from the system's
  # cache a page at a time (bench/RESULTS.md). Takes a restart.
  local mem_mb; mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  local buffers="$((mem_mb / 4))MB" cache="$((mem_mb / 2))MB"
  # pg_prewarm's worker reloads that cache after a restart: the first day's queries after
  # one took three to five times as long with it empty (bench/RESULTS.md).
  if [ "$(psql_admin -tAc "SELECT setting::bigint * 8 / 1024 || 'MB' FROM pg_settings WHERE name = 'shared_buffers'")" != "$buffers" ] \
     || [ "$(psql_admin -tAc "SHOW shared_preload_libraries")" != pg_prewarm ]; then
    say "giving PostgreSQL $buffers of shared buffers (a quarter of memory), kept over restarts; restarting it"
    psql_admin -c "ALTER SYSTEM SET shared_buffers = '$buffers'"
    psql_admin -c "ALTER SYSTEM SET effective_cache_size = '$cache'"
    psql_admin -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_prewarm'"
    restart_postgres
  fi
  huge_pages
}

restart_postgres() {
  local cluster; cluster=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v {print $2; exit}')
  as_root pg_ctlcluster "$PG_VERSION" "$cluster" restart
}

# Huge pages for the shared buffers: with the kernel's 4 kB pages, each PostgreSQL process
# took a page fault for every 4 kB of the buffers it touched for the first time, 2 ms of a
# crime-scene query's read of an hour's tiles (bench/RESULTS.md). The kernel sets them
# aside (vm.nr_hugepages, also written to /etc/sysctl.d for the next boot); where it will
# not (a container without the right), PostgreSQL keeps ordinary pages (huge_pages=try).
huge_pages() {
  local pages; pages=$(psql_admin -tAc "SHOW shared_memory_size_in_huge_pages" 2>/dev/null) || return 0
  [ "${pages:-0}" -gt 0 ] || return 0
  local datadir pid
  datadir=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v {print $6; exit}')
  pid=$(as_root head -1 "$datadir/postmaster.pid")
  if as_root grep -q 'KernelPageSize: *2048 kB' "/proc/$pid/smaps" 2>/dev/null; then return 0; fi
  local before; before=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$before" -lt "$pages" ]; then
    as_root sysctl -q -w vm.nr_hugepages="$pages" >/dev/null 2>&1 || true
  fi
  if [ "$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)" -ge "$pages" ]; then
    say "giving PostgreSQL's shared memory $pages huge pages; restarting it"
    echo "vm.nr_hugepages = $pages" | as_root tee /etc/sysctl.d/60-torch-postgresql.conf >/dev/null || true
    restart_postgres
  else
    # too few (memory too fragmented, or no right to ask): none set aside for nothing
    as_root sysctl -q -w vm.nr_hugepages="$before" >/dev/null 2>&1 || true
    say "the kernel gave too few huge pages for PostgreSQL's shared memory: it keeps 4 kB pages"
  fi
}

create_role_and_databases() {
  if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != 1 ]; then
    say "creating role $DB_USER"
    psql_admin -c "CREATE ROLE \"$DB_USER\" LOGIN PASSWORD '$DB_PASSWORD'"
  fi
  # The services' role: not the owner, so the audit trail's append-only grants bind it.
  if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'torch_app'")" != 1 ]; then
    say "creating role torch_app (the services' role)"
    psql_admin -c "CREATE ROLE torch_app LOGIN PASSWORD '$APP_DB_PASSWORD'"
  fi
  for db in $DATABASES; do
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
      say "creating database $db"
      psql_admin -c "CREATE DATABASE \"$db\" OWNER \"$DB_USER\""
    fi
    # Extensions need a superuser; the migrations then run as the project role.
    psql_admin -d "$db" -c "CREATE EXTENSION IF NOT EXISTS postgis; CREATE EXTENSION IF NOT EXISTS btree_gist;" 2>/dev/null
  done
}

build_venv() {
  local stamp=.venv/.installed
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return 0; fi
  say "building the virtual environment in .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -e '.[dev]' > .venv/install.log 2>&1 \
    || { cat .venv/install.log >&2; exit 1; }
  touch "$stamp"
}

# The web app, bundled from the npm registry's packages (package-lock.json) into web/dist,
# rebuilt when its sources change. Node.js and npm come from Debian if missing.
build_web() {
  if ! command -v npm >/dev/null; then say "installing Node.js and npm"; apt_install nodejs npm; fi
  if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules ]; then
    say "installing the web app's packages (npm ci)"
    mkdir -p .run/logs
    local try
    for try in 1 2 3; do
      (cd web && npm ci --no-audit --no-fund) > .run/logs/npm-ci.log 2>&1 && break
      say "npm ci failed (try $try of 3):"; tail -n 20 .run/logs/npm-ci.log >&2
      [ "$try" -lt 3 ] || exit 1
      sleep 5
    done
  fi
  local newest=
  if [ -f web/dist/index.html ]; then
    newest=$(find web/src web/index.html web/build.mjs web/package-lock.json \
      -newer web/dist/index.html | head -1)
  fi
  if [ ! -f web/dist/index.html ] || [ -n "$newest" ]; then
    say "building the web app into web/dist"
    (cd web && node build.mjs)
  fi
}

# Debian's Chromium, for the web app's end-to-end tests (make test only).
install_browser() {
  command -v chromium >/dev/null || { say "installing chromium (browser tests)"; apt_install chromium; }
}

# The ingest worker's broker account; its password is kept in .run/secrets/ingest.env
# (readable by root only), which scripts/demo.sh loads. Then the broker's files.
broker_accounts() {
  local env=.run/secrets/ingest.env live
  live=$(PGPASSWORD="$DB_PASSWORD" psql -h 127.0.0.1 -U "$DB_USER" -d torch -tAc \
    "SELECT 1 FROM broker_accounts WHERE name = 'torch-ingest' AND revoked_at IS NULL")
  if [ ! -s "$env" ] || [ "$live" != 1 ]; then
    say "creating the ingest worker's broker account (password in $env)"
    mkdir -p .run/secrets && chmod 700 .run/secrets
    local password
    password=$(.venv/bin/torch broker account torch-ingest --kind ingest 2>/dev/null | tail -n 1)
    (umask 077 && printf 'TORCH_MQTT_USERNAME=torch-ingest\nTORCH_MQTT_PASSWORD=%s\n' \
      "$password" > "$env")
  elif ! with_ingest_password broker check torch-ingest >/dev/null; then
    # set again since, by another checkout on this machine or by hand: this one's file wins
    say "the password in $env is no longer the ingest worker's broker account's: setting it again"
    with_ingest_password broker account torch-ingest --kind ingest >/dev/null
  else
    .venv/bin/torch broker sync 2>/dev/null
  fi
}

# `torch ARGS --password-env TORCH_MQTT_PASSWORD`, the password read from ingest.env
with_ingest_password() {
  (set -a && . .run/secrets/ingest.env && set +a &&
    .venv/bin/torch "$@" --password-env TORCH_MQTT_PASSWORD 2>/dev/null)
}

install_packages
[ "${1:-}" != --with-browser ] || install_browser
start_postgres
scripts/broker.sh start
create_role_and_databases
tune_postgres
build_venv
build_web
say "migrating database torch"
TORCH_LOG_FORMAT=text .venv/bin/torch db upgrade
broker_accounts
say "ready: PostgreSQL $PG_VERSION on 127.0.0.1:5432, Mosquitto on ${TORCH_MQTT_HOST:-127.0.0.1}:${TORCH_MQTT_PORT:-1883}"
