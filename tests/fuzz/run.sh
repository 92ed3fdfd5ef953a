#!/bin/sh
# Builds the libFuzzer targets with clang (AddressSanitizer and UBSan on) and runs each for a
# bounded time. Exits non-zero when a target finds a crash; the reproducer is left in the build
# directory's fuzz-findings/.
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET (30)] [BUILD_DIR (build-fuzz)]
# Needs clang-14 and libclang-rt-14-dev (or CXX=another clang++ with its fuzzer runtime).
set -eu
seconds=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$root/build-fuzz}
cxx=${CXX:-clang++-14}
sanitizers="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"

# --as-needed, as Debian's gcc does by default: CUDA::nvrtc drags in the libcuda stub, which a
# machine without a driver cannot load and which nothing here calls.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$sanitizers" \
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--as-needed -DMOEJIT_FUZZ=ON >/dev/null
ninja -C "$build" moejit_import_fuzz moejit_hf_config_fuzz moejit_fuzz_seeds

seeds="$build/fuzz-seeds"
rm -rf "$seeds" && mkdir -p "$seeds/import" "$seeds/hf_config" "$build/fuzz-findings"
"$build/tests/fuzz/moejit_fuzz_seeds" "$seeds/import"
cp "$root"/tests/cli/hf_configs/*.json "$seeds/hf_config/"

status=0
for target in import hf_config; do
  corpus="$build/fuzz-corpus/$target"
  mkdir -p "$corpus"
  echo "fuzzing $target for $seconds s"
  ASAN_OPTIONS=detect_leaks=1 "$build/tests/fuzz/moejit_${target}_fuzz" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -artifact_prefix="$build/fuzz-findings/$target-" "$corpus" "$seeds/$target" || status=1
done
exit $status
