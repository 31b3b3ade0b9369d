"""Numba kernels for the attention steps, and a streaming attention that never holds N x N.

This is the only module of minattn that imports Numba; ``BAM(backend="numba")``
imports it lazily. Every kernel has a plain NumPy twin below it (``*_numpy``),
and the tests check each kernel against its twin and against `minattn.steps`.

Shapes: B batch, Ck query/key channels, C value channels, N pixels.
query, key: (B, Ck, N); value: (B, C, N); energy and attention: (B, N, N).

Three families live here:

1. The article's steps as loops (``energy_numba``, ``softmax_numba``,
   ``weighted_sum_numba`` and their backward passes). They build the N x N
   matrices, exactly like `minattn.steps`, and show how a loop a student
   would write becomes fast: the innermost loop runs along contiguous memory so
   LLVM turns it into SIMD instructions, and ``prange`` spreads rows over cores.

2. Step 1, the 1x1 convolutions, without BLAS (``conv1x1_forward_numba``,
   ``conv1x1_backward_numba``; twins in `minattn.steps`), so that a
   numba-backend BAM need not wake OpenBLAS's spinning threads.

3. The streaming attention (``attention_forward`` / ``attention_backward``),
   FlashAttention's algorithm on the CPU. Queries are cut into blocks of
   ``QUERY_BLOCK`` pixels and keys into blocks of ``KEY_BLOCK`` pixels. For one
   query block we walk over the key blocks keeping, per query, the running max
   ``m`` and the running sum ``l`` of exp(score - m) (the *online softmax*), and
   rescale the partial output whenever ``m`` grows. Only the per-query
   log-sum-exp ``lse = m + log(l)`` is kept; the backward pass recomputes each
   probability block from it as exp(score - lse). Memory is O(N * C).

See docs/kernels.md for the derivation, the tile sizes and the measured speed.
"""

import contextlib
import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from . import reference

# Every fast-math flag except "nnan" and "ninf": reassociation lets LLVM keep several
# SIMD partial sums in a reduction, "contract" fuses a * b + c into one FMA. Without
# nnan/ninf, -inf (the running max before the first key) and NaN keep their meaning.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# The exp below needs its operations in the written order (reassociation would merge
# the two halves of ln 2 again), and it has no reduction to speed up: no "reassoc".
EXP_FASTMATH = FASTMATH - {"reassoc"}

QUERY_BLOCK = 64  # queries per task: a task's tiles (bq x KEY_BLOCK) stay in L2 (1 MiB)
KEY_BLOCK = 512  # keys per tile: long inner loops amortise each SIMD reduction
ROWS = 4  # register blocking: each loaded vector feeds 4 rows (see _matmul_acc)
# Below this many multiply-adds (about 10 ms on one core) the streaming kernels run on
# one thread: waking the others and meeting them at the end of the parallel loop costs
# more than it saves, and much more when another process holds a core (tens of ms).
SERIAL_WORK = 2**27


# ---------------------------------------------------------------- bit tricks: exp and max
#
# Two loops over every score would not vectorise as written: Numba's exp is a
# scalar libm call (no SVML in the llvmlite wheels) and its float max() carries
# NaN checks that keep LLVM from building a SIMD max. Both are rebuilt from
# operations that have SIMD instructions, some of them on the bits of the floats
# (what ``x.view(np.int32)`` does to an array). Three tiny LLVM intrinsics give
# those bit views inside compiled code; with NUMBA_DISABLE_JIT=1 the plain NumPy
# versions below stand in for them.

if numba.config.DISABLE_JIT:

    def _pow2(k):
        """2 ** k for a float k holding an integer."""
        return np.ldexp(type(k)(1), int(k))

    def _float_bits(x):
        """The bits of a float32 (float64) as an int32 (int64)."""
        return np.asarray(x).view(np.int32 if x.dtype == np.float32 else np.int64)[()]

    def _bits_float(b):
        """The inverse of ``_float_bits``."""
        return np.asarray(b).view(np.float32 if b.dtype == np.int32 else np.float64)[()]

else:

    @intrinsic
    def _pow2(typingctx, k):
        """2 ** k for a float k holding an integer in [-126, 127] (float32) or [-1022, 1023].

        The integer k + bias, shifted into the exponent field, *is* the float 2 ** k.
        Convert, add, shift and reinterpret are single SIMD instructions; ``ldexp``
        or ``2.0 ** k`` would be a scalar call.
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

    @intrinsic
    def _float_bits(typingctx, x):
        """The bits of a float32 (float64) as an int32 (int64): a free reinterpretation."""
        if not isinstance(x, types.Float):
            return None
        int_type = types.int32 if x.bitwidth == 32 else types.int64

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(x.bitwidth))

        return int_type(x), codegen

    @intrinsic
    def _bits_float(typingctx, b):
        """The inverse of ``_float_bits``."""
        if b not in (types.int32, types.int64):
            return None
        float_type = types.float32 if b.bitwidth == 32 else types.float64

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(float_type))

        return float_type(b), codegen


@njit(cache=True, fastmath=FASTMATH)
def _row_max(row, n):
    """max(row[:n]) for n >= 1 and finite values, by two integer reductions (they vectorise).

    Read as signed integers, the bits of floats >= 0 sort like the floats, and the
    bits of floats < 0 sort in reverse (sign bit set, then magnitude). So the
    largest float is the one with the largest bits if those are >= 0 (some float
    is >= 0), else the one with the smallest bits (all negative: smallest magnitude).
    """
    hi = lo = _float_bits(row[0])
    for j in range(n):
        b = _float_bits(row[j])
        hi = max(hi, b)
        lo = min(lo, b)
    return _bits_float(hi if hi >= 0 else lo)


@njit(cache=True, fastmath=EXP_FASTMATH)
def _exp_shifted(row, shift, n):
    """row[:n] <- exp(row[:n] - shift). row: (>= n,); for row <= shift.

    Numba's ``math.exp`` is a scalar libm call (no SVML in the llvmlite wheels),
    so exp would dominate. Instead: exp(x) = 2**k * exp(r) with k = round(x / ln 2)
    and |r| <= ln(2) / 2, exp(r) by its Taylor polynomial to degree 12 (truncation
    error below 2e-16 relative, so float64 gets full precision too), and 2**k
    from the exponent bits. Every operation has a SIMD instruction. ln 2 is split
    into a short head (k * head is exact) and a tail, so r stays accurate for large k.
    """
    T = row.dtype.type
    lowest = T(-87.0) if row.itemsize == 4 else T(-708.0)  # exp(lowest) is still normal
    log2e = T(1.4426950408889634)
    ln2_head = T(0.693145751953125)  # 16 significant bits: k * ln2_head is exact
    ln2_tail = T(1.4286068203094173e-06)  # ln 2 - ln2_head
    for j in range(n):
        x = row[j] - shift
        x = x if x > lowest else lowest  # also turns -inf into a tiny finite weight
        k = np.floor(x * log2e + T(0.5))
        r = (x - k * ln2_head) - k * ln2_tail
        # Horner's rule for sum_{i <= 12} r**i / i!
        p = T(1.0 / 479001600.0)
        p = p * r + T(1.0 / 39916800.0)
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
        row[j] = p * _pow2(k)


@njit(cache=True, fastmath=FASTMATH)
def exp_numba(x):
    """Elementwise exp(x) for x <= 0 through ``_exp_shifted``; its NumPy twin is ``np.exp``.

    x: any shape, float32 or float64 -> same shape and dtype.
    """
    out = x.copy().reshape(-1)
    _exp_shifted(out, x.dtype.type(0.0), out.size)
    return out.reshape(x.shape)


# ---------------------------------------------------------------- the article's steps as loops
#
# These build the (B, N, N) matrices, exactly like minattn.steps: they are for
# teaching and for timing against NumPy, not for large N.

CHUNK = 256  # columns per parallel task where rows cannot be the unit of work


def energy_python(query, key, scale):
    """The article's "covariance" as a student first writes it: pure Python, one pair at a time.

    query, key: (B, Ck, N) -> energy: (B, N, N), energy[b, i, j] = scale * q_i . k_j.
    It is the reference's loop (``minattn.reference.energy_forward``), then scaled.
    About half a minute at N = 4096 here; use it on a few hundred pixels.
    """
    energy, _ = reference.energy_forward(query, key)
    return scale * energy


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def energy_numba(query, key, scale):
    """The same loops, compiled. query, key: (B, Ck, N) -> energy: (B, N, N).

    Two changes make it fast. The loops are reordered so the innermost one runs
    over j, along a row of ``key`` and a row of ``energy``: contiguous memory,
    so LLVM turns it into SIMD instructions (16 float32 per instruction here).
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
    """The same matrix as one batched matmul (BLAS). query, key: (B, Ck, N) -> (B, N, N)."""
    return scale * (query.transpose(0, 2, 1) @ key)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
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


def energy_backward_numpy(denergy, query, key, scale):
    """NumPy twin of ``energy_backward_numba``."""
    return scale * (key @ denergy.transpose(0, 2, 1)), scale * (query @ denergy)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
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


def softmax_numpy(energy):
    """NumPy twin of ``softmax_numba``."""
    e = np.exp(energy - energy.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
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


def softmax_backward_numpy(dattention, attention):
    """NumPy twin of ``softmax_backward_numba``."""
    return attention * (dattention - (dattention * attention).sum(axis=-1, keepdims=True))


@njit(parallel=True, cache=True, fastmath=FASTMATH)
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


def weighted_sum_numpy(value, attention):
    """NumPy twin of ``weighted_sum_numba``."""
    return value @ attention.transpose(0, 2, 1)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
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


def weighted_sum_backward_numpy(dout, value, attention):
    """NumPy twin of ``weighted_sum_backward_numba``."""
    return dout @ attention, dout.transpose(0, 2, 1) @ value


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
                m_new = max(m[i], _row_max(row, n))
                _exp_shifted(row, m_new, n)  # p = exp(score - m_new)
                total = q_t.dtype.type(0.0)
                for j in range(n):
                    total += row[j]
                alpha = math.exp(m[i] - m_new)  # rescales what was summed under the old max
                l[i] = l[i] * alpha + total
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
def _flash_backward(q_t, q_b, k_b, v_b, do_t, do_b, lse, delta, n_keys, workers):
    """The fused backward pass over tiles.

    q_t: (B, nqb, bq, ck) and q_b: (B, nqb, ck, bq) scaled query blocks;
    k_b: (B, nkb, ck, bk), v_b: (B, nkb, c, bk); do_t: (B, nqb, bq, c) and
    do_b: (B, nqb, c, bq) blocks of dout; lse, delta: (B, nqb, bq); workers: threads.
    -> dq_t (B, nqb, bq, ck) (gradient of the *scaled* query), and dk, dv in
    blocks, (B, nkb, ck, bk) and (B, nkb, c, bk).

    Each task owns one query block, so dq needs no care. dk and dv of a key
    block receive from every query block; two threads adding to the same
    numbers would race, so each worker adds into its own copy and the copies
    are summed at the end (deterministic, 2 x O(N * C) extra memory).
    """
    B, nqb, bq, ck = q_t.shape
    nkb, c, bk = v_b.shape[1], v_b.shape[2], v_b.shape[3]
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


@contextlib.contextmanager
def _threads_for(work):
    """Run the enclosed kernel on all of Numba's threads, or on one if ``work`` is small.

    work: multiply-adds of the kernel. Yields the thread count. ``set_num_threads``
    is per calling thread in Numba, so this is safe from several Python threads.
    """
    before = numba.get_num_threads()
    threads = 1 if work < SERIAL_WORK else before
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(before)


def _check(arrays, like):
    """Raise if the named arrays are not 3-D float32/float64 arrays matching ``like``'s.

    arrays: {name: array}, each (B, channels, N) with the dtype, B and N of the
    array named ``like``; query and key also share their channel count.
    """
    for name, x in arrays.items():
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{name}: expected a 3-D array (B, channels, N), got {got}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected float32 or float64, got {x.dtype}")
    ref = arrays[like]
    for name, x in arrays.items():
        if x.dtype != ref.dtype:
            raise TypeError(f"{name}: expected dtype {ref.dtype} like {like}, got {x.dtype}")
        if (x.shape[0], x.shape[2]) != (ref.shape[0], ref.shape[2]):
            raise ValueError(
                f"{name}: expected B = {ref.shape[0]} and N = {ref.shape[2]} like {like}, "
                f"got shape {x.shape}"
            )
    if "key" in arrays and arrays["key"].shape != arrays["query"].shape:
        raise ValueError(
            f"key: expected the shape of query, {arrays['query'].shape}, got {arrays['key'].shape}"
        )


def attention_forward(query, key, value, scale):
    """Streaming attention, forward. Never forms the (N, N) matrix.

    query, key: (B, Ck, N); value: (B, C, N); float32 or float64; scale: float.
    -> out: (B, C, N), out[b, :, i] = sum_j softmax_j(scale q_i . k_j) value[b, :, j];
       lse: (B, N), the log-sum-exp of each query's scaled scores (for the backward).
    """
    _check(dict(query=query, key=key, value=value), like="query")
    B, C, N = value.shape
    scale = query.dtype.type(scale)
    q_t = _blocks(query * scale, QUERY_BLOCK, ROWS).transpose(0, 1, 3, 2).copy()
    k_b = _blocks(key, KEY_BLOCK, ROWS)
    v_b = _blocks(value, KEY_BLOCK, ROWS)
    with _threads_for(B * N * N * (query.shape[1] + C)):
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
    _check(dict(dout=dout, query=query, key=key, value=value, out=out), like="dout")
    if np.shape(lse) != (query.shape[0], query.shape[2]):
        raise ValueError(
            f"lse: expected shape {(query.shape[0], query.shape[2])}, got {np.shape(lse)}"
        )
    lse = np.asarray(lse, dtype=dout.dtype)
    B, Ck, N = query.shape
    C = value.shape[1]
    scale = dout.dtype.type(scale)
    delta = (dout * out).sum(axis=1)  # (B, N): rowsum(dout * out) = sum_j p_ij dp_ij
    q_b = _blocks(query * scale, QUERY_BLOCK, ROWS)
    do_b = _blocks(dout, QUERY_BLOCK, ROWS)
    row_blocks = _blocks(np.stack([lse, delta], axis=1), QUERY_BLOCK, 1)  # (B, nqb, 2, bq)
    with _threads_for(2 * B * N * N * (Ck + C)) as workers:
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
            workers,
        )
    dquery = _unblock(dq_t.transpose(0, 1, 3, 2), Ck, N) * scale
    dkey = _unblock(dk_parts.sum(axis=0), Ck, N)
    dvalue = _unblock(dv_parts.sum(axis=0), C, N)
    return dquery, dkey, dvalue


# ---------------------------------------------------------------- step 1 without BLAS
#
# The 1x1 convolutions are matmuls, and NumPy would hand them to OpenBLAS. But
# OpenBLAS's idle threads keep spinning for a while after each call, and Numba's
# threads started right after them wait for a core: on 2 cores that made the
# numba backend up to 2x slower (N = 4096). These versions run on the same tile
# kernels as the attention, so the numba backend never wakes OpenBLAS.


PIXEL_BLOCK = 512  # pixels per tile of the 1x1 convolutions


def _pixel_tile(n):
    """Tile width for n pixels: PIXEL_BLOCK, or n rounded up to 16 if smaller (the tiles
    compute over their padding, and at ds = 8 an image may have only 64 pixels)."""
    return min(PIXEL_BLOCK, -(-n // 16) * 16)


def conv1x1_forward_numba(x, weight, bias):
    """Step 1 on the tile kernels: out[b, o] = bias[o] + sum_i weight[o, i, 0, 0] x[b, i].

    x: (B, C_in, h, w); weight: (C_out, C_in, 1, 1); bias: (C_out,)
    -> (out (B, C_out, h, w), cache). A drop-in for its NumPy twin ``steps.conv1x1_forward``.
    """
    B, C_in, h, w = x.shape
    C_out = weight.shape[0]
    x_b = _blocks(x.reshape(B, C_in, h * w), _pixel_tile(h * w), ROWS)
    with _threads_for(x.size * C_out):
        y_b = _conv_tiles(_pad4(weight[:, :, 0, 0]), x_b, _pad4(bias[None, :])[0])
    return _unblock(y_b, C_out, h * w).reshape(B, C_out, h, w), (x, weight)


def conv1x1_backward_numba(dout, cache):
    """dout: (B, C_out, h, w) -> (dx (B, C_in, h, w), dweight (C_out, C_in, 1, 1), dbias (C_out,)).

    dx = weight^T dout at every pixel; dweight = sum over batch and pixels of
    dout x^T. NumPy twin: ``minattn.steps.conv1x1_backward``.
    """
    x, weight = cache
    B, C_in, h, w = x.shape
    C_out = weight.shape[0]
    d_b = _blocks(dout.reshape(B, C_out, h * w), _pixel_tile(h * w), ROWS)
    x_b = _blocks(x.reshape(B, C_in, h * w), _pixel_tile(h * w), ROWS)
    w_t = np.ascontiguousarray(_pad4(weight[:, :, 0, 0]).T)
    with _threads_for(2 * x.size * C_out) as workers:
        dx_b = _conv_tiles(w_t, d_b, np.zeros(w_t.shape[0], dtype=x.dtype))
        dweight = _conv_weight_grad(d_b, x_b, workers)
    dx = _unblock(dx_b, C_in, h * w).reshape(x.shape)
    return dx, dweight[:C_out, :C_in, None, None].copy(), dout.sum(axis=(0, 2, 3))


def _pad4(a):
    """A 2-D array zero-padded to multiples of 4 in both dimensions, C-contiguous."""
    out = np.zeros((-(-a.shape[0] // ROWS) * ROWS, -(-a.shape[1] // ROWS) * ROWS), a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _conv_tiles(a, x_b, bias):
    """y_b[b, t] = a @ x_b[b, t] + bias[:, None] for every pixel tile.

    a: (P, R), multiples of 4; x_b: (B, nb, R, block) tiles; bias: (P,) -> (B, nb, P, block).
    """
    B, nb, _, block = x_b.shape
    y_b = np.empty((B, nb, a.shape[0], block), dtype=x_b.dtype)
    for task in prange(B * nb):
        b, t = task // nb, task % nb
        for o in range(a.shape[0]):
            y_b[b, t, o, :] = bias[o]
        _matmul_acc(a, x_b[b, t], y_b[b, t], block)
    return y_b


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _conv_weight_grad(d_b, x_b, workers):
    """sum over tiles of d_b[b, t] @ x_b[b, t].T: (B, nb, P, block), (B, nb, R, block) -> (P, R).

    A long dot product along the pixels, so ``_matmul_nt_acc``; each worker sums
    its tiles into its own copy (no race), and the copies are added at the end.
    """
    B, nb, P, block = d_b.shape
    parts = np.zeros((workers, P, x_b.shape[2]), dtype=d_b.dtype)
    for w in prange(workers):
        for task in range(w, B * nb, workers):
            b, t = task // nb, task % nb
            _matmul_nt_acc(d_b[b, t], x_b[b, t], parts[w], block)
    total = parts[0].copy()
    for w in range(1, workers):
        total += parts[w]
    return total


# ---------------------------------------------------------------- NumPy twins, streaming path


def attention_forward_numpy(query, key, value, scale, block=KEY_BLOCK):
    """NumPy twin of ``attention_forward``: the same online softmax, one key block at a time.

    All queries move together and BLAS does the products, so memory is
    O(N * block) instead of O(N^2). Same arguments and results as ``attention_forward``.
    """
    B, C, N = value.shape
    m = np.full((B, N), -np.inf, dtype=value.dtype)  # running max per query
    l = np.zeros((B, N), dtype=value.dtype)  # running sum of exp(score - m)
    acc = np.zeros((B, C, N), dtype=value.dtype)  # unnormalised output
    q_t = scale * query.transpose(0, 2, 1)  # (B, N, Ck)
    for j0 in range(0, N, block):
        s = q_t @ key[:, :, j0 : j0 + block]  # (B, N, block) scores
        m_new = np.maximum(m, s.max(axis=-1))
        alpha = np.exp(m - m_new)  # rescales what was summed under the old max
        p = np.exp(s - m_new[:, :, None])
        l = l * alpha + p.sum(axis=-1)
        acc = acc * alpha[:, None, :] + value[:, :, j0 : j0 + block] @ p.transpose(0, 2, 1)
        m = m_new
    return acc / l[:, None, :], m + np.log(l)


def attention_backward_numpy(dout, query, key, value, out, lse, scale, block=KEY_BLOCK):
    """NumPy twin of ``attention_backward``: probabilities recomputed per key block from lse."""
    B, C, N = value.shape
    delta = (dout * out).sum(axis=1)  # (B, N)
    q_t = scale * query.transpose(0, 2, 1)  # (B, N, Ck)
    dout_t = dout.transpose(0, 2, 1)  # (B, N, C)
    dquery = np.zeros_like(query)
    dkey = np.empty_like(key)
    dvalue = np.empty_like(value)
    for j0 in range(0, N, block):
        k, v = key[:, :, j0 : j0 + block], value[:, :, j0 : j0 + block]
        p = np.exp(q_t @ k - lse[:, :, None])  # (B, N, block)
        ds = p * (dout_t @ v - delta[:, :, None])  # dL/dscore
        dquery += scale * (k @ ds.transpose(0, 2, 1))
        dkey[:, :, j0 : j0 + block] = scale * (query @ ds)
        dvalue[:, :, j0 : j0 + block] = dout @ p
    return dquery, dkey, dvalue
