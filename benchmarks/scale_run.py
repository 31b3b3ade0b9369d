"""The scale run: BAM with the numba backend at N = 131072 (a 256 x 512 map at ds = 1).

STANet's users run out of memory here: one float32 N x N matrix is 64 GiB.
The streaming kernels keep O(N * C). Not part of the test suite (about a minute).

    python benchmarks/scale_run.py [--shape 1,64,256,512,1] [--dtype float32]

Prints the forward and backward times and the peak memory over the process's
baseline (inputs and module already allocated), measured as in ``minattn bench``.
"""

import argparse
import time

import numpy as np

import minattn
from minattn.apps.bench import _reset_peak, _status_kib


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="1,64,256,512,1", help="B,C,H,W,ds")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = p.parse_args()
    B, C, H, W, ds = (int(v) for v in args.shape.split(","))
    N = (H // ds) * (W // ds)
    dtype = np.dtype(args.dtype)

    bam = minattn.BAM(C, ds, backend="numba", dtype=dtype, seed=0)
    bam(np.ones((1, C, 2 * ds, 2 * ds), dtype))  # load the compiled kernels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, C, H, W)).astype(dtype)
    dy = rng.standard_normal((B, C, H, W)).astype(dtype)
    base = _status_kib("VmRSS")
    exact = _reset_peak()

    t0 = time.perf_counter()
    y = bam.forward(x)
    t1 = time.perf_counter()
    dx = bam.backward(dy)
    t2 = time.perf_counter()
    peak = (_status_kib("VmHWM") - base) / 1024
    total = _status_kib("VmHWM") / 1024

    dense = B * N * N * dtype.itemsize / 2**30
    print(f"BAM numba, (B, C, H, W, ds) = {(B, C, H, W, ds)}, N = {N}, {dtype.name}")
    print(f"forward {t1 - t0:.1f} s, backward {t2 - t1:.1f} s, total {t2 - t0:.1f} s")
    print(f"peak RSS over baseline: {peak:.0f} MiB{'' if exact else ' (upper bound)'}")
    print(f"peak RSS of the process: {total:.0f} MiB (baseline {base / 1024:.0f} MiB)")
    print(f"one dense N x N matrix would be {dense:.0f} GiB")
    print(f"finite: y {np.isfinite(y).all()}, dx {np.isfinite(dx).all()}")


if __name__ == "__main__":
    main()
