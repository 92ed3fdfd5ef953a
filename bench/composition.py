#!/usr/bin/env python3
"""The MoE-LoRA step a user composes today from torch._grouped_mm, timed on moejit_bench's shapes.

For each row (preset x projection x tokens x base weights): uniform random top-k routing sorted by
expert (the rule of bench/inputs.cpp), then gather -> grouped base GEMM -> two grouped LoRA GEMMs ->
add (+ bias) -> scatter. The forward is timed without autograd; the forward + backward with autograd
(x, A and B require grad, W and the bias are frozen) as y.backward(g) for a fixed random g. With
--weights nf4 (QLoRA) every step first dequantizes all experts' NF4 weights to bf16 with vectorized
torch operations (SPEC.md's formula; blocksize 64), as a QLoRA composition without a fused kernel
does. Before timing, y and the gradients are checked against a float32 autograd reference on a few
tokens, and the dequantization against SPEC.md's formula on sampled values. Also measures the dense
bf16 matmul rate and the device copy rate once; each row's rooflines come from the first, its memory
floors (bench/report.py) from the second (bench/flops.py).
Prints one JSON object per row on stdout and a short line per row on stderr.
"""
import argparse
import datetime
import json
import statistics
import sys

import torch

from flops import forward_backward_flops, forward_flops, roofline_ms

# name: (experts, top_k, hidden, intermediate, layout, bias); the same table as runtime/presets.cpp.
PRESETS = {
    "qwen3-30b-a3b": (128, 8, 2048, 768, "out_in", False),
    "olmoe-1b-7b": (64, 8, 2048, 1024, "out_in", False),
    "mixtral-8x7b": (8, 2, 4096, 14336, "out_in", False),
    "gpt-oss-20b": (32, 4, 2880, 2880, "in_out", True),
}
WEIGHTS = ("bf16", "nf4")
LORA_SCALE = 2.0  # lora_alpha = 2r, as moejit_bench uses
NF4_BLOCKSIZE = 64
NF4_CODE = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
            0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
            0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)
# Relative Frobenius error of the bf16 composition against float32: y, then dX, dA, dB (each
# gradient goes through two or three bf16-rounded products, hence the wider bound).
FORWARD_TOLERANCE = 1e-2
GRADIENT_TOLERANCE = 2e-2
GIB = 2.0 ** 30


class CheckError(RuntimeError):
    pass


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


class Nf4Weights:
    """All experts' W as quantize_4bit stores it (SPEC.md "Base weights"): random packed bytes
    (every byte is two valid nibbles), positive absmax ~ 1/sqrt(K), the NF4 code."""

    def __init__(self, shape, k_in, gen):
        self.shape = shape
        values = shape[0] * shape[1] * shape[2]
        if values % NF4_BLOCKSIZE:
            raise CheckError(f"{values} weights are not whole blocks of {NF4_BLOCKSIZE}")
        self.packed = torch.randint(0, 256, (values // 2,), device="cuda", dtype=torch.uint8,
                                    generator=gen)
        self.absmax = (torch.rand(values // NF4_BLOCKSIZE, device="cuda", generator=gen)
                       .add_(0.5).mul_(k_in ** -0.5))
        self.code = torch.tensor(NF4_CODE, device="cuda", dtype=torch.float32)
        # byte -> (code[high nibble], code[low nibble]): one gather per byte decodes both values.
        nibbles = torch.arange(256, device="cuda")
        self.pairs = torch.stack([self.code[nibbles >> 4], self.code[nibbles & 15]], dim=1)

    def dequantize(self):
        """w = code[nibble] * absmax[flat / 64] in fp32, rounded once to bf16; value 2j is the high
        nibble of byte j. Memory-bound torch kernels: gather, scale, cast."""
        values = self.pairs.index_select(0, self.packed.int())  # [n/2, 2] fp32
        values = values.view(-1, NF4_BLOCKSIZE).mul_(self.absmax.view(-1, 1))
        return values.to(torch.bfloat16).view(self.shape)

    def check(self, gen, samples=4096):
        """The dequantized values at sampled flat indices against SPEC.md's formula, bit for bit."""
        w = self.dequantize().view(-1)
        flat = torch.randint(0, w.numel(), (samples,), device="cuda", generator=gen)
        byte = self.packed[flat // 2].int()
        nibble = torch.where(flat % 2 == 0, byte >> 4, byte & 15)
        expected = (self.code[nibble] * self.absmax[flat // NF4_BLOCKSIZE]).to(torch.bfloat16)
        if not torch.equal(w[flat], expected):
            raise CheckError("the torch NF4 dequantization differs from SPEC.md's formula")


class Problem:
    """Stored tensors in the layouts SPEC.md names: W out_in [E,N,K] or in_out [E,K,N] (bf16, or
    NF4 dequantized each step), A [E*r, K], B PEFT [N, r*E], bias [E, N]; x, A and B are the
    leaves autograd differentiates."""

    def __init__(self, preset, proj, rank, weights, gen):
        (self.E, self.k, self.K, self.N, self.layout, has_bias, self.grouped_in,
         self.grouped_out) = projection_shape(preset, proj)
        self.r = rank
        bf16 = dict(device="cuda", dtype=torch.bfloat16)
        w_shape = (self.E, self.N, self.K) if self.layout == "out_in" else (self.E, self.K, self.N)
        if weights == "nf4":
            self.nf4 = Nf4Weights(w_shape, self.K, gen)
            self.nf4.check(gen)
        else:
            self.nf4 = None
            self.w = torch.randn(w_shape, generator=gen, **bf16).mul_(self.K ** -0.5)
        self.a = torch.randn(self.E * rank, self.K, generator=gen, **bf16).mul_(self.K ** -0.5)
        self.b = torch.randn(self.N, rank * self.E, generator=gen, **bf16).mul_(rank ** -0.5)
        self.a.requires_grad_()
        self.b.requires_grad_()
        self.bias = torch.randn(self.E, self.N, generator=gen, **bf16) if has_bias else None

    def weight(self):
        """W in bf16: stored, or dequantized now (the QLoRA step's first kernel)."""
        return self.nf4.dequantize() if self.nf4 else self.w

    def dequantized_bytes(self):
        return self.E * self.K * self.N * 2 if self.nf4 else 0

    def set_tokens(self, tokens, gen):
        self.tokens = tokens
        rows = tokens * self.k if self.grouped_in else tokens
        self.x = torch.randn(rows, self.K, device="cuda", dtype=torch.bfloat16, generator=gen)
        self.x.requires_grad_()
        self.g = torch.randn(tokens * self.k, self.N, device="cuda", dtype=torch.bfloat16,
                             generator=gen)
        self.sorted_expert, self.sorted_slot, self.offsets = random_routing(
            tokens, self.E, self.k, gen)

    def clear_grads(self):
        self.x.grad = self.a.grad = self.b.grad = None


def composition_forward(p, w, x, a, b):
    """What a user writes today with torch._grouped_mm, index_select and index_copy."""
    x = x if p.grouped_in else x.index_select(0, p.sorted_slot // p.k)
    w_kn = w.transpose(1, 2) if p.layout == "out_in" else w  # [E, K, N] view, no copy
    a_kr = a.view(p.E, p.r, p.K).transpose(1, 2)  # [E, K, r] view
    # PEFT's rank-major B has no unit stride per expert: grouped_mm needs a copy, [E, r, N].
    b_rn = b.view(p.N, p.r, p.E).permute(2, 1, 0).contiguous()
    y = torch._grouped_mm(x, w_kn, offs=p.offsets)
    lora = torch._grouped_mm(torch._grouped_mm(x, a_kr, offs=p.offsets), b_rn, offs=p.offsets)
    # In place is fine under autograd: grouped_mm's backward needs its inputs, not its output.
    y.add_(lora, alpha=LORA_SCALE)
    if p.bias is not None:
        y.add_(p.bias.index_select(0, p.sorted_expert))
    if p.grouped_out:
        return y
    return torch.empty_like(y).index_copy_(0, p.sorted_slot, y)  # every slot is written once


def reference_forward(p, w, x, a, b):
    """float32 einsum per expert straight from SPEC.md's formulas, in the same row order."""
    x_rows = x if p.grouped_in else x[p.sorted_slot // p.k]
    grouped = torch.zeros(x_rows.shape[0], p.N, device="cuda", dtype=torch.float32)
    a = a.view(p.E, p.r, p.K)  # A_e[j, c] = A[(e*r + j)*K + c]
    b = b.view(p.N, p.r, p.E)  # B_e[o, j] = B[o*r*E + j*E + e]
    w_spec = "mk,nk->mn" if p.layout == "out_in" else "mk,kn->mn"
    for e in p.sorted_expert.unique().tolist():
        rows = p.sorted_expert == e
        xe = x_rows[rows]
        ye = torch.einsum(w_spec, xe, w[e])
        ye = ye + LORA_SCALE * torch.einsum("mk,rk,nr->mn", xe, a[e], b[:, :, e])
        if p.bias is not None:
            ye = ye + p.bias[e].float()
        grouped = grouped.index_put((rows.nonzero().squeeze(1),), ye)
    if p.grouped_out:
        return grouped
    return torch.zeros_like(grouped).index_copy(0, p.sorted_slot, grouped)


def relative_error(got, ref):
    return ((got.float() - ref).norm() / ref.norm()).item()


def check(p):
    """y, dX, dA and dB of the composition against float32 autograd on the same stored values."""
    w = p.weight()
    p.clear_grads()
    y = composition_forward(p, w, p.x, p.a, p.b)
    y.backward(p.g)
    leaves = [t.detach().float().requires_grad_() for t in (p.x, p.a, p.b)]
    ref = reference_forward(p, w.float(), *leaves)
    ref.backward(p.g.float())
    errors = {"y": relative_error(y.detach(), ref.detach())}
    for name, got, leaf in zip(("dx", "da", "db"), (p.x.grad, p.a.grad, p.b.grad), leaves):
        errors[name] = relative_error(got, leaf.grad)
    p.clear_grads()
    bad = {name: err for name, err in errors.items()
           if not err <= (FORWARD_TOLERANCE if name == "y" else GRADIENT_TOLERANCE)}
    if bad:
        raise CheckError(f"composition differs from the float32 reference: relative errors {bad}")
    return max(errors.values())


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


def copy_tbps(warmup, reps):
    """The device's copy rate: bytes read plus bytes written per second by a 1 GiB tensor copy."""
    src = torch.empty(int(GIB), device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), warmup, reps)
    del src, dst
    torch.cuda.empty_cache()  # the rows' allocations start from what they had before
    return 2 * GIB / (ms * 1e-3) / 1e12


def forward_step(p):
    with torch.no_grad():
        return composition_forward(p, p.weight(), p.x, p.a, p.b)


def forward_backward_step(p):
    p.clear_grads()
    composition_forward(p, p.weight(), p.x, p.a, p.b).backward(p.g)


def measured_extra_bytes(p):
    """Peak allocation of one forward + backward beyond what was allocated before it and the
    outputs it leaves or returns (y, dX, dA, dB): the step's scratch and autograd's saved tensors."""
    p.clear_grads()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    forward_backward_step(p)
    torch.cuda.synchronize()
    outputs = p.g.nbytes + sum(t.grad.nbytes for t in (p.x, p.a, p.b))
    return torch.cuda.max_memory_allocated() - before - outputs


def measure_row(row, p, args, gen):
    row["check_max_rel_err"] = check(p)
    p.set_tokens(row["tokens"], gen)
    row["composition_f_ms"] = median_ms(lambda: forward_step(p), args.warmup, args.reps)
    row["composition_fb_ms"] = median_ms(lambda: forward_backward_step(p), args.warmup, args.reps)
    row["composition_measured_extra_gib"] = measured_extra_bytes(p) / GIB
    if p.nf4:
        row["composition_peak_extra_gib"] = p.dequantized_bytes() / GIB


def row_list(args, parser):
    presets = [name for name in args.presets.split(",") if name]
    weights = [name for name in args.weights.split(",") if name]
    sweep = [int(t) for t in args.tokens_sweep.split(",") if t]
    sweep_weights = [name for name in args.sweep_weights.split(",") if name]
    for names, known, flag in ((presets + [args.sweep_preset], PRESETS, "--presets"),
                               (weights, WEIGHTS, "--weights"),
                               (sweep_weights, WEIGHTS, "--sweep-weights")):
        unknown = [name for name in names if name not in known]
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; expected some of {list(known)}")
    projs = [args.proj] if args.proj else ["gate_up", "down"]
    rows = [] if args.sweep_only else [
        (preset, proj, args.tokens, w) for preset in presets for proj in projs for w in weights]
    rows += [(args.sweep_preset, proj, t, w) for proj in projs for w in sweep_weights
             for t in sweep]
    return list(dict.fromkeys(rows))  # each once, in order


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--proj", choices=["gate_up", "down"], help="one projection (default both)")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--weights", default="bf16", help="comma-separated: bf16,nf4")
    parser.add_argument("--tokens-sweep", default="", help="also --sweep-preset at these T")
    parser.add_argument("--sweep-preset", default="qwen3-30b-a3b")
    parser.add_argument("--sweep-weights", default="bf16", help="comma-separated: bf16,nf4")
    parser.add_argument("--sweep-only", action="store_true", help="only the --tokens-sweep rows")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--check-tokens", type=int, default=64, help="tokens of the float32 check")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return args, row_list(args, parser)


def print_human_line(row):
    def ms(field):
        return "-" if row.get(field) is None else f"{row[field]:.3f}"
    print(f"{row['shape']:<14} {row['proj']:<8} {row['weights']:<5} T={row['tokens']}: composition"
          f" f {ms('composition_f_ms')} ms, f+b {ms('composition_fb_ms')} ms; roofline f "
          f"{ms('roofline_f_ms')} ms, f+b {ms('roofline_fb_ms')} ms"
          f"{'  ERROR: ' + row['error'] if 'error' in row else ''}", file=sys.stderr)


def main():
    args, rows = parse_args()
    if not torch.cuda.is_available():
        sys.exit("composition.py: torch sees no CUDA GPU")
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    tflops = dense_tflops(args.warmup, args.reps, gen)
    copy_rate = copy_tbps(args.warmup, args.reps)
    device = torch.cuda.get_device_name()
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    print(f"dense bf16 mm 8192^3: {tflops:.0f} TFLOP/s; device copy {copy_rate:.2f} TB/s",
          file=sys.stderr)
    torch.backends.cuda.matmul.allow_tf32 = False  # a true float32 reference
    failed = False
    for preset, proj, tokens, weights in rows:
        experts, top_k, k_in, n_out, *_ = projection_shape(preset, proj)
        shape = (tokens, top_k, k_in, n_out, args.rank)
        row = dict(device=device, date=date, shape=preset, proj=proj, tokens=tokens,
                   rank=args.rank, weights=weights, experts=experts, top_k=top_k,
                   in_features=k_in, out_features=n_out, composition_f_ms=None,
                   composition_fb_ms=None, composition_peak_extra_gib=None,
                   roofline_f_ms=roofline_ms(forward_flops(*shape), tflops),
                   roofline_fb_ms=roofline_ms(forward_backward_flops(*shape), tflops),
                   dense_tflops=tflops, copy_tbps=copy_rate, torch=torch.__version__)
        try:
            p = Problem(preset, proj, args.rank, weights, gen)
            p.set_tokens(args.check_tokens, gen)
            measure_row(row, p, args, gen)
        except (RuntimeError, torch.OutOfMemoryError) as error:  # e.g. grouped_mm alignment
            row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
            failed = True
        p = None
        torch.cuda.empty_cache()
        print(json.dumps(row), flush=True)
        print_human_line(row)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
