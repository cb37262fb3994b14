#!/usr/bin/env bash
# Builds the hostile plugin components and the non-component fixtures into
# dist/. Byte-reproducible: the same sources, Cargo.lock and toolchain give the
# same files wherever the repository is checked out.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

rustup target add wasm32-wasip2
cargo build --release --locked --target wasm32-wasip2

crates=(
  busy-loop sleep-forever memory-bomb read-outside-grant http-not-granted
  env-not-granted huge-output trap panic stack-overflow wrong-world
)

rm -rf dist
mkdir -p dist
for crate in "${crates[@]}"; do
  cp "target/wasm32-wasip2/release/${crate//-/_}.wasm" "dist/$crate.wasm"
done
./make-fixtures.sh dist

# Reproducibility guard: no absolute path of this machine may end up in a
# component (that would make its bytes depend on where the build ran).
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
for f in dist/*.wasm; do
  for p in "$here" "$cargo_home"; do
    if grep -qaF "$p" "$f"; then
      echo "error: $f contains the build machine's path $p; add a --remap-path-prefix" >&2
      exit 1
    fi
  done
done

(cd dist && sha256sum *.wasm)
