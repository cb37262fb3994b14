#!/usr/bin/env bash
# moto server: the AWS API emulator the `aws` provisioner is tested against
# (see ../shared/spec/aws-emulator.md).
#
#   scripts/moto.sh install        install moto[server] 5.2.5 into a venv ($MOTO_VENV, default target/moto-venv)
#   scripts/moto.sh start [PORT]   start it on loopback (default: a free port); prints `PORT PID`;
#                                  stop it with `kill PID`
#
# The end-to-end tests run `install` themselves when the venv is missing, and
# start one server per test on a free port.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
venv=${MOTO_VENV:-$repo/target/moto-venv}
version=5.2.5

install() {
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
    return 0
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  install
  local port=${1:-$(free_port)}
  MOTO_ACM_VALIDATION_WAIT=${MOTO_ACM_VALIDATION_WAIT:-2} \
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
      echo "$port $pid"
      return 0
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "moto did not answer on port $port" >&2
  return 1
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  *) echo "usage: $0 install | start [PORT]" >&2; exit 2 ;;
esac
