#!/usr/bin/env bash
# Start, stop or restart a Mosquitto instance that uses the project's broker
# configuration (deploy/mosquitto/torch.conf), with its own state directory.
#   scripts/broker.sh start|stop|restart|status [STATE_DIR] [PORT] [HOST]
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: broker.sh start|stop|restart|status [STATE_DIR] [PORT] [HOST]}
state=$(realpath -m "${2:-.run/mosquitto}")
port=${3:-${TORCH_MQTT_PORT:-1883}}
host=${4:-${TORCH_MQTT_HOST:-127.0.0.1}}
pidfile="$state/mosquitto.pid"

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
listening() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

wait_until() { # wait_until CMD... : up to 10 s
  for _ in $(seq 1 100); do "$@" && return 0; sleep 0.1; done
  return 1
}

render() {
  sed -e "s#@STATE@#$state#g" -e "s#@PORT@#$port#g" -e "s#@HOST@#$host#g" deploy/mosquitto/torch.conf
}

start() {
  if running; then
    # a broker started with an older configuration is restarted with the current one
    if render | cmp -s - "$state/mosquitto.conf"; then return 0; fi
    echo "broker: configuration changed; restarting" >&2
    stop
  fi
  if listening; then
    echo "broker: something else already listens on $host:$port; using it as it is." >&2
    echo "broker: it must queue QoS 1 messages without limit (see deploy/mosquitto/torch.conf)." >&2
    return 0
  fi
  mkdir -p "$state"
  render > "$state/mosquitto.conf"
  # no accounts yet: the broker starts refusing everyone until `torch broker sync`
  for f in passwd acl; do [ -e "$state/$f" ] || install -m 600 /dev/null "$state/$f"; done
  if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$state"; fi
  mosquitto -d -c "$state/mosquitto.conf"
  wait_until listening || { echo "broker: did not start; see $state/mosquitto.log" >&2; exit 1; }
}

stop() {
  running || return 0
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  wait_until bash -c "! kill -0 $pid 2>/dev/null" || { kill -KILL "$pid"; sleep 0.2; }
}

case "$action" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running; then echo "running, pid $(cat "$pidfile")"; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: broker.sh start|stop|restart|status [STATE_DIR] [PORT] [HOST]" >&2; exit 2 ;;
esac
