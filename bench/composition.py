#!/usr/bin/env python3
"""The forward a user composes today from torch._grouped_mm, timed on moejit_bench's shapes.

For each preset x projection: uniform random top-k routing sorted by expert (the rule of
bench/inputs.cpp), then gather -> grouped base GEMM -> two grouped LoRA GEMMs -> add (+ bias) ->
scatter, checked against a float32 einsum reference on a few tokens and timed with CUDA events.
Also measures the dense bf16 matmul rate once and derives each row's roofline time from it.
Prints one JSON object per row on stdout and a short line per row on stderr.
"""
import argparse
import datetime
import json
import statistics
import sys

import torch

# name: (experts, top_k, hidden, intermediate, layout, bias); the same table as runtime/presets.cpp.
PRESETS = {
    "qwen3-30b-a3b": (128, 8, 2048, 768, "out_in", False),
    "olmoe-1b-7b": (64, 8, 2048, 1024, "out_in", False),
    "mixtral-8x7b": (8, 2, 4096, 14336, "out_in", False),
    "gpt-oss-20b": (32, 4, 2880, 2880, "in_out", True),
}
LORA_SCALE = 2.0  # lora_alpha = 2r, as moejit_bench uses
CHECK_TOLERANCE = 1e-2  # relative Frobenius error of a bf16 composition against float32


def projection_shape(preset, proj):
    """(E, k, K, N, layout, bias, grouped_in, grouped_out) as in runtime/presets.cpp."""
    experts, top_k, hidden, inter, layout, bias = PRESETS[preset]
    if proj == "gate_up":
        return experts, top_k, hidden, 2 * inter, layout, bias, False, True
    return experts, top_k, inter, hidden, layout, bias, True, False


def random_routing(tokens, experts, top_k, gen):
    """k distinct experts per token, uniformly; slots t*k+j sorted by expert (ScatterMoE)."""
    scores = torch.rand(tokens, experts, device="cuda", generator=gen)
    slot_expert = scores.topk(top_k, dim=1).indices.reshape(-1)
    sorted_expert, sorted_slot = torch.sort(slot_expert, stable=True)
    offsets = torch.bincount(slot_expert, minlength=experts).cumsum(0)
    return sorted_expert.int(), sorted_slot, offsets.int()


class Problem:
    """Stored tensors in the layouts SPEC.md names: W out_in [E,N,K] or in_out [E,K,N],
    A [E*r, K], B PEFT [N, r*E], bias [E, N]."""

    def __init__(self, preset, proj, tokens, rank, gen):
        (self.E, self.k, self.K, self.N, self.layout, has_bias, self.grouped_in,
         self.grouped_out) = projection_shape(preset, proj)
        self.r = rank
        bf16 = dict(device="cuda", dtype=torch.bfloat16)
        w_shape = (self.E, self.N, self.K) if self.layout == "out_in" else (self.E, self.K, self.N)
        self.w = torch.randn(w_shape, generator=gen, **bf16).mul_(self.K ** -0.5)
        self.a = torch.randn(self.E * rank, self.K, generator=gen, **bf16).mul_(self.K ** -0.5)
        self.b = torch.randn(self.N, rank * self.E, generator=gen, **bf16).mul_(rank ** -0.5)
        self.bias = torch.randn(self.E, self.N, generator=gen, **bf16) if has_bias else None
        self.set_tokens(tokens, gen)

    def set_tokens(self, tokens, gen):
        self.tokens = tokens
        rows = tokens * self.k if self.grouped_in else tokens
        self.x = torch.randn(rows, self.K, device="cuda", dtype=torch.bfloat16, generator=gen)
        self.sorted_expert, self.sorted_slot, self.offsets = random_routing(
            tokens, self.E, self.k, gen)


def composition_forward(p):
    """What a user writes today with torch._grouped_mm, index_select and index_copy."""
    x = p.x if p.grouped_in else p.x.index_select(0, p.sorted_slot // p.k)
    w_kn = p.w.transpose(1, 2) if p.layout == "out_in" else p.w  # [E, K, N] view, no copy
    a_kr = p.a.view(p.E, p.r, p.K).transpose(1, 2)  # [E, K, r] view
    # PEFT's rank-major B has no unit stride per expert: grouped_mm needs a copy, [E, r, N].
    b_rn = p.b.view(p.N, p.r, p.E).permute(2, 1, 0).contiguous()
    y = torch._grouped_mm(x, w_kn, offs=p.offsets)
    lora = torch._grouped_mm(torch._grouped_mm(x, a_kr, offs=p.offsets), b_rn, offs=p.offsets)
    y.add_(lora, alpha=LORA_SCALE)
    if p.bias is not None:
        y.add_(p.bias.index_select(0, p.sorted_expert))
    if p.grouped_out:
        return y
    return torch.empty_like(y).index_copy_(0, p.sorted_slot, y)


def reference_forward(p):
    """float32 einsum per expert straight from SPEC.md's formulas, in the same row order."""
    x_rows = p.x.float() if p.grouped_in else p.x.float()[p.sorted_slot // p.k]
    grouped = torch.empty(x_rows.shape[0], p.N, device="cuda", dtype=torch.float32)
    a = p.a.float().view(p.E, p.r, p.K)  # A_e[j, c] = A[(e*r + j)*K + c]
    b = p.b.float().view(p.N, p.r, p.E)  # B_e[o, j] = B[o*r*E + j*E + e]
    for e in p.sorted_expert.unique().tolist():
        rows = p.sorted_expert == e
        xe = x_rows[rows]
        w_spec = "mk,nk->mn" if p.layout == "out_in" else "mk,kn->mn"
        ye = torch.einsum(w_spec, xe, p.w[e].float())
        ye += LORA_SCALE * torch.einsum("mk,rk,nr->mn", xe, a[e], b[:, :, e])
        if p.bias is not None:
            ye += p.bias[e].float()
        grouped[rows] = ye
    if p.grouped_out:
        return grouped
    return torch.empty_like(grouped).index_copy_(0, p.sorted_slot, grouped)


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    stops = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, stop in zip(starts, stops):
        start.record()
        fn()
        stop.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, stops))


def dense_tflops(warmup, reps, gen):
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
    ms = median_ms(lambda: torch.mm(a, b), warmup, reps)
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def forward_flops(preset, proj, tokens, rank):
    _, top_k, k_in, n_out, *_ = projection_shape(preset, proj)
    return 2 * tokens * top_k * (k_in * n_out + k_in * rank + rank * n_out)


def measure_row(row, preset, proj, args, gen, tflops):
    flops = forward_flops(preset, proj, args.tokens, args.rank)
    row["roofline_f_ms"] = flops / (tflops * 1e12) * 1e3
    p = Problem(preset, proj, args.check_tokens, args.rank, gen)
    torch.backends.cuda.matmul.allow_tf32 = False  # a true float32 reference
    ref = reference_forward(p)
    got = composition_forward(p).float()
    row["check_rel_err"] = ((got - ref).norm() / ref.norm()).item()
    if not (row["check_rel_err"] <= CHECK_TOLERANCE):
        raise RuntimeError(f"composition differs from the float32 reference: relative error "
                           f"{row['check_rel_err']:.3g} > {CHECK_TOLERANCE}")
    del ref, got
    p.set_tokens(args.tokens, gen)
    row["composition_f_ms"] = median_ms(lambda: composition_forward(p), args.warmup, args.reps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--proj", choices=["gate_up", "down"], help="one projection (default both)")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--check-tokens", type=int, default=64, help="tokens of the float32 check")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    presets = [name for name in args.presets.split(",") if name]
    unknown = [name for name in presets if name not in PRESETS]
    if unknown:
        parser.error(f"--presets: unknown {unknown}; expected some of {list(PRESETS)}")
    if not torch.cuda.is_available():
        sys.exit("composition.py: torch sees no CUDA GPU")

    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    tflops = dense_tflops(args.warmup, args.reps, gen)
    device = torch.cuda.get_device_name()
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    print(f"dense bf16 mm 8192^3: {tflops:.0f} TFLOP/s", file=sys.stderr)
    failed = False
    for preset in presets:
        for proj in [args.proj] if args.proj else ["gate_up", "down"]:
            row = dict(device=device, date=date, shape=preset, proj=proj, tokens=args.tokens,
                       rank=args.rank, weights="bf16", composition_f_ms=None, roofline_f_ms=None,
                       dense_tflops=tflops, torch=torch.__version__)
            try:
                measure_row(row, preset, proj, args, gen, tflops)
            except (RuntimeError, torch.OutOfMemoryError) as error:  # e.g. grouped_mm alignment
                row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
                failed = True
            torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)
            print(f"{preset:<14} {proj:<8} composition {row['composition_f_ms'] or float('nan'):.3f}"
                  f" ms, roofline {row['roofline_f_ms'] or float('nan'):.3f} ms"
                  f"{'  ERROR: ' + row['error'] if 'error' in row else ''}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
