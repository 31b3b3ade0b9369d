"""The article's steps 3-5 as loops a student writes, compiled by Numba: for teaching and timing.

These build the (B, N, N) matrices, exactly like `minattn.steps`, whose functions
are their NumPy twins (called by their own names in the tests):

| kernel | NumPy twin in `minattn.steps` |
| --- | --- |
| ``energy_numba(q, k, scale)`` | ``energy_forward`` then ``scale_forward`` (= ``energy_blas``) |
| ``energy_backward_numba(dE, q, k, scale)`` | ``scale_backward`` then ``energy_backward`` |
| ``softmax_numba(E)`` | ``softmax_forward`` |
| ``softmax_backward_numba(dA, A)`` | ``softmax_backward`` |
| ``weighted_sum_numba(v, A)`` | ``weighted_sum_forward`` |
| ``weighted_sum_backward_numba(dout, v, A)`` | ``weighted_sum_backward`` |

They show how a loop becomes fast: the innermost loop runs along contiguous
memory, so LLVM turns it into SIMD instructions, and ``prange`` spreads rows
over the cores. Not for large N: the streaming kernels (`flash.py`) are.
Each one compiles on its first call (a second or two), only if you use it.
"""

import numpy as np
from numba import prange

from ..ops import steps
from .jit import kernel
from .simd import _exp_shifted, _row_max

CHUNK = 256  # columns per parallel task where rows cannot be the unit of work


def energy_python(query, key, scale):
    """The article's "covariance" as a student first writes it: pure Python, one pair at a time.

    query, key: (B, Ck, N) -> energy: (B, N, N), energy[b, i, j] = scale * q_i . k_j.
    About half a minute at N = 4096 here; use it on a few hundred pixels.
    """
    B, Ck, N = query.shape
    energy = np.zeros((B, N, N), dtype=query.dtype)
    for b in range(B):
        for i in range(N):
            for j in range(N):
                total = 0.0
                for c in range(Ck):
                    total += query[b, c, i] * key[b, c, j]
                energy[b, i, j] = scale * total
    return energy


@kernel(parallel=True)
def energy_numba(query, key, scale):
    """The same loops, compiled. query, key: (B, Ck, N) -> energy: (B, N, N).

    Two changes make it fast. The loops are reordered so the innermost one runs
    over j, along a row of ``key`` and a row of ``energy``: contiguous memory,
    so LLVM turns it into SIMD instructions (8 float32 per AVX2 instruction, 16 with AVX-512).
    And the rows (b, i) are shared out among the cores with ``prange``.
    """
    B, Ck, N = query.shape
    energy = np.empty((B, N, N), dtype=query.dtype)
    s = query.dtype.type(scale)
    for row in prange(B * N):
        b, i = row // N, row % N
        out = energy[b, i]
        out[:] = 0.0  # zeroed here, by the thread that fills the row, while it is in cache
        for c in range(Ck):
            q = s * query[b, c, i]
            k = key[b, c]
            for j in range(N):
                out[j] += q * k[j]
    return energy


def energy_blas(query, key, scale):
    """The same matrix as one batched matmul (BLAS): the numpy backend's steps 3 and 4.

    query, key: (B, Ck, N) -> (B, N, N); ``steps.energy_forward`` then ``steps.scale_forward``.
    """
    energy, _ = steps.energy_forward(query, key)
    return steps.scale_forward(energy, scale)[0]


@kernel(parallel=True)
def energy_backward_numba(denergy, query, key, scale):
    """denergy: (B, N, N) -> (dquery, dkey), each (B, Ck, N).

    dquery[b, c, i] = scale * sum_j key[b, c, j] denergy[b, i, j]   (a dot product along j)
    dkey[b, c, j]   = scale * sum_i query[b, c, i] denergy[b, i, j] (rows of denergy, added up)
    """
    B, Ck, N = query.shape
    s = query.dtype.type(scale)
    dquery = np.empty_like(query)
    dkey = np.zeros_like(key)
    for row in prange(B * N):
        b, i = row // N, row % N
        g = denergy[b, i]
        for c in range(Ck):
            k = key[b, c]
            total = query.dtype.type(0.0)
            for j in range(N):
                total += k[j] * g[j]
            dquery[b, c, i] = s * total
    # dkey sums over i, so a task owns a chunk of columns j instead of a row.
    chunks = -(-N // CHUNK)
    for task in prange(B * chunks):
        b, j0 = task // chunks, (task % chunks) * CHUNK
        j1 = min(j0 + CHUNK, N)
        for i in range(N):
            g = denergy[b, i]
            for c in range(Ck):
                q = s * query[b, c, i]
                dk = dkey[b, c]
                for j in range(j0, j1):
                    dk[j] += q * g[j]
    return dquery, dkey


@kernel(parallel=True)
def softmax_numba(energy):
    """Row softmax. energy: (B, N, N) -> attention: (B, N, N), each row sums to 1."""
    B, N, M = energy.shape
    attention = energy.copy()
    for row in prange(B * N):
        a = attention[row // N, row % N]
        _exp_shifted(a, _row_max(a, M), M)  # a <- exp(a - max), vectorised
        total = energy.dtype.type(0.0)
        for j in range(M):
            total += a[j]
        for j in range(M):
            a[j] /= total
    return attention


@kernel(parallel=True)
def softmax_backward_numba(dattention, attention):
    """dattention, attention: (B, N, N) -> denergy: (B, N, N); per row a * (da - sum(da * a))."""
    B, N, M = attention.shape
    denergy = np.empty_like(attention)
    for row in prange(B * N):
        b, i = row // N, row % N
        a, da, de = attention[b, i], dattention[b, i], denergy[b, i]
        total = attention.dtype.type(0.0)
        for j in range(M):
            total += da[j] * a[j]
        for j in range(M):
            de[j] = a[j] * (da[j] - total)
    return denergy


@kernel(parallel=True)
def weighted_sum_numba(value, attention):
    """value: (B, C, N), attention: (B, N, N) -> out: (B, C, N).

    out[b, :, i] = sum_j attention[b, i, j] value[b, :, j].
    """
    B, C, N = value.shape
    out = np.empty_like(value)
    for row in prange(B * N):
        b, i = row // N, row % N
        a = attention[b, i]
        for c in range(C):
            v = value[b, c]
            total = attention.dtype.type(0.0)
            for j in range(N):  # a dot product along contiguous j
                total += a[j] * v[j]
            out[b, c, i] = total
    return out


@kernel(parallel=True)
def weighted_sum_backward_numba(dout, value, attention):
    """dout: (B, C, N) -> (dvalue (B, C, N), dattention (B, N, N)).

    dattention[b, i, j] = sum_c dout[b, c, i] value[b, c, j]   (row i: rows of value, added up)
    dvalue[b, c, j]     = sum_i dout[b, c, i] attention[b, i, j]
    """
    B, C, N = value.shape
    dattention = np.zeros((B, N, N), dtype=value.dtype)
    for row in prange(B * N):
        b, i = row // N, row % N
        da = dattention[b, i]
        for c in range(C):
            g = dout[b, c, i]
            v = value[b, c]
            for j in range(N):
                da[j] += g * v[j]
    dvalue = np.zeros_like(value)
    chunks = -(-N // CHUNK)
    for task in prange(B * chunks):  # dvalue sums over i: a task owns a chunk of columns
        b, j0 = task // chunks, (task % chunks) * CHUNK
        j1 = min(j0 + CHUNK, N)
        for i in range(N):
            a = attention[b, i]
            for c in range(C):
                g = dout[b, c, i]
                dv = dvalue[b, c]
                for j in range(j0, j1):
                    dv[j] += g * a[j]
    return dvalue, dattention
