#!/usr/bin/env python3
"""The three tables of README.md's Performance section from a report's JSON (bench/report.py):
bf16 at the main token count, the quantized formats against bf16 and the QLoRA composition, and
the token sweep of bf16 and nf4. Prints markdown on stdout.

  python3 bench/readme_tables.py bench/results/<date>-<device>.json
"""
import json
import sys

from report import bound, fmt, main_tokens, pair, percent, ratio, sweep_rows, table


def row_of(rows, shape, proj, weights, tokens):
    return next(r for r in rows if (r["shape"], r["proj"], r["weights"], r["tokens"]) ==
                (shape, proj, weights, tokens))


def share(numerator, r, suffix):
    """moejit's share of `numerator` (a roofline or bound), f or f+b."""
    return fmt(percent(numerator, r[f"moejit_{suffix}_ms"]), ".0f", "%")


def shares(r, of):
    return f"{share(of(r, 'f'), r, 'f')} / {share(of(r, 'fb'), r, 'fb')}"


def roofline(r, suffix):
    return r[f"roofline_{suffix}_ms"]


def times(r, spec):
    return pair(r["moejit_f_ms"], r["moejit_fb_ms"], spec)


def vs_composition(r):
    """The composition's times over moejit's, f / f+b."""
    return pair(ratio(r["composition_f_ms"], r["moejit_f_ms"]),
                ratio(r["composition_fb_ms"], r["moejit_fb_ms"]), ".2f", "x")


def bf16_table(rows, keys, tokens):
    lines = []
    for shape, proj in keys:
        b = row_of(rows, shape, proj, "bf16", tokens)
        lines.append("| " + " | ".join((
            shape, proj, fmt(b["moejit_f_ms"], ".2f"), fmt(b["composition_f_ms"], ".2f"),
            fmt(b["roofline_f_ms"], ".2f"), fmt(b["moejit_fb_ms"], ".2f"),
            fmt(b["composition_fb_ms"], ".2f"), fmt(b["roofline_fb_ms"], ".2f"),
            pair(b["memory_f_ms"], b["memory_fb_ms"], ".2f"), shares(b, roofline),
            shares(b, bound), fmt(b["cold_tune_s"], ".1f"),
            pair(b["warm_first_launch_ms"], b["first_forward_ms"], ".1f"))) + " |")
    return table(("shape", "proj", "moejit f ms", "composition f ms", "roofline f ms",
                  "moejit f+b ms", "composition f+b ms", "roofline f+b ms",
                  "memory floor f / f+b ms", "% of roofline f / f+b", "% of bound f / f+b",
                  "cold tune s", "warm first launch ms: process / runtime"), lines)


def quantized_table(rows, keys, tokens):
    lines = []
    for shape, proj in keys:
        b, n, d, i = (row_of(rows, shape, proj, weights, tokens)
                      for weights in ("bf16", "nf4", "nf4-dq", "int8"))
        extra = n.get("composition_measured_extra_gib") or n.get("composition_peak_extra_gib")
        lines.append("| " + " | ".join((
            shape, proj, fmt(b["moejit_fb_ms"], ".2f"), fmt(n["moejit_fb_ms"], ".2f"),
            fmt(ratio(n["moejit_fb_ms"], b["moejit_fb_ms"]), ".2f", "x"),
            fmt(ratio(d["moejit_fb_ms"], b["moejit_fb_ms"]), ".2f", "x"),
            fmt(i["moejit_fb_ms"], ".2f"),
            fmt(ratio(i["moejit_fb_ms"], b["moejit_fb_ms"]), ".2f", "x"),
            fmt(n["composition_fb_ms"], ".2f"), vs_composition(n),
            pair(n["cold_tune_s"], i["cold_tune_s"], ".1f"), fmt(n["peak_extra_gib"], ".2f"),
            fmt(extra, ".2f"))) + " |")
    return table(("shape", "proj", "bf16 f+b ms", "nf4 f+b ms", "nf4 / bf16",
                  "nf4-dq / bf16 (default config)", "int8 f+b ms", "int8 / bf16",
                  "QLoRA composition f+b ms", "nf4 speedup vs composition f / f+b",
                  "cold tune s nf4 / int8", "moejit extra GiB", "composition extra GiB"), lines)


def sweep_table(rows):
    preset, swept = sweep_rows(rows)
    lines = []
    for proj in ("gate_up", "down"):
        for tokens in sorted({r["tokens"] for r in swept if r["proj"] == proj}):
            b = row_of(rows, preset, proj, "bf16", tokens)
            n = row_of(rows, preset, proj, "nf4", tokens)
            lines.append("| " + " | ".join((
                proj, str(tokens), times(b, ".3f"), shares(b, bound), times(n, ".3f"),
                pair(ratio(n["moejit_f_ms"], b["moejit_f_ms"]),
                     ratio(n["moejit_fb_ms"], b["moejit_fb_ms"]), ".2f", "x"),
                shares(n, bound), vs_composition(n))) + " |")
    return table(("proj", "tokens", "bf16 f / f+b ms", "bf16 % of bound f / f+b",
                  "nf4 f / f+b ms", "nf4 / bf16 f / f+b", "nf4 % of bound f / f+b",
                  "nf4 speedup vs QLoRA composition f / f+b"), lines)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = json.load(open(sys.argv[1]))
    tokens = main_tokens(rows)
    keys = list(dict.fromkeys((r["shape"], r["proj"]) for r in rows if r["tokens"] == tokens))
    print("\n\n".join((bf16_table(rows, keys, tokens), quantized_table(rows, keys, tokens),
                       sweep_table(rows))))


if __name__ == "__main__":
    main()
