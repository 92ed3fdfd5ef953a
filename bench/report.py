#!/usr/bin/env python3
"""Merges moejit_bench and composition.py JSON lines into <date>-<device-slug>.md and .json.

Rows are matched by (shape, proj, tokens, rank). The markdown table is also printed on stdout.
"""
import argparse
import json
import pathlib
import re
import sys

KEY = ("shape", "proj", "tokens", "rank")
FIELDS = ("device", "date", "shape", "proj", "tokens", "rank", "weights", "moejit_f_ms",
          "composition_f_ms", "roofline_f_ms", "cold_tune_s", "warm_first_launch_ms", "config")


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
        if isinstance(value, dict) and all(k in value for k in KEY):
            rows.append(value)
    return rows


def merge(moejit_rows, composition_rows):
    merged = {}
    for source, rows in (("moejit", moejit_rows), ("composition", composition_rows)):
        for row in rows:
            out = merged.setdefault(tuple(row[k] for k in KEY), {f: None for f in FIELDS})
            for field in FIELDS:
                if out[field] is None and row.get(field) is not None:
                    out[field] = row[field]
            if row.get("dense_tflops") is not None:
                out["dense_tflops"] = row["dense_tflops"]
            if row.get("error"):
                out[f"{source}_error"] = row["error"]
    return list(merged.values())


def ratio(numerator, denominator):
    return numerator / denominator if numerator and denominator else None


def fmt(value, spec, suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(rows):
    lines = ["| shape | proj | moejit ms | composition ms | roofline ms | moejit % of roofline "
             "| speedup vs composition | cold tune s | warm first launch ms | config |",
             "|" + " --- |" * 10]
    for r in rows:
        pct = ratio(r["roofline_f_ms"], r["moejit_f_ms"])
        lines.append(
            f"| {r['shape']} | {r['proj']} | {fmt(r['moejit_f_ms'], '.3f')} "
            f"| {fmt(r['composition_f_ms'], '.3f')} | {fmt(r['roofline_f_ms'], '.3f')} "
            f"| {fmt(pct and pct * 100, '.0f', '%')} "
            f"| {fmt(ratio(r['composition_f_ms'], r['moejit_f_ms']), '.2f', 'x')} "
            f"| {fmt(r['cold_tune_s'], '.1f')} | {fmt(r['warm_first_launch_ms'], '.0f')} "
            f"| {r['config'] or '-'} |")
    return "\n".join(lines)


def error_notes(rows):
    notes = []
    for r in rows:
        for source in ("moejit", "composition"):
            if r.get(f"{source}_error"):
                notes.append(f"- {r['shape']} {r['proj']}, {source}: {r[f'{source}_error']}")
    return notes


def document(rows, device, date, command):
    first = rows[0]
    lines = [f"# moejit forward benchmark: {device}, {date}", "",
             f"Measured by `{command}`. T = {first['tokens']} tokens, LoRA rank "
             f"{first['rank']}, bf16 activations, weights and LoRA factors, PEFT B storage, "
             "uniform random top-k routing. Times are medians of CUDA-event-timed launches; "
             "roofline = forward FLOPs / dense bf16 matmul rate (torch.mm 8192^3) on the same "
             "device; cold tune = Runtime::prepare with an empty cache; warm first launch = a "
             "new process's start to its first forward's completion with that cache.", ""]
    tflops = next((r["dense_tflops"] for r in rows if r.get("dense_tflops")), None)
    if tflops:
        lines += [f"Dense bf16 matmul rate measured: {tflops:.0f} TFLOP/s.", ""]
    lines.append(markdown_table(rows))
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
    print(markdown_table(rows))
    for note in error_notes(rows):
        print(note)


if __name__ == "__main__":
    main()
