"""Floating-point operation and byte counts of one MoE-LoRA projection, the numerators of the
rooflines.

With T tokens, k experts per token (T*k grouped rows), K input and N output features and LoRA rank r,
every grouped row runs these matrix products (a product of an m x n by an n x p matrix counts 2mnp):

  forward   y  = x W + s (x A^T) B^T       2 T k (K N + K r + r N)
  dX        dx = dy W^T + s (dy B) A       2 T k (N K + N r + r K)
  dA        dA = s (dy B)^T X              2 T k r K      (dy B reused from dX)
  dB        dB = s dY^T (X A^T)            2 T k N r      (X A^T saved by the forward)

so forward + backward = 2 T k (2 K N + 3 K r + 3 N r). Elementwise work (scaling, bias, the sum of
the k slots of dX, dequantization of quantized weights) is not counted: the roofline is the time the
dense bf16 tensor-core rate needs for the products alone.

The memory floor is the other bound: the bytes the step's ops move at least, over the device's copy
rate. Each op (forward, dX, dA, dB, as moejit and the composition run them) reads its inputs once
and writes its outputs once, with E experts' weights (bf16 2 bytes a value; nf4 half a byte plus
its absmax, int8 one byte plus its row statistics), x of X rows (T for a gathered input, T k for a
grouped one) and dX of X rows too (the k slots summed):

  forward   x, W, A, B read; y written                          X K 2 + W + T k N 2
  dX        dy, W, A, B read; dX written                        T k N 2 + W + X K 2
  dA        x, dy B read; dA written                            X K 2 + ...
  dB        dy, x A^T read; dB written                          T k N 2 + ...

(... : the rank-sized terms, counted below but small). Where the memory floor is above the FLOP
roofline, DRAM, not the tensor cores, bounds the projection.
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


# Bytes a stored weight value takes, its per-block or per-row statistics included (bench formats:
# nf4 blocksize 64 with fp32 absmax; nf4-dq 8-bit absmax and an fp32 per 256 blocks; int8 an fp32
# per row, amortized over a row of at least 1,024 values in every preset).
WEIGHT_BYTES = {"bf16": 2.0, "fp16": 2.0, "nf4": 0.5 + 4 / 64, "nf4-dq": 0.5 + 1 / 64 + 4 / 64 / 256,
                "int8": 1.0 + 4 / 1024}


def step_bytes(tokens, top_k, k_in, n_out, rank, experts, weights, x_rows):
    """(forward bytes, forward + backward bytes) at least, with bf16 activations and LoRA factors."""
    rows = tokens * top_k
    w = experts * k_in * n_out * WEIGHT_BYTES[weights]
    lora = experts * rank * (k_in + n_out) * 2
    x, dx, y, dy = x_rows * k_in * 2, x_rows * k_in * 2, rows * n_out * 2, rows * n_out * 2
    xa = rows * rank * 2  # x A^T saved by the forward of a step, read by dB; dy B likewise
    forward = x + w + lora + y
    backward = (dy + w + lora + dx + xa) + (x + xa + lora) + (dy + xa + lora)
    return forward, forward + xa + backward


def memory_floor_ms(nbytes, copy_tbps):
    """Milliseconds `nbytes` take at the measured copy rate (bytes read + written per second)."""
    return nbytes / (copy_tbps * 1e12) * 1e3 if copy_tbps else None
