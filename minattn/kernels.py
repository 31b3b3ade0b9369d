"""Numba kernels for the attention steps, and a streaming attention that never holds N x N.

This is the only module of minattn that imports Numba; ``BAM(backend="numba")``
imports it lazily. Every kernel has a plain NumPy twin below it (``*_numpy``),
and the tests check each kernel against its twin and against :mod:`minattn.steps`.

Shapes: B batch, Ck query/key channels, C value channels, N pixels.
query, key: (B, Ck, N); value: (B, C, N); energy and attention: (B, N, N).

Two families live here:

1. The article's steps as loops (``energy_numba``, ``softmax_numba``,
   ``weighted_sum_numba`` and their backward passes). They build the N x N
   matrices, exactly like :mod:`minattn.steps`, and show how a loop a student
   would write becomes fast: the innermost loop runs along contiguous memory so
   LLVM turns it into SIMD instructions, and ``prange`` spreads rows over cores.

2. The streaming attention (``attention_forward`` / ``attention_backward``),
   FlashAttention's algorithm on the CPU. Queries are cut into blocks of
   ``QUERY_BLOCK`` pixels and keys into blocks of ``KEY_BLOCK`` pixels. For one
   query block we walk over the key blocks keeping, per query, the running max
   ``m`` and the running sum ``l`` of exp(score - m) (the *online softmax*), and
   rescale the partial output whenever ``m`` grows. Only the per-query
   log-sum-exp ``lse = m + log(l)`` is kept; the backward pass recomputes each
   probability block from it as exp(score - lse). Memory is O(N * C).

See docs/kernels.md for the derivation, the tile sizes and the measured speed.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

# Every fast-math flag except "nnan" and "ninf": reassociation lets LLVM keep several
# SIMD partial sums in a reduction, "contract" fuses a * b + c into one FMA. Without
# nnan/ninf, -inf (the running max before the first key) and NaN keep their meaning.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

QUERY_BLOCK = 64  # queries per task: a task's tiles (bq x KEY_BLOCK) stay in L2 (1 MiB)
KEY_BLOCK = 512  # keys per tile: long inner loops amortise each SIMD reduction
ROWS = 4  # register blocking: each loaded vector feeds 4 rows (see _matmul_acc)


# ---------------------------------------------------------------- exp, vectorisable


if numba.config.DISABLE_JIT:

    def _pow2(k):
        """2 ** k for a float k holding an integer (pure-Python stand-in for the intrinsic)."""
        return np.ldexp(type(k)(1), int(k))

else:

    @intrinsic
    def _pow2(typingctx, k):
        """2 ** k for a float k holding an integer in [-126, 127] (float32) or [-1022, 1023].

        Built directly from the bits: the integer k + bias, shifted into the exponent
        field, *is* the float 2 ** k. Integer add, shift and a bitcast vectorise; a
        call to ``ldexp`` or ``2.0 ** k`` would not.
        """
        if not isinstance(k, types.Float):
            return None
        width = k.bitwidth
        mantissa_bits, bias = (23, 127) if width == 32 else (52, 1023)

        def codegen(context, builder, signature, args):
            int_type = ir.IntType(width)
            n = builder.fptosi(args[0], int_type)
            bits = builder.shl(builder.add(n, int_type(bias)), int_type(mantissa_bits))
            return builder.bitcast(bits, args[0].type)

        return k(k), codegen


@njit(cache=True, fastmath=FASTMATH)
def _exp_shifted(row, shift, n):
    """row[:n] <- exp(row[:n] - shift), returns the sum. row: (>= n,); needs row <= shift.

    Numba's ``math.exp`` is a scalar libm call (no SVML in the llvmlite wheels),
    so exp would dominate. Instead: exp(x) = 2**k * exp(r) with k = round(x / ln 2)
    and |r| <= ln(2) / 2, exp(r) by its Taylor polynomial to degree 11 (error
    below 1e-14 relative, so float32 and float64 both get full precision), and
    2**k from the exponent bits. Every operation has a SIMD instruction.
    """
    T = row.dtype.type
    lowest = T(-87.0) if row.itemsize == 4 else T(-708.0)  # exp(lowest) is still normal
    log2e = T(1.4426950408889634)
    ln2 = T(0.6931471805599453)
    total = T(0.0)
    for j in range(n):
        x = row[j] - shift
        x = x if x > lowest else lowest  # also turns -inf into a tiny finite weight
        k = math.floor(x * log2e + T(0.5))
        r = x - k * ln2
        # Horner's rule for sum_{i <= 11} r**i / i!
        p = T(1.0 / 39916800.0)
        p = p * r + T(1.0 / 3628800.0)
        p = p * r + T(1.0 / 362880.0)
        p = p * r + T(1.0 / 40320.0)
        p = p * r + T(1.0 / 5040.0)
        p = p * r + T(1.0 / 720.0)
        p = p * r + T(1.0 / 120.0)
        p = p * r + T(1.0 / 24.0)
        p = p * r + T(1.0 / 6.0)
        p = p * r + T(0.5)
        p = p * r + T(1.0)
        p = p * r + T(1.0)
        e = p * _pow2(k)
        row[j] = e
        total += e
    return total


def exp_numpy(x):
    """NumPy twin of the polynomial exp: plain ``np.exp``."""
    return np.exp(x)


@njit(cache=True, fastmath=FASTMATH)
def exp_numba(x):
    """Elementwise exp(x) for x <= 0 through ``_exp_shifted``. x: any shape, float32/64."""
    out = x.copy().reshape(-1)
    _exp_shifted(out, x.dtype.type(0.0), out.size)
    return out.reshape(x.shape)


# ---------------------------------------------------------------- small matmuls on tiles


@njit(cache=True, fastmath=FASTMATH)
def _matmul_acc(a, x, y, n):
    """y[:, :n] += a @ x[:, :n].  a: (M, K), x: (K, >= n), y: (M, >= n); M, K multiples of 4.

    The loop a student writes is ``for m, k, j: y[m, j] += a[m, k] * x[k, j]``
    with j innermost (contiguous, so it becomes SIMD). That loop loads and stores
    y once per multiply-add. Taking 4 rows of y and 4 rows of x at a time, each
    loaded vector of x feeds 4 rows and each loaded y gets 4 products, a 4x4
    register block as in every BLAS kernel.
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


@njit(cache=True, fastmath=FASTMATH)
def _matmul_nt_acc(x, z, y, n):
    """y += x[:, :n] @ z[:, :n].T.  x: (M, >= n), z: (P, >= n), y: (M, P); M, P multiples of 4.

    Here the sum runs along the contiguous axis j (a dot product), so the SIMD
    loop keeps 16 vector partial sums (4 rows of x times 4 rows of z) in
    registers and adds each one up across lanes once, at the end.
    """
    M, P = y.shape
    T = y.dtype.type
    for m in range(0, M, ROWS):
        x0, x1, x2, x3 = x[m], x[m + 1], x[m + 2], x[m + 3]
        for p in range(0, P, ROWS):
            z0, z1, z2, z3 = z[p], z[p + 1], z[p + 2], z[p + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = T(0.0)
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = T(0.0)
            for j in range(n):
                u0, u1, u2, u3 = x0[j], x1[j], x2[j], x3[j]
                w0, w1, w2, w3 = z0[j], z1[j], z2[j], z3[j]
                s00 += u0 * w0
                s01 += u0 * w1
                s02 += u0 * w2
                s03 += u0 * w3
                s10 += u1 * w0
                s11 += u1 * w1
                s12 += u1 * w2
                s13 += u1 * w3
                s20 += u2 * w0
                s21 += u2 * w1
                s22 += u2 * w2
                s23 += u2 * w3
                s30 += u3 * w0
                s31 += u3 * w1
                s32 += u3 * w2
                s33 += u3 * w3
            y[m, p] += s00
            y[m, p + 1] += s01
            y[m, p + 2] += s02
            y[m, p + 3] += s03
            y[m + 1, p] += s10
            y[m + 1, p + 1] += s11
            y[m + 1, p + 2] += s12
            y[m + 1, p + 3] += s13
            y[m + 2, p] += s20
            y[m + 2, p + 1] += s21
            y[m + 2, p + 2] += s22
            y[m + 2, p + 3] += s23
            y[m + 3, p] += s30
            y[m + 3, p + 1] += s31
            y[m + 3, p + 2] += s32
            y[m + 3, p + 3] += s33


# ---------------------------------------------------------------- streaming attention


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _flash_forward(q_t, k_b, v_b, n_keys):
    """The fused forward pass over tiles.

    q_t: (B, nqb, bq, ck) scaled query blocks, transposed; k_b: (B, nkb, ck, bk) and
    v_b: (B, nkb, c, bk) key/value blocks; n_keys: the true N (the last key block
    may be partly padding, never read). -> out_t (B, nqb, bq, c), lse (B, nqb, bq).
    """
    B, nqb, bq, _ = q_t.shape
    nkb, c, bk = v_b.shape[1], v_b.shape[2], v_b.shape[3]
    out_t = np.empty((B, nqb, bq, c), dtype=q_t.dtype)
    lse = np.empty((B, nqb, bq), dtype=q_t.dtype)
    for task in prange(B * nqb):  # one task = one (batch item, query block)
        b, qb = task // nqb, task % nqb
        s = np.empty((bq, bk), dtype=q_t.dtype)  # scores, then probabilities, of one tile
        acc = np.zeros((bq, c), dtype=q_t.dtype)  # unnormalised output, transposed
        m = np.full(bq, -np.inf, dtype=q_t.dtype)  # running max of each query's scores
        l = np.zeros(bq, dtype=q_t.dtype)  # running sum of exp(score - m)
        for kb in range(nkb):
            n = min(bk, n_keys - kb * bk)
            s[:] = 0.0
            _matmul_acc(q_t[b, qb], k_b[b, kb], s, n)  # s = (scale q)^T k
            for i in range(bq):
                row = s[i]
                m_new = m[i]
                for j in range(n):
                    m_new = max(m_new, row[j])
                alpha = math.exp(m[i] - m_new)  # rescales what was summed under the old max
                l[i] = l[i] * alpha + _exp_shifted(row, m_new, n)
                m[i] = m_new
                for ch in range(c):
                    acc[i, ch] *= alpha
            _matmul_nt_acc(s, v_b[b, kb], acc, n)  # acc += p v^T
        for i in range(bq):
            lse[b, qb, i] = m[i] + math.log(l[i])
            for ch in range(c):
                out_t[b, qb, i, ch] = acc[i, ch] / l[i]
    return out_t, lse


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _flash_backward(q_t, q_b, k_b, v_b, do_t, do_b, lse, delta, n_keys):
    """The fused backward pass over tiles.

    q_t: (B, nqb, bq, ck) and q_b: (B, nqb, ck, bq) scaled query blocks;
    k_b: (B, nkb, ck, bk), v_b: (B, nkb, c, bk); do_t: (B, nqb, bq, c) and
    do_b: (B, nqb, c, bq) blocks of dout; lse, delta: (B, nqb, bq).
    -> dq_t (B, nqb, bq, ck) (gradient of the *scaled* query), and dk, dv in
    blocks, (B, nkb, ck, bk) and (B, nkb, c, bk).

    Each task owns one query block, so dq needs no care. dk and dv of a key
    block receive from every query block; two threads adding to the same
    numbers would race, so each worker adds into its own copy and the copies
    are summed at the end (deterministic, 2 x O(N * C) extra memory).
    """
    B, nqb, bq, ck = q_t.shape
    nkb, c, bk = v_b.shape[1], v_b.shape[2], v_b.shape[3]
    workers = numba.get_num_threads()
    dq_t = np.zeros((B, nqb, bq, ck), dtype=q_t.dtype)
    dk_parts = np.zeros((workers, B, nkb, ck, bk), dtype=q_t.dtype)
    dv_parts = np.zeros((workers, B, nkb, c, bk), dtype=q_t.dtype)
    for w in prange(workers):
        p = np.empty((bq, bk), dtype=q_t.dtype)  # probabilities of one tile
        ds = np.empty((bq, bk), dtype=q_t.dtype)  # dL/dp, then dL/dscore
        for task in range(w, B * nqb, workers):
            b, qb = task // nqb, task % nqb
            for kb in range(nkb):
                n = min(bk, n_keys - kb * bk)
                p[:] = 0.0
                _matmul_acc(q_t[b, qb], k_b[b, kb], p, n)  # scores, recomputed
                for i in range(bq):
                    _exp_shifted(p[i], lse[b, qb, i], n)  # p = exp(score - lse)
                ds[:] = 0.0
                _matmul_acc(do_t[b, qb], v_b[b, kb], ds, n)  # dp = dout^T v
                for i in range(bq):
                    d = delta[b, qb, i]
                    for j in range(n):
                        ds[i, j] = p[i, j] * (ds[i, j] - d)  # softmax backward
                _matmul_nt_acc(ds, k_b[b, kb], dq_t[b, qb], n)  # dq^T += ds k^T
                _matmul_acc(do_b[b, qb], p, dv_parts[w, b, kb], n)  # dv += dout p
                _matmul_acc(q_b[b, qb], ds, dk_parts[w, b, kb], n)  # dk += (scale q) ds
    return dq_t, dk_parts, dv_parts


def _blocks(x, block, rows):
    """(B, R, N) -> (B, ceil(N / block), R', block): zero-padded tiles, R' = R rounded up to 4.

    Every tile is then one C-contiguous array, so the kernels' inner loops run
    over contiguous memory. Padding is zeros: padded channels add nothing to any
    dot product, padded queries are dropped, padded keys are never read.
    """
    B, R, N = x.shape
    nb = -(-N // block)
    padded = np.zeros((B, -(-R // rows) * rows, nb * block), dtype=x.dtype)
    padded[:, :R, :N] = x
    return np.ascontiguousarray(padded.reshape(B, -1, nb, block).transpose(0, 2, 1, 3))


def _unblock(x_b, R, N):
    """(B, nb, R', block) -> (B, R, N): the inverse of ``_blocks``."""
    B, nb, Rp, block = x_b.shape
    return np.ascontiguousarray(x_b.transpose(0, 2, 1, 3).reshape(B, Rp, nb * block)[:, :R, :N])


def _check(name, x, dtype=None):
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D array (B, channels, N), got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} like query, got {x.dtype}")


def attention_forward(query, key, value, scale):
    """Streaming attention, forward. Never forms the (N, N) matrix.

    query, key: (B, Ck, N); value: (B, C, N); float32 or float64; scale: float.
    -> out: (B, C, N), out[b, :, i] = sum_j softmax_j(scale q_i . k_j) value[b, :, j];
       lse: (B, N), the log-sum-exp of each query's scaled scores (for the backward).
    """
    _check("query", query)
    for name, x in (("key", key), ("value", value)):
        _check(name, x, query.dtype)
    B, C, N = value.shape
    scale = query.dtype.type(scale)
    q_t = _blocks(query * scale, QUERY_BLOCK, ROWS).transpose(0, 1, 3, 2).copy()
    k_b = _blocks(key, KEY_BLOCK, ROWS)
    v_b = _blocks(value, KEY_BLOCK, ROWS)
    out_t, lse = _flash_forward(q_t, k_b, v_b, N)
    out = _unblock(out_t.transpose(0, 1, 3, 2), C, N)
    return out, lse.reshape(B, -1)[:, :N].copy()


def attention_backward(dout, query, key, value, out, lse, scale):
    """Streaming attention, backward, from the forward's ``out`` and ``lse``.

    dout, out: (B, C, N); query, key: (B, Ck, N); value: (B, C, N); lse: (B, N).
    -> dquery, dkey, dvalue with the shapes of query, key, value.
    Per tile: p = exp(scale q^T k - lse), dp = dout^T v,
    ds = p * (dp - rowsum(dout * out)), dq = scale k ds^T, dk = scale q ds, dv = dout p.
    """
    _check("dout", dout)
    for name, x in (("query", query), ("key", key), ("value", value), ("out", out)):
        _check(name, x, dout.dtype)
    B, Ck, N = query.shape
    C = value.shape[1]
    scale = dout.dtype.type(scale)
    delta = (dout * out).sum(axis=1)  # (B, N): rowsum(dout * out) = sum_j p_ij dp_ij
    q_b = _blocks(query * scale, QUERY_BLOCK, ROWS)
    do_b = _blocks(dout, QUERY_BLOCK, ROWS)
    row_blocks = _blocks(np.stack([lse, delta], axis=1), QUERY_BLOCK, 1)  # (B, nqb, 2, bq)
    dq_t, dk_parts, dv_parts = _flash_backward(
        q_b.transpose(0, 1, 3, 2).copy(),
        q_b,
        _blocks(key, KEY_BLOCK, ROWS),
        _blocks(value, KEY_BLOCK, ROWS),
        do_b.transpose(0, 1, 3, 2).copy(),
        do_b,
        np.ascontiguousarray(row_blocks[:, :, 0]),
        np.ascontiguousarray(row_blocks[:, :, 1]),
        N,
    )
    dquery = _unblock(dq_t.transpose(0, 1, 3, 2), Ck, N) * scale
    dkey = _unblock(dk_parts.sum(axis=0), Ck, N)
    dvalue = _unblock(dv_parts.sum(axis=0), C, N)
    return dquery, dkey, dvalue
