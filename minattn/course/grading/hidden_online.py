"""Hidden tests of notebook 5's exercise: the online (streaming) softmax, forward, in NumPy.

The student writes ``online_attention_forward(query, key, value, scale, block)``:
steps 3-5 (energy, scale, softmax, weighted sum) for every query at once, visiting the
keys one block at a time with a running maximum, a running sum and a running output,
and returning the output and each query's log-sum-exp. It is compared with the truth
(the package's dense steps in extended precision, see `accuracy`); the memory part runs it
with a memory cap below one N x N array (`tools.call_with_memory_cap`).
"""

import numpy as np

from ...ops import steps
from .accuracy import exact, expect_close, rounds, share
from .catalog import Exercise, Part
from .tools import (
    Fail,
    OverMemory,
    as_tuple,
    call,
    call_with_memory_cap,
    frozen,
    snapshot,
    unchanged,
)

_ENERGY, _SCALE = steps.energy_forward, steps.scale_forward
_SOFTMAX, _WEIGHTED = steps.softmax_forward, steps.weighted_sum_forward


def reference(query, key, value, scale):
    """(out (B, C, N), lse (B, N)) with the package's dense steps, in extended precision."""
    q, k, v = exact((query, key, value))
    s = _SCALE(_ENERGY(q, k)[0], scale)[0]
    m = s.max(axis=-1)
    lse = m + np.log(np.exp(s - m[..., None]).sum(axis=-1))
    out = _WEIGHTED(v, _SOFTMAX(s)[0])[0]
    return out, lse


def budgets(query, key, value, scale, block):
    """The error budgets of out and lse (see `accuracy`; the reasoning of a streamed softmax).

    A score s_ij = scale q_i . k_j is off by ``rounds(Ck) u`` times its terms' size
    t_ij = |scale| |q_i| . |k_j|; exp turns that into a relative error of the weight, and
    so do rounding s - m (u |s - m|), each rescaling by exp(m_old - m_new) when the
    running max grows (their exponents add up to at most the row's range, 2 max|s|), and
    the N-term sums (rounds(N + blocks)). With c_ij the sum of these, out_i is within
    ``u sum_j A_ij c_ij |v_j|``, and lse_i = m_i + log l_i within ``u max_j c_ij``.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (query, key, value))
    s = scale * (q.transpose(0, 2, 1) @ k)
    t = abs(scale) * (np.abs(q).transpose(0, 2, 1) @ np.abs(k))
    top = s.max(axis=-1, keepdims=True)
    a = np.exp(s - top)
    a /= a.sum(axis=-1, keepdims=True)
    size = np.abs(s).max(axis=-1, keepdims=True)
    n, blocks = s.shape[-1], -(-s.shape[-1] // block)
    c = rounds(q.shape[1]) * t + 4 * (np.abs(s - top) + size) + rounds(n + blocks)
    return np.abs(v) @ (a * c).transpose(0, 2, 1), c.max(axis=-1)


def _case(rng, dtype, index):
    B = (2, 3, 1)[index % 3]
    ck, c = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    n = int(rng.integers(9, 40))
    block = int(rng.choice([b for b in (4, 5, 7, 8, 16) if n % b]))  # a ragged last block
    q = rng.standard_normal((B, ck, n))
    k = rng.standard_normal((B, ck, n))
    v = rng.standard_normal((B, c, n)).astype(dtype)
    scale = ck**-0.5
    big = ""
    if index % 3 == 2:
        # energies in the hundreds, above where exp overflows (e^709 in float64, e^88 in
        # float32): only a softmax that subtracts its running max stays finite
        top = rng.uniform(750, 950) if dtype == np.float64 else rng.uniform(120, 240)
        s = scale * (q.transpose(0, 2, 1) @ k)
        q = q * (top / np.abs(s).max()) * np.sign(s.flat[np.argmax(np.abs(s))])
        big = f", energies up to {top:.0f}"
    q, k = q.astype(dtype), k.astype(dtype)
    desc = f"{np.dtype(dtype).name}, B={B}, Ck={ck}, C={c}, N={n}, block={block}{big}"
    return (q, k, v, scale, block), desc


def online_parts():
    def run(functions, rng, dtype, robust=False):
        fn = functions["online_attention_forward"]
        worst = 0.0
        for index in range(6):
            args, desc = _case(rng, dtype, index)
            where = f" ({desc}{', read-only non-contiguous inputs' if robust else ''})"
            out_ref, lse_ref = reference(*args[:4])
            out_budget, lse_budget = budgets(*args)
            given = frozen(args) if robust else snapshot(args)
            before = snapshot(given)
            result = call(fn, *given, name="online_attention_forward", where=where)
            out, lse = as_tuple(result, 2, "online_attention_forward", "arrays (out, lse)")
            worst = max(
                worst,
                expect_close(out, out_ref, out_budget, name="out", dtype=dtype, where=where),
                expect_close(lse, lse_ref, lse_budget, name="lse", dtype=dtype, where=where),
            )
            if robust and not unchanged(before, given):
                raise Fail(f"online_attention_forward changed its input in place{where}")
        return worst

    def values(functions, rng):
        return share(run(functions, rng, np.float64))

    def float32(functions, rng):
        run(functions, rng, np.float32)

    def memory(functions, rng):
        fn = functions["online_attention_forward"]
        n, block = 2048, 128
        q, k = rng.standard_normal((2, 1, 2, n))
        v = rng.standard_normal((1, 2, n))
        dense = n * n * 8
        # streaming peaks at a few blocks of scores (about 8 MiB here), dense at 32 MiB
        try:
            where = f" at N={n}, block={block}"
            args = (q, k, v, 2**-0.5, block)
            call_with_memory_cap(fn, args, dense / 2, name="online_attention_forward", where=where)
        except OverMemory as e:
            raise Fail(
                f"{e}: an N x N float64 array is {dense / 2**20:.0f} MiB, a block of scores "
                f"{n * block * 8 / 2**20:.0f} MiB; stream the keys block by block"
            ) from None

    return (Part("values", 0.6, values), Part("float32", 0.15, float32),
            Part("memory", 0.25, memory))  # fmt: skip


ONLINE = (
    Exercise(
        id="online_attention_forward",
        notebook="05_making_it_fast",
        functions=("online_attention_forward",),
        points=4,
        parts=online_parts(),
        summary="steps 3-5 with the online softmax: keys in blocks, never N x N",
        replaces=("softmax_forward", "energy_forward", "weighted_sum_forward"),
        expected_error="is a few roundings: about 1e-16 of its terms' size, times the energies'",
        summary_zh="用在线 softmax 完成第 3 到 5 步：键分块处理，从不构造 N x N 矩阵",
        expected_error_zh="只是几次舍入：约为其各项大小的 1e-16，再乘以注意力分数的大小",
    ),
)
