#!/usr/bin/env python3
"""Merges moejit_bench and composition.py JSON lines into <date>-<device-slug>.md and .json.

Rows are matched by (shape, proj, tokens, rank, weights). The rooflines of every row are computed
here from its shape and the dense bf16 rate composition.py measured (bench/flops.py):
  roofline_f_ms  = 2 T k (K N + K r + r N) / rate
  roofline_fb_ms = 2 T k (2 K N + 3 K r + 3 N r) / rate   (forward + dX + dA + dB)
and its memory floors from the bytes each op moves at least and the copy rate it measured
(flops.step_bytes; gate_up reads a gathered x of T rows, down a grouped one of T k rows).
The markdown holds the main table (the rows at the main token count) and, when one preset was
measured at several token counts, the token sweep; both are also printed on stdout.
"""
import argparse
import collections
import json
import pathlib
import re
import sys

from flops import forward_backward_flops, forward_flops, memory_floor_ms, roofline_ms, step_bytes

KEY = ("shape", "proj", "tokens", "rank", "weights")
FIELDS = ("device", "date", "shape", "proj", "tokens", "rank", "weights", "moejit_f_ms",
          "composition_f_ms", "roofline_f_ms", "cold_tune_s", "cold_tune_compile_s",
          "cold_tune_timing_s", "warm_first_launch_ms", "first_forward_ms", "moejit_fb_ms",
          "composition_fb_ms", "roofline_fb_ms", "peak_extra_gib", "config",
          "composition_peak_extra_gib", "composition_measured_extra_gib", "tuned",
          "backward_configs", "experts", "top_k", "in_features", "out_features", "dense_tflops",
          "pinned", "copy_tbps", "memory_f_ms", "memory_fb_ms")
SHAPE_FIELDS = ("tokens", "top_k", "in_features", "out_features", "rank")


def read_rows(path):
    """The JSON objects of a JSON-lines file; other lines (stray log output) are skipped."""
    if path is None or not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and all(k in value for k in KEY[:4]):
            value.setdefault("weights", "bf16")  # reports from before quantized weights
            rows.append(value)
    return rows


def run_value(rows, field):
    """A value measured once per run (the dense or copy rate): the first row's that has it."""
    return next((r[field] for r in rows if r.get(field)), None)


def add_bounds(rows):
    """Every row's rooflines and memory floors from its shape and the run's measured dense and copy
    rates (a floor only where the row names its experts and a weight format flops.py knows)."""
    rate, copy = run_value(rows, "dense_tflops"), run_value(rows, "copy_tbps")
    for r in rows:
        if any(r.get(f) is None for f in SHAPE_FIELDS):
            continue
        shape = tuple(r[f] for f in SHAPE_FIELDS)
        if rate is not None:
            r["dense_tflops"] = rate
            r["roofline_f_ms"] = roofline_ms(forward_flops(*shape), rate)
            r["roofline_fb_ms"] = roofline_ms(forward_backward_flops(*shape), rate)
        if copy is not None and r.get("experts") is not None:
            # The bench's gate_up gathers x (T rows), its down reads it grouped (T k rows).
            x_rows = r["tokens"] * (1 if r["proj"] == "gate_up" else r["top_k"])
            nbytes = step_bytes(*shape, r["experts"], r["weights"], x_rows)
            if nbytes is not None:
                r["copy_tbps"] = copy
                r["memory_f_ms"] = memory_floor_ms(nbytes[0], copy)
                r["memory_fb_ms"] = memory_floor_ms(nbytes[1], copy)


def merge(moejit_rows, composition_rows):
    merged = {}
    for source, rows in (("moejit", moejit_rows), ("composition", composition_rows)):
        for row in rows:
            out = merged.setdefault(tuple(row[k] for k in KEY), {f: None for f in FIELDS})
            for field in FIELDS:
                if out[field] is None and row.get(field) is not None:
                    out[field] = row[field]
            if row.get("error"):
                out[f"{source}_error"] = row["error"]
    rows = list(merged.values())
    add_bounds(rows)
    return rows


def ratio(numerator, denominator):
    return numerator / denominator if numerator and denominator else None


def fmt(value, spec, suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def pair(first, second, spec, suffix=""):
    return f"{fmt(first, spec, suffix)} / {fmt(second, spec, suffix)}"


def cold_tune(r):
    """The cold tune, and where it went (compiles / timing) where the row says."""
    total = fmt(r.get("cold_tune_s"), ".1f")
    if r.get("cold_tune_compile_s") is None or r.get("cold_tune_timing_s") is None:
        return total
    return f"{total} ({r['cold_tune_compile_s']:.1f} / {r['cold_tune_timing_s']:.1f})"


def percent(roofline, measured):
    value = ratio(roofline, measured)
    return value and value * 100


def bound(r, suffix):
    """The larger of the row's FLOP roofline and memory floor (suffix 'f' or 'fb'), ms."""
    values = [v for v in (r[f"roofline_{suffix}_ms"], r[f"memory_{suffix}_ms"]) if v is not None]
    return max(values) if values else None


def percent_of_bound(r):
    """moejit's share of the larger bound, f / f+b; '-' without a memory floor (then it would only
    repeat the share of the roofline)."""
    if r["memory_f_ms"] is None:
        return "- / -"
    return pair(percent(bound(r, "f"), r["moejit_f_ms"]),
                percent(bound(r, "fb"), r["moejit_fb_ms"]), ".0f", "%")


def config(r):
    """The forward's config; '(default)' when the row ran the runtime's untuned default configs."""
    if not r["config"]:
        return "-"
    if r.get("pinned"):
        return r["config"] + " (pinned)"
    return r["config"] + (" (default)" if r.get("tuned") is False else "")


def bf16_twin(rows, r):
    """moejit's own bf16 row of the same shape, projection and token count."""
    return next((b for b in rows if b["weights"] == "bf16" and
                 all(b[k] == r[k] for k in ("shape", "proj", "tokens", "rank"))), None)


# The columns both tables have, between the row's name and its tuning columns.
MEASURED_HEADER = ("moejit f ms", "moejit f+b ms", "composition f ms", "composition f+b ms",
                   "roofline f ms", "roofline f+b ms", "memory floor f / f+b ms",
                   "moejit % of roofline f / f+b", "moejit % of bound f / f+b",
                   "vs moejit bf16 f / f+b", "speedup vs composition f / f+b",
                   "extra GiB moejit / composition", "cold tune s (compile / timing)")
MAIN_HEADER = ("shape", "proj", "weights", *MEASURED_HEADER,
               "warm first launch ms: process / runtime", "config")


def vs_bf16(rows, r):
    """This row's moejit times over its bf16 twin's, f / f+b ('-' for bf16 rows)."""
    twin = bf16_twin(rows, r) if r["weights"] != "bf16" else None
    return (pair(ratio(r["moejit_f_ms"], twin["moejit_f_ms"]),
                 ratio(r["moejit_fb_ms"], twin["moejit_fb_ms"]), ".2f", "x") if twin else "-")


def measured_cells(rows, r):
    """The cells of MEASURED_HEADER."""
    return (fmt(r["moejit_f_ms"], ".3f"), fmt(r["moejit_fb_ms"], ".3f"),
            fmt(r["composition_f_ms"], ".3f"), fmt(r["composition_fb_ms"], ".3f"),
            fmt(r["roofline_f_ms"], ".3f"), fmt(r["roofline_fb_ms"], ".3f"),
            pair(r["memory_f_ms"], r["memory_fb_ms"], ".3f"),
            pair(percent(r["roofline_f_ms"], r["moejit_f_ms"]),
                 percent(r["roofline_fb_ms"], r["moejit_fb_ms"]), ".0f", "%"),
            percent_of_bound(r), vs_bf16(rows, r),
            pair(ratio(r["composition_f_ms"], r["moejit_f_ms"]),
                 ratio(r["composition_fb_ms"], r["moejit_fb_ms"]), ".2f", "x"),
            pair(r["peak_extra_gib"], r["composition_measured_extra_gib"], ".2f"), cold_tune(r))


def main_line(rows, r):
    cells = (r["shape"], r["proj"], r["weights"], *measured_cells(rows, r),
             pair(r["warm_first_launch_ms"], r["first_forward_ms"], ".1f"), config(r))
    return "| " + " | ".join(cells) + " |"


SWEEP_HEADER = ("proj", "weights", "tokens", *MEASURED_HEADER, "config")


def sweep_line(rows, r):
    cells = (r["proj"], r["weights"], str(r["tokens"]), *measured_cells(rows, r), config(r))
    return "| " + " | ".join(cells) + " |"


def table(header, lines):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header), *lines])


def main_tokens(rows):
    """The token count most rows were measured at: the main table's."""
    return collections.Counter(r["tokens"] for r in rows).most_common(1)[0][0]


def main_table(rows):
    tokens = main_tokens(rows)
    return table(MAIN_HEADER, [main_line(rows, r) for r in rows if r["tokens"] == tokens])


def sweep_rows(rows):
    """Rows of the one preset measured at several token counts, in the weight formats measured at
    more than one, by projection, format (bf16 first) and tokens."""
    shapes = dict.fromkeys(r["shape"] for r in rows)
    swept = [s for s in shapes if len({r["tokens"] for r in rows if r["shape"] == s}) > 1]
    if not swept:
        return None, []
    mine = [r for r in rows if r["shape"] == swept[0]]
    formats = [w for w in dict.fromkeys(r["weights"] for r in mine)
               if len({r["tokens"] for r in mine if r["weights"] == w}) > 1]
    picked = [r for r in mine if r["weights"] in formats]
    return swept[0], sorted(picked, key=lambda r: (r["proj"] != "gate_up", r["weights"] != "bf16",
                                                   formats.index(r["weights"]), r["tokens"]))


def tables(rows):
    text = [main_table(rows)]
    preset, swept = sweep_rows(rows)
    if swept:
        text += ["", f"Token sweep, {preset}:", "",
                 table(SWEEP_HEADER, [sweep_line(rows, r) for r in swept])]
    return "\n".join(text)


def error_notes(rows):
    notes = []
    for r in rows:
        for source in ("moejit", "composition"):
            if r.get(f"{source}_error"):
                notes.append(f"- {r['shape']} {r['proj']} T={r['tokens']} {r['weights']}, "
                             f"{source}: {r[f'{source}_error']}")
    return notes


METHOD = (
    "Times are medians of CUDA-event-timed steps. moejit f = Runtime::forward; moejit f+b = "
    "forward saving x*A^T, then Runtime::backward (dX, dA, dB). composition = torch._grouped_mm "
    "gather / grouped GEMMs / scatter; its f+b runs autograd on x, A and B (W frozen) with "
    "y.backward(g); nf4 rows dequantize all experts to bf16 with torch ops every step (QLoRA "
    "without a fused kernel). roofline = FLOPs / dense bf16 matmul rate (torch.mm 8192^3) on the "
    "same device, forward 2Tk(KN + Kr + rN), forward + backward 2Tk(2KN + 3Kr + 3Nr) "
    "(bench/flops.py); moejit % of roofline = roofline / moejit time. memory floor = the bytes "
    "the forward (x, W, A, B read, y written) and, for f+b, also dX, dA and dB move at least, "
    "each op reading its inputs and writing its outputs once (bench/flops.py), over the device "
    "copy rate measured in the same run; where it is above the roofline, DRAM bounds the row; "
    "moejit % of bound = the larger of the two / moejit time. vs moejit bf16 = this row's "
    "moejit time / the bf16 row's. extra GiB: moejit = backward workspace + saved x*A^T; "
    "composition = peak allocation during f+b beyond its inputs and outputs (measured). cold "
    "tune = Runtime::prepare of the forward and its backward ops with an empty cache; warm first "
    "launch = a new process's start to its first forward's completion with that cache "
    "(process), and the part of it from constructing the Runtime, with the CUDA context and the "
    "inputs already made as in a PyTorch process (runtime). A config "
    "marked (default) means the row was not autotuned in this run (moejit_bench --tune-weights): "
    "it ran the runtime's default configs (Runtime with tune = false), which tuning can only "
    "match or beat; (pinned) means its forward and dX ran the config moejit_bench --gemm-config "
    "named.")


def document(rows, device, date, command):
    first = rows[0]
    lines = [f"# moejit forward and backward benchmark: {device}, {date}", "",
             f"Measured by `{command}`. T = {main_tokens(rows)} tokens in the main table, LoRA "
             f"rank {first['rank']}, bf16 activations and LoRA factors, base weights bf16 or "
             "quantized (nf4: blocksize 64, fp32 absmax; nf4-dq: double quantization; int8: "
             "int8_rowwise), PEFT B storage, uniform random top-k routing. " + METHOD, ""]
    tflops, copy = run_value(rows, "dense_tflops"), run_value(rows, "copy_tbps")
    if tflops:
        copy_text = f"; device copy rate (bytes read + written): {copy:.2f} TB/s" if copy else ""
        lines += [f"Dense bf16 matmul rate measured: {tflops:.0f} TFLOP/s{copy_text}.", ""]
    lines.append(tables(rows))
    notes = error_notes(rows)
    if notes:
        lines += ["", "Errors:", *notes]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moejit", type=pathlib.Path, help="moejit_bench JSON lines")
    parser.add_argument("--composition", type=pathlib.Path, help="composition.py JSON lines")
    parser.add_argument("--out-dir", type=pathlib.Path, default=pathlib.Path("bench/results"))
    parser.add_argument("--command", default="bench/device.sh", help="the command that measured")
    args = parser.parse_args()
    rows = merge(read_rows(args.moejit), read_rows(args.composition))
    if not rows:
        sys.exit("report.py: no benchmark rows in the inputs")
    device = next((r["device"] for r in rows if r["device"]), "unknown-device")
    date = next((r["date"] for r in rows if r["date"]), "unknown-date")
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"{date}-{slug}"
    stem.with_suffix(".md").write_text(document(rows, device, date, args.command))
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(tables(rows))
    for note in error_notes(rows):
        print(note)


if __name__ == "__main__":
    main()
