"""Floating-point operation counts of one MoE-LoRA projection, the numerators of the rooflines.

With T tokens, k experts per token (T*k grouped rows), K input and N output features and LoRA rank r,
every grouped row runs these matrix products (a product of an m x n by an n x p matrix counts 2mnp):

  forward   y  = x W + s (x A^T) B^T       2 T k (K N + K r + r N)
  dX        dx = dy W^T + s (dy B) A       2 T k (N K + N r + r K)
  dA        dA = s (dy B)^T X              2 T k r K      (dy B reused from dX)
  dB        dB = s dY^T (X A^T)            2 T k N r      (X A^T saved by the forward)

so forward + backward = 2 T k (2 K N + 3 K r + 3 N r). Elementwise work (scaling, bias, the sum of
the k slots of dX, dequantization of quantized weights) is not counted: the roofline is the time the
dense bf16 tensor-core rate needs for the products alone.
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
