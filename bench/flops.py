"""Floating-point operation and byte counts of one MoE-LoRA projection, the numerators of the
rooflines.

With T tokens, k experts per token (T*k grouped rows), K input and N output features and LoRA
rank r, every grouped row runs these matrix products (a product of an m x n by an n x p matrix
counts 2mnp):

  forward   y  = x W + s (x A^T) B^T       2 T k (K N + K r + r N)
  dX        dx = dy W^T + s (dy B) A       2 T k (N K + N r + r K)
  dA        dA = s (dy B)^T X              2 T k r K      (dy B reused from dX)
  dB        dB = s dY^T (X A^T)            2 T k N r      (X A^T saved by the forward)

so forward + backward = 2 T k (2 K N + 3 K r + 3 N r). Elementwise work (scaling, bias, the sum of
the k slots of dX, dequantization of quantized weights) is not counted: the roofline is the time the
dense bf16 tensor-core rate needs for the products alone.

The memory floor is the other bound: the bytes the step's ops move at least, over the device's
copy rate (an empirical bound: a kernel that mostly reads may stream a little faster than a copy).
Each op (forward, dX, dA, dB, as moejit and the composition run them) reads its inputs once and
writes its outputs once, with E experts' weights (bf16 2 bytes a value; nf4 half a byte plus its
absmax, int8 one byte plus its row statistics), x of X rows (T for a gathered input, T k for a
grouped one) and dX of X rows too (the k slots summed):

  forward   x, W, A, B read; y written                          X K 2 + W + T k N 2
  dX        dy, W, A, B read; dX written                        T k N 2 + W + X K 2
  dA        x, dy B read; dA written                            X K 2 + ...
  dB        dy, x A^T read; dB written                          T k N 2 + ...

(... : the rank-sized terms, counted in step_bytes but small; the forward of a step also writes
x A^T for dB, and dX writes dy B for dA). Where the memory floor is above the FLOP roofline, DRAM,
not the tensor cores, bounds the projection.
"""


def forward_flops(tokens, top_k, k_in, n_out, rank):
    return 2 * tokens * top_k * (k_in * n_out + k_in * rank + rank * n_out)


def backward_flops(tokens, top_k, k_in, n_out, rank):
    rows = tokens * top_k
    dx = 2 * rows * (n_out * k_in + n_out * rank + rank * k_in)
    da = 2 * rows * rank * k_in
    db = 2 * rows * n_out * rank
    return dx + da + db


def forward_backward_flops(tokens, top_k, k_in, n_out, rank):
    return (forward_flops(tokens, top_k, k_in, n_out, rank)
            + backward_flops(tokens, top_k, k_in, n_out, rank))


def roofline_ms(flops, dense_tflops):
    """Milliseconds `flops` take at the measured dense rate; None without a rate."""
    return flops / (dense_tflops * 1e12) * 1e3 if dense_tflops else None


def weight_bytes(weights, experts, k_in, n_out):
    """Bytes of all experts' stored base weights with their statistics, at least, for the bench's
    formats: nf4 in blocks of 64 values with an fp32 absmax each; nf4-dq with a uint8 absmax per
    block and an fp32 one per 256 blocks; int8 with an fp32 statistic per stored row, whose length
    (K or N, by the layout) the rows do not record: the longer one gives the fewer statistics.
    None for a format it does not know."""
    values = experts * k_in * n_out
    if weights in ("bf16", "fp16"):
        return 2 * values
    if weights == "nf4":
        return values / 2 + values / 64 * 4
    if weights == "nf4-dq":
        return values / 2 + values / 64 + values / 64 / 256 * 4
    if weights == "int8":
        return values + experts * min(k_in, n_out) * 4
    return None


def step_bytes(tokens, top_k, k_in, n_out, rank, experts, weights, x_rows):
    """(forward bytes, forward + backward bytes) at least, with bf16 activations and LoRA factors
    and fp32 x A^T and dy B (as moejit's saved x A^T and workspace hold them); None for an unknown
    weight format."""
    w = weight_bytes(weights, experts, k_in, n_out)
    if w is None:
        return None
    rows = tokens * top_k
    a, b = experts * rank * k_in * 2, experts * rank * n_out * 2  # A or dA, B or dB
    x = dx = x_rows * k_in * 2
    y = dy = rows * n_out * 2
    xa = dyb = rows * rank * 4
    forward = x + w + a + b + y
    saving_forward = forward + xa
    grad_x = dy + w + a + b + dx + dyb  # dX also writes dy B for dA
    grad_a = x + dyb + a
    grad_b = dy + xa + b
    return forward, saving_forward + grad_x + grad_a + grad_b


def memory_floor_ms(nbytes, copy_tbps):
    """Milliseconds `nbytes` take at the measured copy rate (bytes read + written per second)."""
    return nbytes / (copy_tbps * 1e12) * 1e3 if copy_tbps else None
