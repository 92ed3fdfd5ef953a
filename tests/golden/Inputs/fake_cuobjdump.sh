#!/usr/bin/env bash
# Stands in for `cuobjdump -sass CUBIN` in the sass_check tests: checks it was handed a CUDA ELF
# file and prints the listing FAKE_SASS names instead of disassembling it.
set -eu
[[ $1 == -sass ]] || { echo "fake_cuobjdump: expected -sass, got $1" >&2; exit 64; }
[[ $(head -c 4 "$2" | od -An -c | tr -d ' ') == '177ELF' ]] || { echo "fake_cuobjdump: $2 is not an ELF file" >&2; exit 65; }
cat "$FAKE_SASS"
