#!/usr/bin/env bash
# schemathesis: checks the team server's API against its own OpenAPI
# document, with requests made from the document (valid and not).
#
#   scripts/schemathesis.sh install          install schemathesis 4.32.5 into a venv ($SCHEMATHESIS_VENV, default target/schemathesis-venv)
#   scripts/schemathesis.sh run URL TOKEN    check the server at URL (its /api/v1/openapi.json) as the user of TOKEN
#
# tests/server_openapi.rs runs `install` itself when the venv is missing,
# then `run` against a server it started.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
version=4.32.5

install() {
  if [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
}

run() {
  install
  local url=$1 token=$2
  # The token goes in a header schemathesis filters out of what it prints.
  "$venv/bin/st" --config-file "$repo/scripts/schemathesis.toml" run "$url/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-10}" \
    --seed "${SCHEMATHESIS_SEED:-20261206}" \
    --no-color
}

case "${1:-}" in
  install) install ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 install | run URL TOKEN" >&2; exit 2 ;;
esac
