"""Streaming attention: steps 3-5 fused, FlashAttention's algorithm on the CPU, O(N * C) memory.

Shapes: B batch, Ck query/key channels, C value channels, N pixels;
query, key: (B, Ck, N); value, out: (B, C, N); lse: (B, N).

Queries are cut into blocks of ``QUERY_BLOCK`` pixels and keys into blocks of
``KEY_BLOCK`` pixels. For one query block the forward pass walks over the key
blocks keeping, per query, the running max ``m`` and the running sum ``l`` of
exp(score - m) (the *online softmax*), and rescales the partial output whenever
``m`` grows. Only the per-query log-sum-exp ``lse = m + log(l)`` is kept; the
backward pass recomputes each probability tile from it as exp(score - lse).

The tile products: those that sum over channels into a whole tile (scores, dp, and
dv, dk) are BLAS calls, ``np.dot`` on contiguous tiles, on one BLAS thread per kernel
thread (``minattn.blas.one_blas_thread``); the two that sum over the 512 keys of a tile (out,
dq) are ``tiles._matmul_nt_acc``, whose register block keeps its partial sums for the
whole sum. Each was the faster way, measured (docs/kernels.md, "Tiles").

Threads (see ``jit.run_threads``): a thread owns a set of query blocks, so the
output, ``lse`` and ``dquery`` of a query block are written by one thread only.
``dkey`` and ``dvalue`` of a key block receive from every query block. Instead of
a private copy per thread (memory growing with the thread count), the backward
pass runs in rounds: the key blocks are split into as many groups as threads, and
in round r thread t works on group (t + r) mod threads. No two threads ever
touch the same group at once, every sum is added in a fixed order (deterministic
for a given thread count), and dkey, dvalue are the only O(N * C) buffers.

NumPy twins: ``attention_forward_numpy`` and ``attention_backward_numpy`` below,
the same online softmax one key block at a time with BLAS doing the products.
"""

import math

import numpy as np

from ..blas import one_blas_thread
from .jit import kernel, run_threads, workers_for
from .simd import _exp_shifted, _row_max
from .tiles import _matmul_nt_acc, blocks, unblock

QUERY_BLOCK = 128  # queries per tile: a thread's two score tiles (128 x 512) fit its L2
KEY_BLOCK = 512  # keys per tile: each BLAS call does 1-8 MFLOP, enough to run near peak


def tile_sizes(n):
    """(queries, keys) per tile for N = n: QUERY_BLOCK and KEY_BLOCK, or less when n is
    smaller (rounded up to 16), so a small map does not compute over a tile of padding."""
    small = -(-n // 16) * 16
    return min(QUERY_BLOCK, small), min(KEY_BLOCK, small)


@kernel
def _online_softmax(s, n, m, l, acc):
    """One key block of the online softmax, in place.

    s: (bq, bk) scores -> probabilities exp(score - new max) for the n true keys;
    m, l: (bq,) running max and running sum, updated; acc: (bq, c) rescaled by
    exp(old max - new max), the factor that moves what was summed to the new max.
    """
    bq, bk = s.shape
    for i in range(bq):
        row = s[i]
        m_new = max(m[i], _row_max(row, n))
        _exp_shifted(row, m_new, n)
        total = s.dtype.type(0.0)
        for j in range(n):
            total += row[j]
        alpha = math.exp(m[i] - m_new)
        l[i] = l[i] * alpha + total
        m[i] = m_new
        for ch in range(acc.shape[1]):  # a loop: an array expression here compiles for 5 s
            acc[i, ch] *= alpha


@kernel
def _forward_tiles(q_t, k_b, v_b, n_keys, first, step, out_t, lse):
    """The fused forward pass over the query blocks first, first + step, ... (one thread's share).

    q_t: (B, nqb, bq, ck) scaled query blocks, transposed; k_b: (B, nkb, ck, bk) and
    v_b: (B, nkb, c, bk) key/value blocks; n_keys: the true N (the last key block
    may be partly padding). Writes out_t (B, nqb, bq, c) and lse (B, nqb, bq).
    The two products of a tile are BLAS calls (np.dot on contiguous tiles).
    """
    B, nqb, bq, _ = q_t.shape
    nkb, c, bk = v_b.shape[1], v_b.shape[2], v_b.shape[3]
    s = np.empty((bq, bk), dtype=q_t.dtype)  # scores, then probabilities, of one tile
    acc = np.empty((bq, c), dtype=q_t.dtype)  # unnormalised output, transposed
    m = np.empty(bq, dtype=q_t.dtype)  # running max of each query's scores
    l = np.empty(bq, dtype=q_t.dtype)  # running sum of exp(score - m)
    for task in range(first, B * nqb, step):  # one task = one (batch item, query block)
        b, qb = task // nqb, task % nqb
        acc[:] = 0.0
        m[:] = -np.inf
        l[:] = 0.0
        for kb in range(nkb):
            n = min(bk, n_keys - kb * bk)
            np.dot(q_t[b, qb], k_b[b, kb], s)  # s = (scale q)^T k, by BLAS
            _online_softmax(s, n, m, l, acc)
            _matmul_nt_acc(s, v_b[b, kb], acc, n)  # acc += p v^T
        for i in range(bq):
            lse[b, qb, i] = m[i] + math.log(l[i])
            for ch in range(c):
                out_t[b, qb, i, ch] = acc[i, ch] / l[i]


@kernel
def _add(y, x):
    """y += x for 2-D arrays of one shape, as a loop (NumPy's ``+=`` on an array view is
    a generic broadcasting loop in Numba, 10x slower than this vectorised one)."""
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] += x[i, j]


@kernel
def _tile_gradients(p, ds, lse, delta, n):
    """p: (bq, bk) scores -> probabilities exp(score - lse), zero past the n true keys;
    ds: (bq, bk) dp = dout^T v -> dscore = p * (dp - delta). lse, delta: (bq,)."""
    bq, bk = p.shape
    for i in range(bq):
        _exp_shifted(p[i], lse[i], n)
        p[i, n:] = 0.0
        d = delta[i]
        for j in range(n):
            ds[i, j] = p[i, j] * (ds[i, j] - d)
        ds[i, n:] = 0.0


@kernel
def _backward_tiles(q_t, q_b, k_b, v_b, do_t, do_b, lse, delta, n_keys, first, step, keys, grads):
    """The fused backward pass: query blocks first, first + step, ... against key blocks keys.

    q_t: (B, nqb, bq, ck) and q_b: (B, nqb, ck, bq) scaled query blocks;
    k_b: (B, nkb, ck, bk), v_b: (B, nkb, c, bk); do_t: (B, nqb, bq, c) and
    do_b: (B, nqb, c, bq) blocks of dout; lse, delta: (B, nqb, bq);
    keys: (kb0, kb1), the key blocks of this round's group;
    grads: (dq_t (B, nqb, bq, ck), the gradient of the *scaled* query, dk_b
    (B, nkb, ck, bk), dv_b (B, nkb, c, bk)), added to. Five BLAS calls per tile.
    """
    dq_t, dk_b, dv_b = grads
    B, nqb, bq, ck = q_t.shape
    c, bk = v_b.shape[2], v_b.shape[3]
    p = np.empty((bq, bk), dtype=q_t.dtype)  # probabilities of one tile
    ds = np.empty((bq, bk), dtype=q_t.dtype)  # dL/dp, then dL/dscore
    dk = np.empty((ck, bk), dtype=q_t.dtype)  # one tile's share of dk and dv
    dv = np.empty((c, bk), dtype=q_t.dtype)
    for task in range(first, B * nqb, step):
        b, qb = task // nqb, task % nqb
        for kb in range(keys[0], keys[1]):
            n = min(bk, n_keys - kb * bk)
            np.dot(q_t[b, qb], k_b[b, kb], p)  # scores, recomputed
            np.dot(do_t[b, qb], v_b[b, kb], ds)  # dp = dout^T v
            _tile_gradients(p, ds, lse[b, qb], delta[b, qb], n)
            _matmul_nt_acc(ds, k_b[b, kb], dq_t[b, qb], n)  # dq^T += ds k^T
            np.dot(do_b[b, qb], p, dv)
            _add(dv_b[b, kb], dv)  # dv += dout p
            np.dot(q_b[b, qb], ds, dk)
            _add(dk_b[b, kb], dk)  # dk += (scale q) ds


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
    bq, bk = tile_sizes(N)
    q_t = blocks(query * scale, bq).transpose(0, 1, 3, 2).copy()
    k_b, v_b = blocks(key, bk), blocks(value, bk)
    nqb = q_t.shape[1]
    out_t = np.empty((B, nqb, bq, v_b.shape[2]), dtype=query.dtype)
    lse = np.empty((B, nqb, bq), dtype=query.dtype)
    workers = min(workers_for(B * N * N * (query.shape[1] + C)), B * nqb)
    with one_blas_thread("scipy"):
        run_threads(lambda w: _forward_tiles(q_t, k_b, v_b, N, w, workers, out_t, lse), workers)
    out = unblock(out_t.transpose(0, 1, 3, 2), C, N)
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
    bq, bk = tile_sizes(N)
    q_b = blocks(query * scale, bq)
    do_b = blocks(dout, bq)
    rows = blocks(np.stack([lse, delta], axis=1), bq, rows=1)  # (B, nqb, 2, bq)
    k_b, v_b = blocks(key, bk), blocks(value, bk)
    args = (
        q_b.transpose(0, 1, 3, 2).copy(),
        q_b,
        k_b,
        v_b,
        do_b.transpose(0, 1, 3, 2).copy(),
        do_b,
        np.ascontiguousarray(rows[:, :, 0]),
        np.ascontiguousarray(rows[:, :, 1]),
        N,
    )
    grads = (np.zeros(args[0].shape, dout.dtype), np.zeros_like(k_b), np.zeros_like(v_b))
    nkb = k_b.shape[1]
    groups = min(workers_for(2 * B * N * N * (Ck + C)), nkb)  # threads = groups of key blocks
    edges = [nkb * g // groups for g in range(groups + 1)]
    with one_blas_thread("scipy"):
        for r in range(groups):  # round r: thread w works on key group (w + r) % groups

            def task(w, r=r):
                g = (w + r) % groups
                _backward_tiles(*args, w, groups, (edges[g], edges[g + 1]), grads)

            run_threads(task, groups)
    dq_t, dk_b, dv_b = grads
    dquery = unblock(dq_t.transpose(0, 1, 3, 2), Ck, N) * scale
    return dquery, unblock(dk_b, Ck, N), unblock(dv_b, C, N)


# ---------------------------------------------------------------- NumPy twins


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
