"""BAM forward + backward: minattn's backends against every PyTorch setting of the article's module.

In one process, alternating row by row (a shared machine's drift hits every row alike):
minattn's ``BAM`` on the given backends, and the article's module in PyTorch four ways:
as written (bmm, softmax, bmm), with ``F.scaled_dot_product_attention`` for steps 3-5
(``benchmarks/torch_worker.py``'s ``SDPABAM``), and each of those under ``torch.compile``
(compiled once before timing; compile time is not counted; the SDPA module only when
key_channels = C, see ``torch_steps``). ``t/best torch`` divides by the fastest PyTorch
row of each sample.

    python benchmarks/bam_vs_torch.py --config 2,64,64,128,1 --dtype float32 --repeats 5
    python benchmarks/bam_vs_torch.py --config 1,32,32,32,1 --backends numpy,numba --calls 50

A config is B,C,H,W,ds[,key_channels] (key_channels C // 8 if absent). ``--calls`` runs
that many forward + backward passes per timed sample (for the teaching size, where one
pass takes milliseconds). ``--no-compile`` leaves out the compiled rows.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_worker import bam_step  # noqa: E402

from minattn.apps.bench import _bam_step, _config, header  # noqa: E402


def torch_steps(cfg, dtype, compiled):
    """-> {row name: step()} for the article's module and its SDPA version, eager and compiled.

    The SDPA module is compiled only when key_channels = C: with unequal query and value
    head sizes, torch 2.13's compiled CPU code corrupts the heap (the process dies with
    "free(): invalid pointer" or a segmentation fault, with or without minattn loaded).
    """
    steps = {}
    for kind, name in (("article", "torch article"), ("sdpa", "torch sdpa")):
        steps[name] = bam_step(kind, cfg, getattr(torch, dtype))
        if compiled and (kind == "article" or cfg[5] == cfg[1]):
            steps[name + " compiled"] = bam_step(kind, cfg, getattr(torch, dtype), compiled=True)
    return steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="2,64,64,128,1")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--backends", default="numba")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=1, help="passes per timed sample")
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    cfg = _config(args.config)
    rows = {b: _bam_step(b, cfg, args.dtype) for b in args.backends.split(",")}
    rows.update(torch_steps(cfg, args.dtype, not args.no_compile))
    for step in rows.values():  # warm-up: compilation, caches, thread pools
        step()
        step()
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, step in rows.items():
            time.sleep(0.1)  # let the previous row's idle threads go to sleep
            t0 = time.perf_counter()
            for _ in range(args.calls):
                step()
            times[name].append((time.perf_counter() - t0) / args.calls)
    print("\n".join(header(torch.get_num_threads())[1:]))  # not the "minattn bench" title
    capability = torch.backends.cpu.get_cpu_capability()
    env = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    print(
        f"torch CPU capability: {capability}; "
        + ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in env)
    )
    print(
        f"BAM forward + backward, config {cfg} (B,C,H,W,ds,key_channels), {args.dtype}, "
        f"medians of {args.repeats} samples of {args.calls} passes; load average at the end "
        f"{os.getloadavg()[0]:.2f}"
    )
    med = statistics.median
    torch_rows = [n for n in rows if n.startswith("torch")]
    for name, t in times.items():
        # per sample, the fastest PyTorch row of that sample
        best = [min(times[n][i] for n in torch_rows) for i in range(len(t))]
        ratio = med([a / b for a, b in zip(t, best, strict=True)])
        print(f"  {name:22s} {1e3 * med(t):9.2f} ms  t/best torch {ratio:.3f}")


if __name__ == "__main__":
    main()
