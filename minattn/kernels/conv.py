"""Step 1, the 1x1 convolutions, without BLAS: the numba backend's ``conv1x1_forward/backward``.

The 1x1 convolutions are matmuls, and NumPy would hand them to OpenBLAS. But
OpenBLAS's idle threads keep spinning for a while after each call, and the
attention kernels started right after them wait for a core: on 2 cores that made
the numba backend up to 2x slower (N = 4096). These versions run on the register-
blocked tile products of `tiles.py`, so the numba backend never wakes OpenBLAS's
threads (the attention's own BLAS calls run on one thread each, see `blas.py`).
NumPy twins: ``minattn.steps.conv1x1_forward`` and ``conv1x1_backward``.
"""

import numpy as np

from .jit import kernel, run_threads, workers_for
from .tiles import _matmul_acc, _matmul_nt_acc, blocks, pad4, unblock

PIXEL_BLOCK = 512  # pixels per tile of the 1x1 convolutions


def _pixel_tile(n):
    """Tile width for n pixels: PIXEL_BLOCK, or n rounded up to 16 if smaller (the tiles
    compute over their padding, and at ds = 8 an image may have only 64 pixels)."""
    return min(PIXEL_BLOCK, -(-n // 16) * 16)


@kernel
def _conv_tiles(a, x_b, bias, first, step, y_b):
    """y_b[b, t] = a @ x_b[b, t] + bias[:, None] for the tiles first, first + step, ...

    a: (P, R), multiples of 4; x_b: (B, nb, R, block) tiles; bias: (P,); y_b: (B, nb, P, block).
    """
    B, nb, _, block = x_b.shape
    for task in range(first, B * nb, step):
        b, t = task // nb, task % nb
        for o in range(a.shape[0]):
            y_b[b, t, o, :] = bias[o]
        _matmul_acc(a, x_b[b, t], y_b[b, t], block)


@kernel
def _conv_weight_grad(d_b, x_b, first, step, part):
    """part += sum over the tiles first, first + step, ... of d_b[b, t] @ x_b[b, t].T.

    d_b: (B, nb, P, block), x_b: (B, nb, R, block) -> part: (P, R). A long dot
    product along the pixels, so ``_matmul_nt_acc``.
    """
    B, nb, P, block = d_b.shape
    for task in range(first, B * nb, step):
        b, t = task // nb, task % nb
        _matmul_nt_acc(d_b[b, t], x_b[b, t], part, block)


def _tiles(a, x_b, bias, work):
    y_b = np.empty((x_b.shape[0], x_b.shape[1], a.shape[0], x_b.shape[3]), dtype=x_b.dtype)
    workers = min(workers_for(work), x_b.shape[0] * x_b.shape[1])
    run_threads(lambda w: _conv_tiles(a, x_b, bias, w, workers, y_b), workers)
    return y_b


def conv1x1_forward_numba(x, weight, bias):
    """Step 1 on the tile kernels: out[b, o] = bias[o] + sum_i weight[o, i, 0, 0] x[b, i].

    x: (B, C_in, h, w); weight: (C_out, C_in, 1, 1); bias: (C_out,)
    -> (out (B, C_out, h, w), cache). A drop-in for ``steps.conv1x1_forward``.
    """
    B, C_in, h, w = x.shape
    C_out = weight.shape[0]
    x_b = blocks(x.reshape(B, C_in, h * w), _pixel_tile(h * w))
    y_b = _tiles(pad4(weight[:, :, 0, 0]), x_b, pad4(bias[None, :])[0], x.size * C_out)
    return unblock(y_b, C_out, h * w).reshape(B, C_out, h, w), (x, weight)


def conv1x1_backward_numba(dout, cache):
    """dout: (B, C_out, h, w) -> (dx (B, C_in, h, w), dweight (C_out, C_in, 1, 1), dbias (C_out,)).

    dx = weight^T dout at every pixel; dweight = sum over batch and pixels of
    dout x^T. Each thread sums its tiles' dweight into its own (C_out, C_in) part
    (no race; the parts are added in a fixed order). NumPy twin: ``steps.conv1x1_backward``.
    """
    x, weight = cache
    B, C_in, h, w = x.shape
    C_out = weight.shape[0]
    d_b = blocks(dout.reshape(B, C_out, h * w), _pixel_tile(h * w))
    x_b = blocks(x.reshape(B, C_in, h * w), _pixel_tile(h * w))
    w_t = np.ascontiguousarray(pad4(weight[:, :, 0, 0]).T)
    dx_b = _tiles(w_t, d_b, np.zeros(w_t.shape[0], dtype=x.dtype), x.size * C_out)
    workers = min(workers_for(x.size * C_out), B * d_b.shape[1])
    parts = np.zeros((workers, d_b.shape[2], x_b.shape[2]), dtype=x.dtype)
    run_threads(lambda t: _conv_weight_grad(d_b, x_b, t, workers, parts[t]), workers)
    dweight = parts.sum(axis=0)
    dx = unblock(dx_b, C_in, h * w).reshape(x.shape)
    return dx, dweight[:C_out, :C_in, None, None].copy(), dout.sum(axis=(0, 2, 3))
