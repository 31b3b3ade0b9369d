"""Every module of the attention family: the numba backend against the numpy backend.

Forward + backward on one input, training mode, the median of REPEATS runs after a
warm-up (which also pays the JIT or the cache load); the ratio is numpy's time over
numba's, both measured in this run.

    .venv/bin/python benchmarks/family.py [--repeats 5] [--dtype float64]
"""

import argparse
import time

import numpy as np

import minattn


def configs():
    """(label, build(backend, dtype), input shapes): sizes where attention dominates."""
    return [
        ("BAM C=64 ds=1, 1x64x64x64", lambda b, d: minattn.BAM(64, 1, backend=b, dtype=d, seed=0),
         [(1, 64, 64, 64)]),
        ("PositionAttention C=64, 1x64x48x48",
         lambda b, d: minattn.PositionAttention(64, backend=b, dtype=d, seed=0),
         [(1, 64, 48, 48)]),
        ("ChannelAttention C=256, 2x256x32x32",
         lambda b, d: minattn.ChannelAttention(256, backend=b, dtype=d, seed=0),
         [(2, 256, 32, 32)]),
        ("SqueezeExcitation C=256, 2x256x32x32",
         lambda b, d: minattn.SqueezeExcitation(256, backend=b, dtype=d, seed=0),
         [(2, 256, 32, 32)]),
        ("CovarianceAttention C=64, 1x64x48x48",
         lambda b, d: minattn.CovarianceAttention(64, backend=b, dtype=d, seed=0),
         [(1, 64, 48, 48)]),
        ("PAM C=64 sizes 1,2,4,8, pair 1x64x48x96",
         lambda b, d: minattn.PAM(64, 64, (1, 2, 4, 8), backend=b, dtype=d, seed=0),
         [(1, 64, 48, 96)]),
        ("CDSA BAM C=64, 2 x 1x64x32x32",
         lambda b, d: minattn.CDSA(64, 1, "BAM", backend=b, dtype=d, seed=0),
         [(1, 64, 32, 32)] * 2),
        ("CDSA PAM C=64, 2 x 1x64x48x48",
         lambda b, d: minattn.CDSA(64, 1, "PAM", backend=b, dtype=d, seed=0),
         [(1, 64, 48, 48)] * 2),
    ]  # fmt: skip


def measure(build, shapes, backend, dtype, repeats):
    module = build(backend, dtype)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    dys = [rng.standard_normal(s).astype(dtype) for s in shapes]
    module.forward(*xs)
    module.backward(*dys)  # warm-up: JIT or cache load, first-touch of memory
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        module.forward(*xs)
        module.backward(*dys)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    args = p.parse_args(argv)
    dtype = np.dtype(args.dtype)
    print(f"forward + backward, {dtype.name}, median of {args.repeats}, training mode")
    print(f"| {'module and input':44s} | {'numpy (s)':>9s} | {'numba (s)':>9s} | numpy / numba |")
    print(f"| {'-' * 44} | {'-' * 8}: | {'-' * 8}: | ------------: |")
    for label, build, shapes in configs():
        t_np = measure(build, shapes, "numpy", dtype, args.repeats)
        t_nb = measure(build, shapes, "numba", dtype, args.repeats)
        print(f"| {label:44s} | {t_np:9.3f} | {t_nb:9.3f} | {t_np / t_nb:13.1f} |", flush=True)


if __name__ == "__main__":
    main()
