"""Small matrix products on tiles, and the tiling itself: the arithmetic of every fast kernel.

Two products cover everything the streaming attention and the 1x1 convolutions do:

- ``_matmul_acc(a, x, y, n)``: y += a @ x, summing over a short axis (channels);
  the loop over the long contiguous axis j is innermost and becomes SIMD.
- ``_matmul_nt_acc(x, z, y, n)``: y += x @ z.T, summing over the long contiguous
  axis j (pixels): dot products whose SIMD partial sums stay in registers.

Both are *register blocked*: each loaded vector feeds several products before it
is dropped, as in every BLAS kernel. The block must fit the CPU's vector
registers, 16 with AVX2 and 32 with AVX-512, so its width follows ``jit.WIDE``.
NumPy twins: ``a @ x`` and ``x @ z.T``.
"""

import numpy as np

from .jit import WIDE, kernel

ROWS = 4  # rows of every register block; tiles are padded to a multiple of 4
# Columns of _matmul_nt_acc's block: 4 x 4 = 16 partial sums plus 8 loaded vectors fit
# AVX-512's 32 registers; with AVX2's 16 they spill, and 4 x 2 (8 sums, 6 loads) is
# 1.6x faster (measured on this project's Zen 3 machine, float32 and float64).
NT_COLS = 4 if WIDE else 2


@kernel
def _matmul_acc(a, x, y, n):
    """y[:, :n] += a @ x[:, :n].  a: (M, K), x: (K, >= n), y: (M, >= n); M, K multiples of 4.

    The loop a student writes is ``for m, k, j: y[m, j] += a[m, k] * x[k, j]``
    with j innermost (contiguous, so it becomes SIMD). That loop loads and stores
    y once per multiply-add. Taking 4 rows of y and 4 rows of x at a time, each
    loaded vector of x feeds 4 rows and each loaded y gets 4 products, a 4x4
    register block. (With AVX2 the 16 coefficients a[m:m+4, k:k+4] no longer all
    fit in registers next to the vectors; some are re-read from the stack, which
    costs less than the extra loads and stores of y that a 2x4 block would cost:
    measured, 4x4 stays the fastest there too.)
    """
    M, K = a.shape
    for m in range(0, M, ROWS):
        y0, y1, y2, y3 = y[m], y[m + 1], y[m + 2], y[m + 3]
        for k in range(0, K, ROWS):
            x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
            a00, a01, a02, a03 = a[m, k], a[m, k + 1], a[m, k + 2], a[m, k + 3]
            a10, a11, a12, a13 = a[m + 1, k], a[m + 1, k + 1], a[m + 1, k + 2], a[m + 1, k + 3]
            a20, a21, a22, a23 = a[m + 2, k], a[m + 2, k + 1], a[m + 2, k + 2], a[m + 2, k + 3]
            a30, a31, a32, a33 = a[m + 3, k], a[m + 3, k + 1], a[m + 3, k + 2], a[m + 3, k + 3]
            for j in range(n):
                v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
                y0[j] += a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                y1[j] += a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                y2[j] += a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                y3[j] += a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3


@kernel
def _matmul_nt_acc(x, z, y, n):
    """y += x[:, :n] @ z[:, :n].T.  x: (M, >= n), z: (P, >= n), y: (M, P); M, P multiples of 4.

    The sum runs along the contiguous axis j (a dot product), so the SIMD loop
    keeps one vector of partial sums per output in registers, and adds each one
    up across lanes once, at the end. The block is 4 rows of x times NT_COLS rows
    of z: 4 x 2 (8 sums + 6 loaded vectors) for AVX2's 16 registers; with
    AVX-512 (NT_COLS = 4) the second pair of z rows joins the same loop, 4 x 4.
    ``NT_COLS`` is a constant to the compiler, so the branch costs nothing.
    """
    M, P = y.shape
    T = y.dtype.type
    for m in range(0, M, ROWS):
        x0, x1, x2, x3 = x[m], x[m + 1], x[m + 2], x[m + 3]
        for p in range(0, P, NT_COLS):
            z0, z1 = z[p], z[p + 1]
            z2, z3 = z[p + NT_COLS - 2], z[p + NT_COLS - 1]  # z0, z1 again if NT_COLS == 2
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = T(0.0)
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = T(0.0)
            for j in range(n):
                u0, u1, u2, u3 = x0[j], x1[j], x2[j], x3[j]
                w0, w1 = z0[j], z1[j]
                s00 += u0 * w0
                s01 += u0 * w1
                s10 += u1 * w0
                s11 += u1 * w1
                s20 += u2 * w0
                s21 += u2 * w1
                s30 += u3 * w0
                s31 += u3 * w1
                if NT_COLS == 4:
                    w2, w3 = z2[j], z3[j]
                    s02 += u0 * w2
                    s03 += u0 * w3
                    s12 += u1 * w2
                    s13 += u1 * w3
                    s22 += u2 * w2
                    s23 += u2 * w3
                    s32 += u3 * w2
                    s33 += u3 * w3
            y[m, p] += s00
            y[m, p + 1] += s01
            y[m + 1, p] += s10
            y[m + 1, p + 1] += s11
            y[m + 2, p] += s20
            y[m + 2, p + 1] += s21
            y[m + 3, p] += s30
            y[m + 3, p + 1] += s31
            if NT_COLS == 4:
                y[m, p + 2] += s02
                y[m, p + 3] += s03
                y[m + 1, p + 2] += s12
                y[m + 1, p + 3] += s13
                y[m + 2, p + 2] += s22
                y[m + 2, p + 3] += s23
                y[m + 3, p + 2] += s32
                y[m + 3, p + 3] += s33


def blocks(x, block, rows=ROWS):
    """(B, R, N) -> (B, ceil(N / block), R', block): zero-padded tiles, R' = R rounded up to rows.

    Every tile is then one C-contiguous array, so the kernels' inner loops run
    over contiguous memory. Padding is zeros: padded channels add nothing to any
    dot product, padded queries are dropped, padded keys are never read.
    """
    B, R, N = x.shape
    nb = -(-N // block)
    padded = np.zeros((B, -(-R // rows) * rows, nb * block), dtype=x.dtype)
    padded[:, :R, :N] = x
    return np.ascontiguousarray(padded.reshape(B, -1, nb, block).transpose(0, 2, 1, 3))


def unblock(x_b, R, N):
    """(B, nb, R', block) -> (B, R, N): the inverse of ``blocks``."""
    B, nb, Rp, block = x_b.shape
    return np.ascontiguousarray(x_b.transpose(0, 2, 1, 3).reshape(B, Rp, nb * block)[:, :R, :N])


def pad4(a):
    """A 2-D array zero-padded to multiples of 4 in both dimensions, C-contiguous."""
    out = np.zeros((-(-a.shape[0] // ROWS) * ROWS, -(-a.shape[1] // ROWS) * ROWS), a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out
