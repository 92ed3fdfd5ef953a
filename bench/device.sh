#!/usr/bin/env bash
# The one command for the GPU machine, run from the repository root with a prebuilt build folder
# carried along: the SASS check, GPU tests, compute-sanitizer, then the benchmark and its report
# (bench/README.md).
#
#   bench/device.sh [BUILD]            BUILD: the carried build folder (default: build)
#
# Environment: STAGES (default sass,tests,sanitizer,bench); OUT (default BUILD/device-out); time
# limits in seconds SASS_TIMEOUT, TESTS_TIMEOUT, SANITIZER_TIMEOUT, BENCH_TIMEOUT,
# COMPOSITION_TIMEOUT; BENCH_ARGS for both moejit_bench and composition.py (default: the
# qwen3-30b-a3b token sweep in bf16 and nf4, and fewer reps; e.g. "--presets qwen3-30b-a3b --tokens 4096");
# MOEJIT_BENCH_ARGS for moejit_bench alone (default: the four weight formats, bf16 autotuned),
# COMPOSITION_ARGS for composition.py alone (default: bf16 and nf4); an empty value drops a
# default. CARRY_LIB: the carried libraries (default .carry/lib); RACECHECK_TEST names the test
# run under racecheck (RACECHECK_TEST=none: none); TESTS_REGEX keeps only the GPU tests it matches
# (ctest -R), in the tests and sanitizer stages, for a quick check within the device time.
# Every stage runs even when an earlier one failed; the exit status is non-zero if any failed (a
# stage recorded SKIP, e.g. sass without cuobjdump, did not run its check and does not fail it).
# Writes at most 8 files into OUT: sass.log, gpu-tests.log, sanitizer.log, bench.log, moejit.jsonl,
# composition.jsonl and the report's <date>-<device>.md and .json.
set -u -o pipefail

BUILD=${1:-build}
OUT=${OUT:-$BUILD/device-out}
STAGES=${STAGES:-sass,tests,sanitizer,bench}
SASS_TIMEOUT=${SASS_TIMEOUT:-120}
# The GPU tests took about 4 minutes on the H100 (2026-11-23), 7-7.3 on a fresh machine on
# 2026-11-25 (gpu_quant_gemm_test alone 3.6-4.4 minutes), and the sanitizer stage, which runs them
# all again in their quick mode under memcheck (plus one racecheck), 5 minutes: with the device
# machine's 10-minute calls the stages go in separate calls (STAGES=sass,tests;
# STAGES=sanitizer; STAGES=bench).
TESTS_TIMEOUT=${TESTS_TIMEOUT:-540}
SANITIZER_TIMEOUT=${SANITIZER_TIMEOUT:-540}
# The bench stage's default rows (bench/README.md) took 260 s on an H100 (2026-11-25, with the nf4
# token sweep): a cold tune of all kernels of a step takes 4-8 s there (NVRTC), so the bf16, nf4
# and int8 rows are autotuned and nf4-dq runs its default configs (--tune-weights can tune it too).
BENCH_TIMEOUT=${BENCH_TIMEOUT:-400}
COMPOSITION_TIMEOUT=${COMPOSITION_TIMEOUT:-120}
BENCH_ARGS=${BENCH_ARGS---tokens-sweep 1024,4096,8192,32768 --sweep-weights bf16,nf4 --warmup 3 --reps 15}
MOEJIT_BENCH_ARGS=${MOEJIT_BENCH_ARGS---weights bf16,nf4,nf4-dq,int8 --tune-weights bf16,nf4,int8}
COMPOSITION_ARGS=${COMPOSITION_ARGS---weights bf16,nf4}
CARRY_LIB=${CARRY_LIB:-$PWD/.carry/lib}
SUMMARY=()
FAILED=0

wants() { [[ ",$STAGES," == *",$1,"* ]]; }
record() {  # record STAGE STATUS [DETAIL]
  SUMMARY+=("$1=$2${3:+ ($3)}")
  [[ $2 == PASS || $2 == SKIP ]] || FAILED=1
}

link_if_absent() {
  [[ -e $1 || -L $1 ]] || { mkdir -p "$(dirname "$1")" && ln -s "$2" "$1"; }
}

# CTest files and the tests' environment hold the absolute paths of the machine that built them:
# make those paths lead here (links), or rewrite the CTest files of this throwaway copy.
relocate_build() {
  local cache="$BUILD/CMakeCache.txt" here orig_src orig_build
  [[ -f $cache ]] || { echo "setup: no $cache: pass the carried build folder as \$1"; return 1; }
  here=$(cd "$BUILD" && pwd -P)
  orig_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")
  orig_build=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$cache")
  link_if_absent "$orig_src" "$PWD" 2>/dev/null
  link_if_absent "$orig_build" "$here" 2>/dev/null
  if [[ $(cd "$orig_build" 2>/dev/null && pwd -P) != "$here" ]]; then
    echo "setup: $orig_build is not this build folder; rewriting its CTest files"
    grep -rl --include=CTestTestfile.cmake -F "$orig_build" "$BUILD" |
      xargs -r sed -i "s|$orig_build|$here|g"
  fi
}

setup() {
  mkdir -p "$OUT"
  export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1
  # Libraries the image may lack travel in CARRY_LIB (bench/carry_libs.sh fills it).
  export LD_LIBRARY_PATH="$CARRY_LIB:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
  fi
  relocate_build || return 1
  local missing
  missing=$(ldd "$BUILD/bench/moejit_bench" 2>&1 | grep 'not found')
  [[ -z $missing ]] || echo "setup: moejit_bench lacks libraries (run bench/carry_libs.sh):
$missing"
}

# bench/sass_check.sh: HGMMA in the wgmma kernels, no local memory (LDL/STL) in any kernel.
stage_sass() {
  local log="$OUT/sass.log" rc verdict
  timeout "$SASS_TIMEOUT" bench/sass_check.sh "$BUILD" >"$log" 2>&1
  rc=$?
  verdict=$(tail -n 1 "$log")
  case $rc in
    0) record sass PASS "$verdict" ;;
    2) record sass SKIP "$verdict" ;;
    *) record sass FAIL "rc $rc; $verdict" ;;
  esac
}

stage_tests() {
  command -v ctest >/dev/null || { record tests FAIL "ctest not found"; return; }
  timeout "$TESTS_TIMEOUT" ctest --test-dir "$BUILD" -L gpu ${TESTS_REGEX:+-R "$TESTS_REGEX"} \
    --no-tests=error --output-on-failure \
    >"$OUT/gpu-tests.log" 2>&1
  local rc=$? counts
  counts=$(grep -E 'tests passed|No tests were found' "$OUT/gpu-tests.log" | tail -n 1)
  if ((rc == 0)); then record tests PASS "$counts"; else record tests FAIL "rc $rc; $counts"; fi
}

# One line per GPU test: its environment (K=V ...) TAB its command, both shell-quoted.
list_gpu_tests() {
  ctest --test-dir "$BUILD" -L gpu ${TESTS_REGEX:+-R "$TESTS_REGEX"} --show-only=json-v1 | python3 -c '
import json, shlex, sys
for test in json.load(sys.stdin)["tests"]:
    env = [v for p in test.get("properties", []) if p["name"] == "ENVIRONMENT" for v in p["value"]]
    print(test["name"], shlex.join(env), shlex.join(test["command"]), sep="\t")'
}

stage_sanitizer() {
  command -v compute-sanitizer >/dev/null || { record sanitizer FAIL "compute-sanitizer not found"; return; }
  local log="$OUT/sanitizer.log" deadline=$((SECONDS + SANITIZER_TIMEOUT)) failures=0 runs=0
  local tests name env cmd tool racecheck_test
  tests=$(list_gpu_tests) || { record sanitizer FAIL "could not list the gpu tests"; return; }
  racecheck_test=${RACECHECK_TEST:-$(cut -f1 <<<"$tests" | grep -m1 forward || cut -f1 <<<"$tests" | head -n1)}
  : >"$log"
  while IFS=$'\t' read -r name env cmd; do
    [[ -n $name ]] || continue
    for tool in memcheck racecheck; do
      [[ $tool == memcheck || $name == "$racecheck_test" ]] || continue
      local left=$((deadline - SECONDS))
      echo "=== $tool $name" >>"$log"
      runs=$((runs + 1))
      if ((left < 5)); then echo "not run: the sanitizer stage ran out of time" >>"$log"; failures=$((failures + 1)); continue; fi
      eval "env MOEJIT_TEST_QUICK=1 $env timeout $left compute-sanitizer --tool $tool" \
        "--error-exitcode 86 --print-limit 20 $cmd" >>"$log" 2>&1 || failures=$((failures + 1))
      tail -n 3 "$log" | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' | sed "s/^/  $tool $name: /"
    done
  done <<<"$tests"
  if ((failures == 0 && runs > 0)); then record sanitizer PASS "$runs runs"; else record sanitizer FAIL "$failures of $runs runs failed"; fi
}

stage_bench() {
  local log="$OUT/bench.log" rc
  # shellcheck disable=SC2086  # the ARGS variables hold several words on purpose
  timeout "$BENCH_TIMEOUT" "$BUILD/bench/moejit_bench" $BENCH_ARGS $MOEJIT_BENCH_ARGS \
    >"$OUT/moejit.jsonl" 2> >(tee -a "$log" >&2)
  rc=$?; if ((rc == 0)); then record moejit_bench PASS; else record moejit_bench FAIL "rc $rc"; fi
  # shellcheck disable=SC2086
  timeout "$COMPOSITION_TIMEOUT" python3 bench/composition.py $BENCH_ARGS $COMPOSITION_ARGS \
    >"$OUT/composition.jsonl" 2> >(tee -a "$log" >&2)
  rc=$?; if ((rc == 0)); then record composition PASS; else record composition FAIL "rc $rc"; fi
  python3 bench/report.py --moejit "$OUT/moejit.jsonl" --composition "$OUT/composition.jsonl" \
    --out-dir "$OUT" --command "bench/device.sh $BUILD" >>"$log" 2>&1
  rc=$?; if ((rc == 0)); then record report PASS; else record report FAIL "rc $rc"; fi
}

setup || record setup FAIL
wants sass && stage_sass
wants tests && stage_tests
wants sanitizer && stage_sanitizer
wants bench && stage_bench
for md in "$OUT"/*.md; do [[ -f $md ]] && { echo; cat "$md"; }; done
echo
if ((${#SUMMARY[@]} == 0)); then SUMMARY=("nothing ran (STAGES=$STAGES)"); fi
(IFS=';'; echo "device.sh summary: ${SUMMARY[*]}")
exit "$FAILED"
