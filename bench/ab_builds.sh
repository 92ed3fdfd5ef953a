#!/usr/bin/env bash
# Same-run A/B of two builds' moejit_bench on the GPU machine: the two binaries alternate ROUNDS
# times on the same arguments (so drift of clocks and temperature hits both), then one line per
# row with each build's median forward and forward+backward ms over the rounds.
#
#   bench/ab_builds.sh OLD_BENCH NEW_BENCH ROUNDS MOEJIT_BENCH_ARGS...
#
# Environment: OUT (default ab-builds-out: the JSON lines and logs), CARRY_LIB as device.sh.
set -u -o pipefail
OLD=$1 NEW=$2 ROUNDS=$3
shift 3
OUT=${OUT:-ab-builds-out}
export LD_LIBRARY_PATH="${CARRY_LIB:-$PWD/.carry/lib}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT"
for ((round = 0; round < ROUNDS; ++round)); do
  for side in old new; do
    bench=$OLD
    [[ $side == new ]] && bench=$NEW
    "$bench" "$@" --no-first-launch >>"$OUT/$side.jsonl" 2>>"$OUT/$side.log" ||
      echo "ab_builds: $side round $round failed: $(tail -n 3 "$OUT/$side.log")"
  done
done
python3 - "$OUT" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for side in ("old", "new"):
    path = out / f"{side}.jsonl"
    for line in (path.read_text().splitlines() if path.exists() else []):
        r = json.loads(line)
        key = (r.get("shape"), r.get("proj"), r.get("weights"), r.get("tokens"))
        entry = rows.setdefault(key, {}).setdefault(side, {"f": [], "fb": []})
        entry["f"].append(r.get("moejit_f_ms"))
        entry["fb"].append(r.get("moejit_fb_ms"))
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")
for key, sides in rows.items():
    old, new = sides.get("old", {"f": [], "fb": []}), sides.get("new", {"f": [], "fb": []})
    f0, f1, b0, b1 = med(old["f"]), med(new["f"]), med(old["fb"]), med(new["fb"])
    print(f"{' '.join(map(str, key))}: f {f0:.3f} -> {f1:.3f} ms ({f0 / f1:.3f}x), "
          f"f+b {b0:.3f} -> {b1:.3f} ms ({b0 / b1:.3f}x)")
PY
