"""Each phase of the streaming attention on one core against the same core's matmul: a roofline.

The phases are the loops of ``minattn.kernels.flash`` run on their own over a whole
(N x N) problem, tile by tile, with the kernels' tile sizes, on one thread: the products
as the kernels do them (BLAS through ``np.dot``, or ``tiles._matmul_nt_acc``), next to
the other way of doing each (``tiles._matmul_acc`` instead of BLAS, BLAS instead of
``_matmul_nt_acc``), and the element-wise passes. Times are the thread's CPU time
(``time.thread_time``, best of ``--repeats``), so other processes on a shared machine
disturb them less than wall time; the yardstick is a 512 x 512 NumPy-style matmul
through the same BLAS call, timed the same way, in the same run.

    python benchmarks/phases.py --key-channels 64 --dtype float32
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= OPENBLAS_CORETYPE=Haswell python benchmarks/phases.py

Each product does 2 * tile queries * tile keys * channels FLOPs per tile; "ns/score" is
the time per (query, key) pair, so the rows add up to the kernel's cost per score.
"""

import argparse
import os
import time

import numba
import numpy as np

from minattn import blas
from minattn.kernels import SCHEDULE, flash
from minattn.kernels.tiles import _matmul_acc, _matmul_nt_acc, blocks


@numba.njit(nogil=True)
def _run(phase, tiles, buffers, lse, delta):
    """Phase ``phase`` for every (query tile, key tile) pair of one batch item."""
    q_t, q_b, k_b, v_b, do_t, do_b = tiles
    s, t, u, acc, dq, dk, dv, dv_sum = buffers
    nqb, nkb, bk = q_t.shape[0], k_b.shape[0], k_b.shape[2]
    m = np.full(s.shape[0], -np.inf, s.dtype)
    l = np.zeros(s.shape[0], s.dtype)
    for qb in range(nqb):
        for kb in range(nkb):
            if phase == 0:  # scores (also the backward's recomputation), BLAS
                np.dot(q_t[qb], k_b[kb], s)
            elif phase == 1:  # the same product as a Numba loop
                s[:] = 0.0
                _matmul_acc(q_t[qb], k_b[kb], s, bk)
            elif phase == 2:  # online softmax: row max, exp, row sum, rescale (in place:
                flash._online_softmax(u, bk, m, l, acc)  # u stays in (0, 1] round after round)
            elif phase == 3:  # out += p v^T, Numba's dot-product loop
                _matmul_nt_acc(t, v_b[kb], acc, bk)
            elif phase == 4:  # the same product by BLAS, into a temporary
                np.dot(t, v_b[kb].T, acc)
            elif phase == 5:  # dp = dout^T v, BLAS
                np.dot(do_t[qb], v_b[kb], s)
            elif phase == 6:  # the same as a Numba loop
                s[:] = 0.0
                _matmul_acc(do_t[qb], v_b[kb], s, bk)
            elif phase == 7:  # p = exp(score - lse), ds = p (dp - delta), in place (p stays
                flash._tile_gradients(u, s, lse[qb], delta[qb], bk)  # in (0, 1] as lse >= 1)
            elif phase == 8:  # dq += ds k^T, Numba's dot-product loop
                _matmul_nt_acc(t, k_b[kb], dq, bk)
            elif phase == 9:  # dv += dout p: BLAS, then an add
                np.dot(do_b[qb], t, dv)
                flash._add(dv_sum, dv)
            elif phase == 10:  # the same as a Numba loop
                _matmul_acc(do_b[qb], t, dv_sum, bk)
            elif phase == 11:  # dk += (scale q) ds: BLAS, then an add
                np.dot(q_b[qb], t, dk)
                flash._add(dv_sum[: dk.shape[0]], dk)


# (name, phase, how, FLOPs per score as a multiple of the channels: "ck", "c" or None)
PHASES = [
    ("scores q^T k (forward, and again in the backward)", 0, "BLAS", "ck"),
    ("  the same as a Numba loop (tiles._matmul_acc)", 1, "Numba", "ck"),
    ("online softmax: max, exp, sum, rescale", 2, "Numba", None),
    ("out += p v^T", 3, "Numba (_matmul_nt_acc)", "c"),
    ("  the same by BLAS", 4, "BLAS", "c"),
    ("dp = dout^T v", 5, "BLAS", "c"),
    ("  the same as a Numba loop", 6, "Numba", "c"),
    ("p = exp(s - lse), ds = p (dp - delta)", 7, "Numba", None),
    ("dq += ds k^T", 8, "Numba (_matmul_nt_acc)", "ck"),
    ("dv += dout p", 9, "BLAS", "c"),
    ("  the same as a Numba loop", 10, "Numba", "c"),
    ("dk += (scale q) ds", 11, "BLAS", "ck"),
]
USED = (0, 2, 3, 0, 5, 7, 8, 9, 11)  # the phases of one forward + backward, in order


@numba.njit(nogil=True)
def _matmul(a, c, reps):
    for _ in range(reps):
        np.dot(a, a, c)


def best_of(f, repeats):
    """The least thread CPU time of ``repeats`` calls of f()."""
    f()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        f()
        best = min(best, time.thread_time() - t0)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key-channels", type=int, default=64)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--pixels", type=int, default=4096, help="N")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    Ck, C, N, dt = args.key_channels, args.channels, args.pixels, np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 1, Ck, N)).astype(dt)
    v, do = rng.standard_normal((2, 1, C, N)).astype(dt)
    bq, bk = flash.tile_sizes(N)
    q_b, do_b = blocks(q * Ck**-0.5, bq)[0], blocks(do, bq)[0]
    q_t, do_t = (np.ascontiguousarray(x.transpose(0, 2, 1)) for x in (q_b, do_b))
    k_b, v_b = blocks(k, bk)[0], blocks(v, bk)[0]
    t = -np.abs(rng.standard_normal((bq, bk))).astype(dt)  # scores <= 0, probabilities
    ck, c = k_b.shape[1], v_b.shape[1]  # channels padded to the register block
    buffers = (np.zeros((bq, bk), dt), t, np.exp(t), np.zeros((bq, c), dt))
    buffers += (np.zeros((bq, ck), dt), np.zeros((ck, bk), dt), np.zeros((c, bk), dt))
    buffers += (np.zeros((max(c, ck), bk), dt),)
    tiles = (q_t, q_b, k_b, v_b, do_t, do_b)
    lse = 1 + np.abs(rng.standard_normal((q_t.shape[0], bq))).astype(dt)
    delta = rng.standard_normal((q_t.shape[0], bq)).astype(dt)
    n = 512
    a_mm, c_mm = rng.standard_normal((n, n)).astype(dt), np.empty((n, n), dt)
    with blas.one_blas_thread("scipy"):
        peak = 2 * n**3 * 10 / best_of(lambda: _matmul(a_mm, c_mm, 10), args.repeats) / 1e9
        cost = {
            phase: best_of(lambda ph=phase: _run(ph, tiles, buffers, lse, delta), args.repeats)
            / N**2
            for _, phase, _, _ in PHASES
        }
    print(
        f"phases of the streaming attention, one thread: Ck={Ck} C={C} N={N} {dt.name}, "
        f"tiles {bq} x {bk}; kernels' schedule: {SCHEDULE}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"
    )
    print(f"one-thread matmul ({n}^3, the same BLAS): {peak:.1f} GFLOP/s")
    print(f"{'phase':50s} {'how':24s} {'ns/score':>8s} {'GFLOP/s':>8s} {'% matmul':>8s}")
    for name, phase, how, per in PHASES:
        flops = {"ck": 2 * ck, "c": 2 * c, None: 0}[per]
        rate = flops / cost[phase] / 1e9 if flops else None
        cells = f"{rate:8.1f} {100 * rate / peak:8.0f}" if rate else f"{'-':>8s} {'-':>8s}"
        print(f"{name:50s} {how:24s} {1e9 * cost[phase]:8.3f} {cells}")
    total = sum(cost[ph] for ph in USED)
    flops = 8 * Ck + 6 * C
    print(
        f"sum of the phases one forward + backward runs: {1e9 * total:.2f} ns/score, "
        f"{flops / total / 1e9:.1f} GFLOP/s = {100 * flops / total / 1e9 / peak:.0f}% of the matmul"
    )


if __name__ == "__main__":
    main()
