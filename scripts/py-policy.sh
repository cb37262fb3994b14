#!/usr/bin/env bash
# Builds the Python policy plugin (plugins/py-policy) into a component with
# componentize-py, against the repo's wit/ (world `policy-plugin`).
#
#   scripts/py-policy.sh     install componentize-py 0.25.1 into a venv
#                            ($PY_POLICY_VENV, default target/py-venv; reused
#                            when it has that version), then build
#                            target/py-policy/policy.wasm unless it is newer
#                            than its inputs. Prints the path and its size.
#
# Needs python3 with the venv module (Debian/Ubuntu: apt-get install python3-venv)
# and the network for the first install (a 17 MB wheel from PyPI).
# tests/py_policy.rs runs this itself when the component is missing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
venv=${PY_POLICY_VENV:-$repo/target/py-venv}
version=0.25.1
src=$repo/plugins/py-policy
wit=$repo/wit
out_dir=$repo/target/py-policy
out=$out_dir/policy.wasm
cpy=$venv/bin/componentize-py

install() {
  if [ -x "$cpy" ] && [ "$("$cpy" --version 2>/dev/null)" = "componentize-py $version" ]; then
    return 0
  fi
  if ! python3 -m venv "$venv"; then
    echo "error: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
}

# Up to date when the output is newer than every input: the app's Python
# files, the WIT, this script and the componentize-py it was built with.
up_to_date() {
  [ -f "$out" ] || return 1
  local f
  for f in "$src"/*.py "$wit"/*.wit "${BASH_SOURCE[0]}" "$cpy"; do
    [ "$out" -nt "$f" ] || return 1
  done
}

install
if ! up_to_date; then
  mkdir -p "$out_dir"
  tmp=$(mktemp "$out_dir/.policy.XXXXXX.wasm")
  trap 'rm -f "$tmp"' EXIT
  # componentize-py's pre-init writes __pycache__ into the -p directory:
  # build from a copy, so the source tree stays clean.
  stage=$out_dir/src
  rm -rf "$stage"
  mkdir -p "$stage"
  cp "$src"/*.py "$stage"/
  # VIRTUAL_ENV would add that venv's site-packages to the component.
  (cd "$stage" && env -u VIRTUAL_ENV \
    "$cpy" -d "$wit" -w policy-plugin componentize -p "$stage" app -o "$tmp") >&2
  mv -f "$tmp" "$out"   # atomic: a reader never sees half a component
  trap - EXIT
fi
echo "$out $(stat -c %s "$out") bytes"
