"""Steps 3-5 alone, forward + backward: minattn's streaming kernels against PyTorch.

In one process, alternating (so a shared machine's drift hits every row alike):
``minattn.kernels.attention_forward/backward``, ``F.scaled_dot_product_attention``
on (B, 1, N, channels) tensors (its fused flash kernel runs when key_channels
equals the value channels, its dense "math" kernel otherwise), the article's
bmm-softmax-bmm, and a square NumPy matmul with the same FLOPs.

    python benchmarks/attention_only.py --key-channels 8 --dtype float32 --repeats 5
    python benchmarks/attention_only.py --key-channels 64 --one-core

``--one-core`` runs every row on the calling thread alone (Numba, PyTorch and OpenBLAS
set to one thread) and times it by that thread's CPU time (``time.thread_time``):
the cost per core, which other processes on a shared machine disturb far less than
the wall time of two threads.

FLOPs per forward + backward: B (8 N^2 Ck + 6 N^2 C). Prints medians, GFLOP/s, each
row's share of the matmul's rate and the time ratios to SDPA and the article's code.
"""

import argparse
import os
import statistics
import sys
import time

if "--one-core" in sys.argv:  # before NumPy loads OpenBLAS: its matmul on this thread only
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from minattn import kernels  # noqa: E402


def isa_line():
    """The instruction sets each party compiled for or picked, and the load average."""
    from minattn.blas import openblas_core

    env = ("NUMBA_CPU_NAME", "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    return (
        f"OpenBLAS core (NumPy's): {openblas_core()}; torch CPU capability: "
        f"{torch.backends.cpu.get_cpu_capability()}; "
        + ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in env)
        + f"; load average {os.getloadavg()[0]:.2f}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key-channels", type=int, default=8)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--pixels", type=int, default=8192, help="N")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--one-core", action="store_true", help="one thread, timed by its CPU time")
    args = p.parse_args()
    clock = time.perf_counter
    if args.one_core:
        numba.set_num_threads(1)
        torch.set_num_threads(1)
        clock = time.thread_time
    B, Ck, C, N = args.batch, args.key_channels, args.channels, args.pixels
    dt = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, B, Ck, N)).astype(dt)
    v, do = rng.standard_normal((2, B, C, N)).astype(dt)
    scale = Ck**-0.5
    flops = B * (8 * N * N * Ck + 6 * N * N * C)
    n = round((flops / 2) ** (1 / 3))
    a = rng.standard_normal((n, n)).astype(dt)
    c = np.empty_like(a)

    def heads(x):  # (B, ch, N) -> (B, 1, N, ch), what SDPA takes
        return torch.from_numpy(x.transpose(0, 2, 1).copy()).unsqueeze(1)

    tq, tk, tv = (heads(x).requires_grad_() for x in (q, k, v))
    tdo = heads(do)
    aq = torch.from_numpy(q.transpose(0, 2, 1).copy()).requires_grad_()
    ak, av = (torch.from_numpy(x.copy()).requires_grad_() for x in (k, v))
    ado = torch.from_numpy(do.copy())

    def minattn():
        out, lse = kernels.attention_forward(q, k, v, scale)
        kernels.attention_backward(do, q, k, v, out, lse, scale)

    def sdpa():
        for t in (tq, tk, tv):
            t.grad = None
        F.scaled_dot_product_attention(tq, tk, tv, scale=scale).backward(tdo)

    def article():
        for t in (aq, ak, av):
            t.grad = None
        attention = torch.softmax(scale * torch.bmm(aq, ak), dim=-1)
        torch.bmm(av, attention.permute(0, 2, 1)).backward(ado)

    def matmul():
        np.matmul(a, a, out=c)

    rows = dict(minattn=minattn, sdpa=sdpa, article=article, matmul=matmul)
    for f in rows.values():
        f()
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, f in rows.items():
            time.sleep(0.1)  # let the previous row's idle threads go to sleep
            t0 = clock()
            f()
            times[name].append(clock() - t0)
    med = statistics.median
    print(
        f"steps 3-5, forward + backward: B={B} Ck={Ck} C={C} N={N} {dt.name}, "
        f"{flops / 1e9:.1f} GFLOP; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"kernels' schedule: {kernels.SCHEDULE}; medians of {args.repeats}"
        + ("; one core, thread CPU time" if args.one_core else "")
    )
    print("  " + isa_line())
    for name in rows:
        t = times[name]
        share = med([m / x for m, x in zip(times["matmul"], t, strict=True)])
        ratios = "".join(
            f"  t/{o} {med([x / y for x, y in zip(t, times[o], strict=True)]):.3f}"
            for o in ("sdpa", "article")
            if o != name
        )
        print(
            f"  {name:8s} {med(t):7.3f} s  {flops / med(t) / 1e9:6.1f} GFLOP/s  "
            f"matmul share {100 * share:4.0f}%{ratios}"
        )


if __name__ == "__main__":
    main()
