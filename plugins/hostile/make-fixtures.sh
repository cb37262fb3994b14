#!/usr/bin/env bash
# Writes the fixtures that are not components into DIST (default: dist/):
#   not-wasm.wasm     plain text with a .wasm name
#   core-module.wasm  a valid core wasm module (one empty exported function), not a component
#   truncated.wasm    the first 100 bytes of busy-loop.wasm (which must already be in DIST)
# Deterministic: the same bytes every time.
set -euo pipefail

dist="${1:-$(dirname "$0")/dist}"
mkdir -p "$dist"

printf 'this is not a wasm component\n' > "$dist/not-wasm.wasm"

# Hand-assembled core module: (module (func (export "run")))
{
  printf '\x00asm\x01\x00\x00\x00'             # magic, version 1 (a component has version 0x0d 0x00 0x01 0x00)
  printf '\x01\x04\x01\x60\x00\x00'            # type section: one type, func () -> ()
  printf '\x03\x02\x01\x00'                    # function section: one function of type 0
  printf '\x07\x07\x01\x03run\x00\x00'         # export section: "run" = func 0
  printf '\x0a\x04\x01\x02\x00\x0b'            # code section: one body, no locals, end
} > "$dist/core-module.wasm"

head -c 100 "$dist/busy-loop.wasm" > "$dist/truncated.wasm"
