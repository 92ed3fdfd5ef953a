#!/usr/bin/env bash
# A/B of pinned tile configs on the GPU machine: for each CONFIG, moejit_bench's untuned bf16
# rows with the forward and dX pinned to it, then one line per row and config (forward and
# forward+backward ms). For a kernel change's before/after on the same machine and run.
#
#   bench/ab.sh BUILD CONFIG [CONFIG ...]
#
# Environment: AB_ARGS (default "--presets mixtral-8x7b qwen3-30b-a3b --tokens 8192"), OUT
# (default BUILD/ab-out: one moejit_bench JSON-lines file per config), CARRY_LIB as device.sh.
set -u -o pipefail
BUILD=$1
shift
OUT=${OUT:-$BUILD/ab-out}
AB_ARGS=${AB_ARGS---presets mixtral-8x7b qwen3-30b-a3b --tokens 8192}
export LD_LIBRARY_PATH="${CARRY_LIB:-$PWD/.carry/lib}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT"
for config in "$@"; do
  # shellcheck disable=SC2086  # AB_ARGS holds several words on purpose
  "$BUILD/bench/moejit_bench" $AB_ARGS --weights bf16 --tune-weights nf4 --gemm-config "$config" \
    --no-first-launch --warmup 3 --reps 15 >"$OUT/$config.jsonl" 2>"$OUT/$config.log" ||
    echo "ab: $config failed (rc $?): $(tail -n 3 "$OUT/$config.log")"
done
python3 - "$OUT" "$@" <<'PY'
import json, sys, pathlib
out, configs = pathlib.Path(sys.argv[1]), sys.argv[2:]
for config in configs:
    path = out / f"{config}.jsonl"
    for line in (path.read_text().splitlines() if path.exists() else []):
        r = json.loads(line)
        print(f"{r.get('shape')} {r.get('proj')} T={r.get('tokens')} {config}: "
              f"f {r.get('moejit_f_ms')} ms, f+b {r.get('moejit_fb_ms')} ms")
PY
