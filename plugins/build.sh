#!/usr/bin/env bash
# Rebuilds every builtin plugin component into plugins/dist/<name>.wasm.
#
# The output is reproducible: the same sources, Cargo.lock and toolchain
# (pinned in rust-toolchain.toml) give byte-identical components, wherever the
# repository and the cargo home are on disk.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
plugins_dir=$(pwd -P)
repo_dir=$(cd .. && pwd -P)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
cargo_home=$(cd "$cargo_home" 2>/dev/null && pwd -P || echo "$cargo_home")
names=(local test env file protect-stateful aws)
# Cargo turns on, in a shared dependency, the union of the features that the
# packages of one build ask for: a component's bytes depend on what is built
# with it. aws's dependencies (aws-sigv4, quick-xml) want features the others
# do not, so each group is its own build and neither changes the other.
groups=("local test env file protect-stateful" "aws")
target=wasm32-wasip2

rustup target add "$target"

# Panic locations in dependencies carry their absolute source paths (under the
# cargo home); map those, and this checkout, to fixed names. Anything set in
# RUSTFLAGS is ignored on purpose: it would change the bytes.
# A 128 KiB stack, not the default 1 MiB: the stack comes first in linear
# memory, so the stack, the data and the start of the heap then lie in the
# first pages, which the host resets by memset between instances (see
# `linear_memory_keep_resident` in runtime/src/plugin/mod.rs) instead of
# giving them back and taking a page fault on each again.
flags=(
  "-Clink-arg=-zstack-size=131072"
  "--remap-path-prefix=$cargo_home/registry/src=/cargo/registry/src"
  "--remap-path-prefix=$cargo_home/git/checkouts=/cargo/git/checkouts"
  "--remap-path-prefix=$repo_dir=/stackpipe"
)
unset RUSTFLAGS
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; printf '%s' "${flags[*]}")
export CARGO_ENCODED_RUSTFLAGS
export CARGO_TARGET_DIR="$plugins_dir/target"

for group in "${groups[@]}"; do
  packages=()
  for name in $group; do packages+=(-p "stackpipe-plugin-$name"); done
  cargo build --release --locked --target "$target" "${packages[@]}"
done

mkdir -p dist
for name in "${names[@]}"; do
  cp "target/$target/release/stackpipe_plugin_${name//-/_}.wasm" "dist/$name.wasm"
done
if command -v wasm-tools >/dev/null; then
  for name in "${names[@]}"; do wasm-tools validate "dist/$name.wasm"; done
fi
for name in "${names[@]}"; do
  printf '%8d bytes  %s  dist/%s.wasm\n' "$(wc -c < "dist/$name.wasm")" "$(sha256sum "dist/$name.wasm" | cut -d' ' -f1)" "$name"
done
