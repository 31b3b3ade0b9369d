"""Hidden tests of notebook 5's exercise: the online (streaming) softmax, forward, in NumPy.

The student writes ``online_attention_forward(query, key, value, scale, block)``:
steps 3-5 (energy, scale, softmax, weighted sum) for every query at once, visiting the
keys one block at a time with a running maximum, a running sum and a running output,
and returning the output and each query's log-sum-exp. It is compared with the
package's steps; the memory part measures (with tracemalloc) that no N x N array is
ever allocated.
"""

import tracemalloc

import numpy as np

from ...ops import steps
from .catalog import Exercise, Part
from .tools import Fail, as_tuple, call, expect_array, frozen, snapshot, unchanged

_ENERGY, _SCALE = steps.energy_forward, steps.scale_forward
_SOFTMAX, _WEIGHTED = steps.softmax_forward, steps.weighted_sum_forward


def reference(query, key, value, scale):
    """(out (B, C, N), lse (B, N)) with the package's dense steps, in float64."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (query, key, value))
    s = _SCALE(_ENERGY(q, k)[0], scale)[0]
    m = s.max(axis=-1)
    lse = m + np.log(np.exp(s - m[..., None]).sum(axis=-1))
    out = _WEIGHTED(v, _SOFTMAX(s)[0])[0]
    return out, lse


def _case(rng, dtype, index):
    B = (2, 3, 1)[index % 3]
    ck, c = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    n = int(rng.integers(9, 40))
    block = int(rng.choice([b for b in (4, 5, 7, 8, 16) if n % b]))  # a ragged last block
    spread = (1.0, 1.0, 40.0 if dtype == np.float32 else 300.0)[index % 3]
    q = (rng.standard_normal((B, ck, n)) * spread**0.5).astype(dtype)
    k = (rng.standard_normal((B, ck, n)) * spread**0.5).astype(dtype)
    v = rng.standard_normal((B, c, n)).astype(dtype)
    scale = ck**-0.5
    big = f", energies up to {spread:.0f}" if spread > 1 else ""
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
            given = frozen(args) if robust else snapshot(args)
            before = snapshot(given)
            result = call(fn, *given, name="online_attention_forward", where=where)
            out, lse = as_tuple(result, 2, "online_attention_forward", "arrays (out, lse)")
            worst = max(
                worst,
                expect_array(out, out_ref, name="out", where=where, dtype=dtype),
                expect_array(lse, lse_ref, name="lse", where=where, dtype=dtype),
            )
            if robust and not unchanged(before, given):
                raise Fail(f"online_attention_forward changed its input in place{where}")
        return worst

    def values(functions, rng):
        return f"max error {run(functions, rng, np.float64):.0e} relative to the arrays' size"

    def float32(functions, rng):
        run(functions, rng, np.float32)

    def memory(functions, rng):
        fn = functions["online_attention_forward"]
        n, block = 2048, 128
        q, k = rng.standard_normal((2, 1, 2, n))
        v = rng.standard_normal((1, 2, n))
        dense = n * n * 8
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            call(fn, q, k, v, 2**-0.5, block, name="online_attention_forward")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        if peak > dense / 2:  # streaming peaks at a few score blocks: about 8 MiB here
            raise Fail(
                f"online_attention_forward allocated {peak / 2**20:.1f} MiB at N={n}, "
                f"block={block}: an N x N float64 array is {dense / 2**20:.0f} MiB, a "
                f"block of scores {n * block * 8 / 2**20:.0f} MiB; stream the keys block by block"
            )

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
        expected_error="should be around 1e-15",
    ),
)
