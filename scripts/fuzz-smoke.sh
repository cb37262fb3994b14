#!/usr/bin/env bash
# Fuzz smoke test (CI): builds the cargo-fuzz targets of fuzz/ and runs each
# briefly from its seed corpus; fails if any finds a crash (a panic, an
# abort, a sanitizer report, a timeout or an out-of-memory). See
# fuzz/README.md for longer runs by hand.
#
#   FUZZ_SECONDS=20        how long each target runs
#   FUZZ_TARGETS="..."     which targets (default: all three)
#   FUZZ_BUILD_FLAGS="..." cargo fuzz build/run flags (default:
#                          --sanitizer=none; "--sanitizer=address" for ASan)
#   FUZZ_KEEP_BUILD=1      keep fuzz/target afterwards (0.7 GB; by default it
#                          is deleted, CI disk being short)
#
# Needs rustup with a nightly toolchain (installed if missing) and installs
# cargo-fuzz if missing. Builds release with debug assertions and overflow
# checks on (cargo-fuzz's default) but without AddressSanitizer: on a 2-core
# machine from a cold fuzz/target, the whole script took 132s without it and
# 265s with it (the build 68s against 200s; each target also runs 5-7 times
# more inputs without it). Panics, aborts, timeouts and runaway memory are
# caught either way; ASan adds memory errors in unsafe code, for the longer
# runs by hand (fuzz/README.md). Nothing is written outside fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-20}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-parser state_file state_records}"
CARGO_FUZZ_VERSION=0.13.2
SMOKE=fuzz/target/smoke
# How the targets are built (cargo fuzz run must be given the same, or it
# builds again): see "Build settings" in fuzz/README.md.
read -r -a BUILD <<<"${FUZZ_BUILD_FLAGS:---sanitizer=none}"

section() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)
step_start=$t0
# Seconds since the previous call (and since the start).
lap() {
  local now
  now=$(date +%s)
  printf 'time: %s: %ss (total %ss)\n' "$1" "$((now - step_start))" "$((now - t0))"
  step_start=$now
}

cleanup() {
  if [ -d fuzz/target ]; then
    echo "fuzz build tree: $(du -sh fuzz/target | cut -f1)"
    if [ "${FUZZ_KEEP_BUILD:-0}" = 1 ]; then
      echo "kept (FUZZ_KEEP_BUILD=1)"
    else
      rm -rf fuzz/target
      echo "deleted fuzz/target"
    fi
  fi
}
trap cleanup EXIT

section "toolchain"
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
cargo +nightly --version
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
  lap "install cargo-fuzz"
fi
cargo fuzz --version
# cargo fuzz has no --locked: fail here if fuzz/Cargo.lock is not up to date.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

section "build"
rm -rf "$SMOKE"
mkdir -p "$SMOKE"
cargo +nightly fuzz build "${BUILD[@]}"
lap "fuzz build"

# The state_file seeds are real databases, written by stackpipe-state itself
# (0.5-1 MB each, so not committed): the state_file target writes them when
# asked (fuzz/src/seeds.rs).
if ! ls fuzz/corpus/state_file/*.redb >/dev/null 2>&1; then
  section "state_file seeds"
  STACKPIPE_FUZZ_WRITE_SEEDS="$PWD/fuzz/corpus" cargo +nightly fuzz run "${BUILD[@]}" state_file 2>&1 | grep -v Finished
  lap "state_file seeds"
fi

# Per target: the libFuzzer options beyond the common ones, the seed
# directories read besides its corpus (absolute: libFuzzer gets them as
# given), and its environment.
target_args() {
  environment=()
  case "$1" in
    parser)
      seed_dirs=("$PWD/fuzz/corpus/parser" "$PWD/examples" "$PWD/tests/diagnostics")
      extra=(-max_len=16384)
      ;;
    state_file)
      seed_dirs=("$PWD/fuzz/corpus/state_file")
      # redb's Drop panics on a file its check found damaged; stackpipe-state
      # catches that panic (guard.rs), and Rust then leaks the error value
      # that was being returned (rust-lang/rust#47949): harmless, but
      # LeakSanitizer reports it, after each input and at exit. Leaks are
      # not what this target looks for.
      extra=(-detect_leaks=0)
      environment+=(ASAN_OPTIONS=detect_leaks=0)
      ;;
    *)
      seed_dirs=("$PWD/fuzz/corpus/$1")
      extra=(-max_len=8192)
      ;;
  esac
}

failed=()
for t in "${TARGETS[@]}"; do
  section "fuzz $t for ${SECONDS_EACH}s"
  # New inputs go to a scratch corpus (deleted with fuzz/target), so the
  # committed seeds stay as they are; crashes go to fuzz/artifacts/$t/.
  corpus="$PWD/$SMOKE/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  log="$SMOKE/$t.log"
  target_args "$t"
  set +e
  env ${environment[@]+"${environment[@]}"} cargo +nightly fuzz run "${BUILD[@]}" "$t" "$corpus" "${seed_dirs[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    "${extra[@]}" >"$log" 2>&1
  status=$?
  set -e
  # cargo fuzz prints a failing input's bytes in full: a state_file input is
  # a megabyte. Lines are cut to 400 characters.
  if [ "$status" -eq 0 ]; then
    grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" | cut -c1-400 || true
  else
    echo "error: fuzz target $t failed (exit $status); the end of its output:" >&2
    grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)|^\s+NEW_FUNC' "$log" | tail -n 120 | cut -c1-400 || true
    ls -l "fuzz/artifacts/$t"
    failed+=("$t")
  fi
  lap "fuzz $t"
done

section "summary"
du -sh "$SMOKE/corpus"/* 2>/dev/null || true
if [ "${#failed[@]}" -gt 0 ]; then
  echo "error: crashes in: ${failed[*]} (inputs in fuzz/artifacts/; see fuzz/README.md to reproduce)" >&2
  exit 1
fi
echo "no crashes"
