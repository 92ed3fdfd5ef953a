#!/usr/bin/env bash
# Checks the SASS of each kernel family on a list of representative configs: the sm_90a wgmma
# kernels must hold HGMMA instructions (else the math silently fell back to something slower) and
# compile without ptxas C7519 (accumulators fenced around a wgmma), and no kernel may touch local
# memory (LDL/STL: register spills or dynamically indexed arrays).
# Renders each CUBIN with moejit_render --cubin and disassembles it with cuobjdump -sass, which the
# GPU machine's toolkit has (bench/device.sh runs this as its `sass` stage).
#
#   bench/sass_check.sh [BUILD]        BUILD: a build folder with tests/golden/moejit_render
#                                      (default: build)
#   bench/sass_check.sh --count FILE   prints "HGMMA LDL STL INSTRUCTIONS" of a cuobjdump -sass text
#
# Environment: CUOBJDUMP (default: cuobjdump on PATH, else /usr/local/cuda/bin/cuobjdump);
# MOEJIT_RENDER (default: BUILD/tests/golden/moejit_render); SASS_ONLY: comma-separated config
# names to check (default: all).
# Exit status: 0 every kernel passes; 1 a kernel failed or did not compile; 2 no cuobjdump, so
# nothing was checked.
set -u -o pipefail

# Projections of public models, as moejit_render flags: Qwen3-30B-A3B's gate_up, a
# GPT-OSS-like down projection (in_out weights with bias) and Mixtral-8x7B's gate_up.
QWEN="--experts 128 --top-k 8 --in-features 2048 --out-features 1536 --rank 16 --grouped-out"
GPTOSS="--experts 32 --top-k 4 --in-features 2880 --out-features 2880 --rank 16 --grouped-in --bias"
MIXTRAL="--experts 8 --top-k 2 --in-features 4096 --out-features 28672 --rank 16 --grouped-out"
WG128="--block-m 128 --block-n 128 --block-k 64 --warps-m 8 --warps-n 1 --stages 4 --wgmma"
WG256="--block-m 128 --block-n 256 --block-k 64 --warps-m 8 --warps-n 1 --stages 4 --wgmma"
# The default mma.sync tiles of quantized weights (autotune/tuner.cpp).
MMA8W="--block-m 128 --block-n 128 --block-k 32 --warps-m 4 --warps-n 2 --stages 2"
# The register-operand kernel's default tile (autotune/tuner.cpp, rs_candidates), nf4 and int8.
RS256_TILE="--block-m 256 --block-n 128 --block-k 64 --warps-m 8 --warps-n 1 --stages 4 --wgmma --tma --rs"
RS256="$RS256_TILE --weights nf4"
# The lora_grad default for r = 16 (autotune/tuner.cpp): block_m is the padded rank, 4 warps
# splitting 64-row stages, two of them.
GRAD16="--block-m 16 --block-n 128 --block-k 64 --warps-m 1 --warps-n 4 --stages 2"

# One kernel per line: a name, whether its SASS must hold HGMMA, moejit_render's flags (without tile
# flags: TileConfig's default, m128n128k32_w2x2_s3). Add a line to check another kernel; names are
# what SASS_ONLY selects.
CONFIGS=$(
  cat <<LIST
fwd_wg_m128n256_s4        yes --arch sm_90a $QWEN $WG256
fwd_wg_in_out_gptoss      yes --arch sm_90a $GPTOSS --layout in_out $WG128
fwd_mma_default_sm90a     no  --arch sm_90a $QWEN
fwd_mma_default_sm80      no  --arch sm_80 $QWEN
fwd_nf4_wg                yes --arch sm_90a $QWEN --weights nf4 $WG128
fwd_nf4_dq_mma            no  --arch sm_90a $QWEN --weights nf4 --double-quant $MMA8W
fwd_int8_mma              no  --arch sm_90a $QWEN --weights int8_rowwise $MMA8W
dx_wg                     yes --arch sm_90a --op backward_dx $QWEN $WG128
dx_mma_default            no  --arch sm_90a --op backward_dx $QWEN
grad_a                    no  --arch sm_90a --op grad_a $QWEN $GRAD16
grad_b                    no  --arch sm_90a --op grad_b $QWEN $GRAD16
pack_b                    no  --arch sm_90a --op pack_b $QWEN
reduce_slots              no  --arch sm_90a --op reduce_slots $QWEN
fwd_tma_m128n256_s4       yes --arch sm_90a $QWEN $WG256 --tma
fwd_tma_in_out_gptoss     yes --arch sm_90a $GPTOSS --layout in_out $WG128 --tma
dx_tma                    yes --arch sm_90a --op backward_dx $QWEN $WG128 --tma
fwd_tma_nf4_dq            yes --arch sm_90a $QWEN --weights nf4 --double-quant $WG128 --tma
dx_tma_int8_in_out        yes --arch sm_90a --op backward_dx $GPTOSS --layout in_out --weights int8_rowwise $WG128 --tma
fwd_tma_c2_mixtral        yes --arch sm_90a $MIXTRAL $WG256 --tma --cluster-m 2
dx_tma_c2_in_out_gptoss   yes --arch sm_90a --op backward_dx $GPTOSS --layout in_out $WG128 --tma --cluster-m 2
fwd_rs_nf4_qwen           yes --arch sm_90a $QWEN $RS256
fwd_rs_nf4_dq_in_out      yes --arch sm_90a $GPTOSS --layout in_out $RS256 --double-quant
dx_rs_nf4_mixtral         yes --arch sm_90a --op backward_dx $MIXTRAL $RS256
fwd_rs_int8_mixtral       yes --arch sm_90a $MIXTRAL $RS256_TILE --weights int8_rowwise
dx_rs_int8_in_out         yes --arch sm_90a --op backward_dx $GPTOSS --layout in_out $RS256_TILE --weights int8_rowwise
fwd_rs_int8_in_out        yes --arch sm_90a $GPTOSS --layout in_out $RS256_TILE --weights int8_rowwise
LIST
)

# Prints "HGMMA LDL STL INSTRUCTIONS" for a cuobjdump -sass listing. An instruction line is
# "/*0a90*/  [@[!]P0]  OPCODE[.MODIFIERS] operands ;"; its encoding comments ("/* 0x... */") and
# the function headers do not start with an address, so they are not counted.
count_sass() {
  awk '
    match($0, /^[ \t]*\/\*[0-9a-fA-F]+\*\/[ \t]+/) {
      text = substr($0, RSTART + RLENGTH)
      sub(/^@!?U?P[T0-9]+[ \t]+/, "", text)
      split(text, words, /[ \t.;]/)
      count[words[1]]++
      total++
    }
    END { printf "%d %d %d %d\n", count["HGMMA"], count["LDL"], count["STL"], total }' "$1"
}

row() { printf '%-26s %6s %5s %5s  %s\n' "$@"; }

selected() { [[ -z ${SASS_ONLY:-} || ",$SASS_ONLY," == *",$1,"* ]]; }

# check_one NAME NEEDS_HGMMA FLAGS...: prints the config's table row; fails if the kernel does.
# Why a kernel failed (compile or disassembly output) goes to DETAILS, printed after the table.
check_one() {
  local name=$1 needs_hgmma=$2 hgmma ldl stl total
  shift 2
  local cubin="$WORK/$name.cubin" sass="$WORK/$name.sass" problems=""
  if ! "$RENDER" "$@" --cubin "$cubin" >"$WORK/$name.log" 2>&1; then
    row "$name" - - - "FAIL (moejit_render)"
    DETAILS+=("$name: moejit_render $*"$'\n'"$(tail -n 20 "$WORK/$name.log")")
    return 1
  fi
  if ! "$CUOBJDUMP" -sass "$cubin" >"$sass" 2>&1; then
    row "$name" - - - "FAIL (cuobjdump)"
    DETAILS+=("$name: $CUOBJDUMP -sass"$'\n'"$(tail -n 20 "$sass")")
    return 1
  fi
  read -r hgmma ldl stl total < <(count_sass "$sass")
  ((total > 0)) || problems+="${problems:+, }no SASS instructions parsed"
  if [[ $needs_hgmma == yes ]] && ((hgmma == 0)); then
    problems+="${problems:+, }no HGMMA in a wgmma kernel"
  fi
  ((ldl + stl == 0)) || problems+="${problems:+, }local memory"
  # ptxas C7519: a wgmma behind a branch made ptxas fence its accumulators (bench/NOTES.md, v5d).
  if [[ $needs_hgmma == yes ]] && "$RENDER" "$@" --ptxas 2>&1 | grep -q C7519; then
    problems+="${problems:+, }ptxas C7519 (wgmma fenced)"
  fi
  if [[ -z $problems ]]; then
    row "$name" "$hgmma" "$ldl" "$stl" PASS
    return 0
  fi
  row "$name" "$hgmma" "$ldl" "$stl" "FAIL ($problems)"
  DETAILS+=("$name: moejit_render $*"$'\n'"$(grep -E '(LDL|STL)[. ]' "$sass" | head -n 10)")
  return 1
}

check_all() {
  local name needs_hgmma flags checked=0 failed=0
  row config HGMMA LDL STL verdict
  while read -r name needs_hgmma flags; do
    if [[ -z $name || $name == \#* ]] || ! selected "$name"; then continue; fi
    checked=$((checked + 1))
    # shellcheck disable=SC2086  # flags is a list of words on purpose
    check_one "$name" "$needs_hgmma" $flags || failed=$((failed + 1))
  done <<<"$CONFIGS"
  local detail
  for detail in "${DETAILS[@]}"; do printf '\n%s\n' "$detail"; done
  echo
  echo "sass_check: $((checked - failed)) of $checked kernels pass"
  ((checked > 0 && failed == 0))
}

main() {
  case ${1:-} in
    --count) count_sass "${2:?--count needs a cuobjdump -sass file}"; return ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d'; return ;;
  esac
  local build=${1:-build}
  CUOBJDUMP=${CUOBJDUMP:-$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)}
  RENDER=${MOEJIT_RENDER:-$build/tests/golden/moejit_render}
  if [[ ! -x $CUOBJDUMP ]]; then
    echo "sass_check: cuobjdump not found ($CUOBJDUMP): the SASS was not checked"
    return 2
  fi
  if [[ ! -x $RENDER ]]; then
    echo "sass_check: no $RENDER: build the moejit_render target (or set MOEJIT_RENDER)"
    return 1
  fi
  WORK=$(mktemp -d) || return 1
  trap 'rm -rf "$WORK"' EXIT
  DETAILS=()
  check_all
}

main "$@"
