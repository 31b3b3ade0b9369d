"""How Numba's threads and the BLAS's threads get along when compiled code multiplies tiles.

The streaming attention's threads each call ``np.dot`` on tiles inside compiled code,
which Numba hands to SciPy's BLAS (OpenBLAS, with a thread pool of its own). Three ways
to run the same work, tile products of the kernels' shape, in one process, alternating:

- "2 threads, BLAS threaded": two kernel threads, the BLAS left at its own thread count;
- "2 threads, BLAS on 1": the same with the BLAS set to one thread (what the kernels do,
  ``minattn.blas.one_blas_thread``);
- "1 thread, BLAS threaded": one caller, every tile product split by the BLAS's own pool.

    python benchmarks/blas_threads.py --dtype float32
"""

import argparse
import concurrent.futures
import os
import statistics
import time

import numba
import numpy as np

from minattn import blas
from minattn.kernels.flash import KEY_BLOCK, QUERY_BLOCK


@numba.njit(nogil=True)
def _products(a, b, out, reps):
    for _ in range(reps):
        np.dot(a, b, out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    dt, c = np.dtype(args.dtype), args.channels
    rng = np.random.default_rng(0)
    work = [  # one tile product per thread: (query tile x channels) @ (channels x key tile)
        (rng.standard_normal((QUERY_BLOCK, c)).astype(dt), rng.standard_normal((c, KEY_BLOCK)))
        for _ in range(2)
    ]
    work = [(a, b.astype(dt), np.empty((QUERY_BLOCK, KEY_BLOCK), dt)) for a, b in work]
    reps = 400
    flops = 2 * QUERY_BLOCK * KEY_BLOCK * c * reps * 2  # both shares
    pool = concurrent.futures.ThreadPoolExecutor(1)
    get, set_ = blas.blas_thread_controls("scipy")
    threads = get()

    def two_threads():
        other = pool.submit(_products, *work[1], reps)
        _products(*work[0], reps)
        other.result()

    def two_threads_blas_one():
        with blas.one_blas_thread("scipy"):
            two_threads()

    def one_thread():
        _products(*work[0], 2 * reps)

    rows = {
        f"2 threads, BLAS threaded ({threads} threads)": two_threads,
        "2 threads, BLAS on 1 (the kernels' way)": two_threads_blas_one,
        f"1 thread, BLAS threaded ({threads} threads)": one_thread,
    }
    _products(*work[0], 1)
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, f in rows.items():
            time.sleep(0.1)
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    print(
        f"tile products {QUERY_BLOCK} x {c} @ {c} x {KEY_BLOCK}, {dt.name}, {reps} per share, "
        f"numba {numba.__version__}, load average {os.getloadavg()[0]:.2f}, "
        f"medians of {args.repeats}"
    )
    for name, t in times.items():
        print(f"  {name:42s} {flops / statistics.median(t) / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
