#!/usr/bin/env bash
# Nsight Compute profile of one projection's step, run on the GPU machine from the repository root
# with a carried build folder (as bench/device.sh): the time of every kernel of a forward and a
# forward+backward step (kernels.csv, averaged per kernel name in kernels.txt, then the last
# launches one by one with their DRAM bytes), then the full section set
# of the forward GEMM kernel (forward.txt), its stall reasons and its hottest SASS instructions
# (stalls.txt). Finds what limits a kernel before it is changed.
#
#   bench/profile.sh [BUILD] PRESET PROJ WEIGHTS [GEMM_CONFIG]
#
# GEMM_CONFIG pins the forward and dX config (moejit_bench --gemm-config); without it the
# runtime's default configs run. KERNEL=REGEX profiles another kernel of the step in detail
# instead of the forward GEMM (e.g. KERNEL=moe_lora_grad SKIP=1: the backward's dB; SKIP launches
# of it are skipped first), under the same file names. Writes three files into OUT (default
# BUILD/profile-out), named PRESET-PROJ-WEIGHTS-{kernels,forward,stalls}.txt (PRESET-PROJ-WEIGHTS-tT
# for TOKENS=T), so that several profiles fit in what the device machine returns; KEEP_REPORT=1
# adds the Nsight Compute report (.ncu-rep). CLOCKS=none keeps the GPU's own clocks (ncu
# --clock-control none) instead of locking them to the base clock, so that the kernel times
# compare with the bench's event-timed steps. TOKENS=T profiles T tokens (default: the bench's 8192). The raw CSVs and the
# logs stay in a scratch folder (printed on failure). KERNELS_ONLY=1 stops after the kernel times.
set -euo pipefail
BUILD=${1:-build}
PRESET=${2:?preset}
PROJ=${3:?gate_up or down}
WEIGHTS=${4:?weights}
GEMM_CONFIG=${5:-}
OUT=${OUT:-$BUILD/profile-out}
mkdir -p "$OUT"
NAME="$OUT/$PRESET-$PROJ-$WEIGHTS${TOKENS:+-t$TOKENS}"
WORK=$(mktemp -d)
trap 'echo "profile.sh failed; logs in $WORK" >&2' ERR
export PATH="/usr/local/cuda/bin:$PATH"
export LD_LIBRARY_PATH="${CARRY_LIB:-$PWD/.carry/lib}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# An untuned row (tune only a format not measured) runs the default or the pinned config.
other=int8; [[ $WEIGHTS == int8 ]] && other=bf16
bench=("$BUILD/bench/moejit_bench" --presets "$PRESET" --proj "$PROJ" --weights "$WEIGHTS"
  --tune-weights "$other" --no-first-launch --warmup 1 --reps 1
  ${GEMM_CONFIG:+--gemm-config "$GEMM_CONFIG"} ${TOKENS:+--tokens "$TOKENS"})

ncu ${CLOCKS:+--clock-control "$CLOCKS"} --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
  --print-units base --csv --log-file "$WORK/kernels.csv" "${bench[@]}" >"$WORK/bench.jsonl" 2>"$WORK/ncu.log"
# Per kernel name, the mean time of its launches; then the last step's launches one by one, with
# their DRAM bytes (a kernel that serves the forward and dX, such as the rs GEMM, differs there).
python3 - "$WORK/kernels.csv" >"$NAME-kernels.txt" <<'PY'
import collections, csv, re, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r and not r[0].startswith("==")]
head = rows[0]
launch, name = head.index("ID"), head.index("Kernel Name")
metric, value = head.index("Metric Name"), head.index("Metric Value")
launches = collections.OrderedDict()
for r in rows[1:]:
    entry = launches.setdefault(r[launch], {"kernel": re.sub(r"<.*", "", r[name])})
    entry[r[metric]] = float(r[value].replace(",", ""))  # ns and bytes (--print-units base)
total = collections.defaultdict(lambda: [0, 0.0])
for entry in launches.values():
    total[entry["kernel"]][0] += 1
    total[entry["kernel"]][1] += entry["gpu__time_duration.sum"] / 1e3
for kernel, (n, us) in sorted(total.items(), key=lambda kv: -kv[1][1]):
    print(f"{us / n:10.1f} us  x{n:<3} {kernel}")
# The last 12 launches: the last step or two (a step of the rs kernel is six launches).
print("\nlast launches: us, DRAM MB read / written, kernel")
for entry in list(launches.values())[-12:]:
    print(f"{entry['gpu__time_duration.sum'] / 1e3:10.1f}  {entry['dram__bytes_read.sum'] / 1e6:7.0f} / "
          f"{entry['dram__bytes_write.sum'] / 1e6:5.0f}  {entry['kernel']}")
PY
cat "$NAME-kernels.txt"
if [[ ${KERNELS_ONLY:-0} == 1 ]]; then rm -rf "$WORK"; exit 0; fi
ncu ${CLOCKS:+--clock-control "$CLOCKS"} --set full --kernel-name "regex:${KERNEL:-moe_lora_forward}" --launch-skip "${SKIP:-1}" --launch-count 1 \
  -o "$WORK/forward" -f "${bench[@]}" >>"$WORK/ncu.log" 2>&1
ncu --import "$WORK/forward.ncu-rep" --page details >"$NAME-forward.txt"
{ grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|L2 Hit|DRAM Throughput|Bank|L1/TEX Hit|Mem Busy|Max Bandwidth|Mem Pipes Busy" \
  "$NAME-forward.txt" || true; } | head -40
# Where the warps wait: the stall reasons of the forward kernel, largest first.
ncu --import "$WORK/forward.ncu-rep" --page raw --csv >"$WORK/forward-raw.csv" 2>>"$WORK/ncu.log"
python3 - "$WORK/forward-raw.csv" <<'PY' | tee "$NAME-stalls.txt"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head, values = rows[0], rows[2]
def number(v):
    try:
        return float(v.replace(",", ""))
    except ValueError:
        return None
stalls = [(number(v), h) for h, v in zip(head, values)
          if "issue_stalled_" in h and h.endswith(".ratio") and number(v) is not None]
for v, h in sorted(stalls, reverse=True)[:12]:
    print(f"{v:8.2f}  {h}")
PY
# Where in the SASS: the instructions holding the most warp samples, with their two main stall
# reasons and how often they ran (a loop's body, a tile's epilogue, the loader's waits), appended
# to the stalls file. This is what told the loader's B staging apart from the epilogue (v5d).
ncu --import "$WORK/forward.ncu-rep" --page source --print-source sass --csv \
  >"$WORK/forward-sass.csv" 2>>"$WORK/ncu.log"
python3 - "$WORK/forward-sass.csv" <<'PY' | tee -a "$NAME-stalls.txt"
import collections, csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 3]
head, body = rows[0], rows[1:]
col = {h: i for i, h in enumerate(head)}
samples, executed = col["Warp Stall Sampling (All Samples)"], col["Instructions Executed"]
reasons = [h for h in head if h.startswith("stall_") and "Not Issued" not in h]
def number(r, i):
    try:
        return float(r[i].replace(",", "") or 0)
    except ValueError:
        return 0.0
total = sum(number(r, samples) for r in body) or 1.0
by_opcode = collections.Counter()
for r in body:
    words = [w for w in r[col["Source"]].split() if not w.startswith("@")]
    by_opcode[words[0].split(".")[0] if words else "?"] += number(r, samples)
print(f"\nSASS: {len(body)} instructions, {total:.0f} warp samples; by opcode:")
print("  " + ", ".join(f"{op} {n / total:.0%}" for op, n in by_opcode.most_common(10)))
print("hottest instructions (index, share of samples, times executed, main stall reasons):")
for i in sorted(range(len(body)), key=lambda i: -number(body[i], samples))[:25]:
    r = body[i]
    top = sorted(((number(r, col[h]), h[6:]) for h in reasons), reverse=True)[:2]
    why = ", ".join(f"{h} {v / max(number(r, samples), 1):.0%}" for v, h in top if v > 0)
    print(f"  {i:5d} {number(r, samples) / total:6.1%} {number(r, executed):12.0f}  "
          f"{r[col['Source']].strip()[:60]:60}  {why}")
PY
if [[ ${KEEP_REPORT:-0} == 1 ]]; then cp "$WORK/forward.ncu-rep" "$NAME-forward.ncu-rep"; fi
rm -rf "$WORK"
