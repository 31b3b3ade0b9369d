"""``minattn bench``: BAM forward + backward per backend, against NumPy's matmul and PyTorch.

Each measurement runs in a fresh subprocess (a *worker*), so its peak memory is
its own: the worker builds the module and the input, warms up on a tiny input
(JIT cache, thread pools), records its resident memory as the baseline, then
runs forward + backward once untimed and ``repeats`` times timed. Peak memory
is the high-water mark of resident memory (VmHWM) over that baseline, which
also sees allocations made inside Numba kernels and PyTorch, unlike tracemalloc.

The package never imports torch, so the PyTorch rows come from a worker script
that lives in the repository, ``benchmarks/torch_worker.py``: the article's module,
and the same module with steps 3-5 done by ``F.scaled_dot_product_attention``
(whose fused flash kernel runs when key_channels = in_dim). ``minattn bench`` runs
it when started from a checkout (the script is found under the current
directory), ``python benchmarks/bench_attention.py`` always; otherwise the table
has a note saying where the PyTorch rows come from.

FLOP count (stated in the table header), per forward + backward: attention
B (8 N^2 Ck + 6 N^2 C) (forward: scores 2 N^2 Ck, weighted sum 2 N^2 C; backward:
scores again 2 N^2 Ck, dP and dV 4 N^2 C, dQ and dK 4 N^2 Ck), plus the three 1x1
convolutions 6 B N C (2 Ck + C). Exp and softmax are not counted. The reference
matmul is a square (n, n) @ (n, n) with the same FLOP count (2 n^3), NumPy's
BLAS, same dtype, measured in the same run.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..backend import FAST_BACKENDS

# (B, C, H, W, ds, key_channels): the teaching size, a medium map, STANet's workload
# (N = 8192) at the article's key_channels = C // 8 and at key_channels = C (where
# PyTorch's fused flash kernel can run), the article's default ds = 8 on a wide map,
# and a batch of large images.
CONFIGS = [(1, 32, 32, 32, 1, 4), (1, 64, 64, 64, 1, 8), (2, 64, 64, 128, 1, 8)]
CONFIGS += [(2, 64, 64, 128, 1, 64), (4, 256, 64, 64, 8, 32), (8, 64, 256, 256, 8, 8)]
QUICK_CONFIGS = CONFIGS[:2]
# the article's module, and the same with steps 3-5 by F.scaled_dot_product_attention
TORCH_KINDS = ("torch", "sdpa")
# where ``minattn bench`` looks for the PyTorch worker: a checkout, seen from its root
TORCH_WORKER = Path("benchmarks") / "torch_worker.py"


# ---------------------------------------------------------------- measuring, inside a worker


def _status_kib(field):
    """A field of /proc/self/status in KiB (VmRSS: resident now; VmHWM: peak since reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(step, warmup, repeats):
    """Time ``step()`` and its peak memory. -> dict(times, peak_mib, first_call_s).

    warmup(): the same computation on a tiny input, run first (its duration is the
    first-call latency); then the baseline RSS; then step() once untimed, then
    ``repeats`` timed calls. peak_mib: the peak RSS over the baseline;
    peak_exact: False where the kernel refused to reset the peak (then it is an upper bound).
    """
    t0 = time.perf_counter()
    warmup()
    first_call = time.perf_counter() - t0
    base = _status_kib("VmRSS")
    exact = _reset_peak()  # if not, VmHWM may still hold an earlier peak: an upper bound
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = (_status_kib("VmHWM") - base) / 1024
    return dict(times=times, peak_mib=peak, peak_exact=exact, first_call_s=first_call)


def _bam_step(backend, cfg, dtype):
    """-> step(): one BAM forward + backward on a (B, C, H, W) input of the given dtype."""
    import minattn

    B, C, H, W, ds, ck = cfg
    rng = np.random.default_rng(0)
    bam = minattn.BAM(C, ds, key_channels=ck, backend=backend, dtype=dtype, seed=0)
    x = rng.standard_normal((B, C, H, W)).astype(dtype)
    dy = rng.standard_normal((B, C, H, W)).astype(dtype)

    def step():
        bam.forward(x)
        bam.backward(dy)

    return step


def flops(cfg):
    """FLOPs of one BAM forward + backward (see the module docstring)."""
    B, C, H, W, ds, Ck = cfg
    N = (H // ds) * (W // ds)
    return B * (8 * N * N * Ck + 6 * N * N * C) + 6 * B * N * C * (2 * Ck + C)


def matmul_size(cfg):
    """n such that an (n, n) @ (n, n) matmul does as many FLOPs (2 n^3) as BAM on cfg."""
    return max(16, round((flops(cfg) / 2) ** (1 / 3)))


def _matmul_step(cfg, dtype):
    """-> step(): the square matmul of ``matmul_size(cfg)``, NumPy's BLAS."""
    n = matmul_size(cfg)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype=dtype)
    return lambda: np.matmul(a, b, out=out)


def worker(kind, cfg, dtype, repeats):
    """Run one measurement in this process. kind: a backend name or "matmul". -> dict."""
    small = (1, cfg[1], 2 * cfg[4], 2 * cfg[4], cfg[4], cfg[5])  # tiny input, same channels, ds
    if kind == "matmul":
        return measure(_matmul_step(cfg, dtype), _matmul_step(small, dtype), repeats)
    return measure(_bam_step(kind, cfg, dtype), _bam_step(kind, small, dtype), repeats)


# ---------------------------------------------------------------- the driver


def _run_worker(command, timeout):
    """Run a worker command; -> its result dict, or dict(error=...)."""
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout} s")
    if run.returncode != 0:
        lines = (run.stderr.strip() or run.stdout.strip() or "no output").splitlines()
        return dict(error=lines[-1])
    return json.loads(run.stdout.strip().splitlines()[-1])


def _worker_command(kind, cfg, dtype, repeats, torch_worker):
    spec = ["--config", ",".join(map(str, cfg)), "--dtype", dtype, "--repeats", str(repeats)]
    if kind in TORCH_KINDS:
        kind = "article" if kind == "torch" else kind
        return [sys.executable, str(torch_worker), "--kind", kind, *spec]
    return [sys.executable, "-m", "minattn.apps.bench", "--worker", kind, *spec]


def _torch_status(torch_worker):
    """-> None if the PyTorch rows can run, else why not and how to get them."""
    import importlib.util

    if torch_worker is None or not Path(torch_worker).is_file():
        return (
            f"no {TORCH_WORKER} under the current directory: the PyTorch rows come from "
            "that script in a checkout of minattn (run this command from its root, or "
            "python benchmarks/bench_attention.py)"
        )
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install -e '.[torch]')"
    return None


def _openblas_core():
    """The OpenBLAS kernel family NumPy's BLAS picked (e.g. "Haswell"), via its exported API."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_corename64_", "openblas_get_corename"):
                if hasattr(lib, name):
                    getattr(lib, name).restype = ctypes.c_char_p
                    return getattr(lib, name)().decode()
    except OSError:
        pass
    return "unknown"


def header(torch_threads):
    """Lines describing the machine and every setting that changes the timings."""
    import numba

    from ..kernels import SCHEDULE

    names = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    names += ("NUMBA_NUM_THREADS", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
    env = {k: os.environ.get(k, "unset") for k in names}
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = models[0] if models else cpu
    return [
        f"minattn bench: BAM forward + backward, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"CPU: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}",
        f"numpy {np.__version__} (OpenBLAS core: {_openblas_core()}), numba {numba.__version__}"
        f" ({numba.config.NUMBA_NUM_THREADS} threads, kernels' schedule: {SCHEDULE})",
        "environment: " + ", ".join(f"{k}={v}" for k, v in env.items()),
        f"torch threads: {torch_threads}",
    ]


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(rows):
    """rows: list of dicts -> aligned text table."""
    cols = [
        ("config (B,C,H,W,ds)", "config", "s"),
        ("Ck", "Ck", "d"),
        ("N", "N", "d"),
        ("dtype", "dtype", "s"),
        ("row", "backend", "s"),
        ("median ms", "ms", ".1f"),
        ("peak MiB", "mib", ".1f"),
        ("t/torch", "t_torch", ".3f"),
        ("t/sdpa", "t_sdpa", ".3f"),
        ("t/numpy", "t_numpy", ".3f"),
        ("mem/torch", "m_torch", ".3f"),
        ("GFLOP/s", "gflops", ".1f"),
        ("% matmul", "share", ".0f"),
    ]
    cells = [[title for title, _, _ in cols]]
    for row in rows:
        cells.append([_fmt(row.get(key), spec) for _, key, spec in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _progress(done, total, label):
    bar = "#" * (20 * done // total)
    end = "\r" if sys.stderr.isatty() and done < total else "\n"
    print(f"[{bar:<20}] {done}/{total} {label:<50}", end=end, file=sys.stderr, flush=True)


def run(configs, dtypes, backends, repeats, timeout, torch_worker=None):
    """Measure everything; -> (rows for the table, notes, torch thread count)."""
    skip = _torch_status(torch_worker)
    kinds = [*backends, "matmul"] + ([] if skip else list(TORCH_KINDS))
    jobs = [(cfg, dt, kind) for cfg in configs for dt in dtypes for kind in kinds]
    results, notes, torch_threads = {}, [], "-"
    if skip:
        notes.append(f"PyTorch rows skipped: {skip}")
    for done, (cfg, dt, kind) in enumerate(jobs):
        _progress(done, len(jobs), f"{cfg} {dt} {kind}")
        command = _worker_command(kind, cfg, dt, repeats, torch_worker)
        results[cfg, dt, kind] = r = _run_worker(command, timeout)
        if "error" in r:
            notes.append(f"{cfg} {dt} {kind}: failed: {r['error']}")
        torch_threads = r.get("threads", torch_threads)
        if kind == "numba" and "first_call_s" in r:
            notes.append(
                f"{cfg} {dt} numba: first call in a fresh process (tiny input, warm cache) "
                f"{r['first_call_s']:.2f} s"
            )
    _progress(len(jobs), len(jobs), "done")

    rows = []
    for cfg in configs:
        B, C, H, W, ds, ck = cfg
        N = (H // ds) * (W // ds)
        for dt in dtypes:
            ok = {
                k: r for (c, d, k), r in results.items() if (c, d) == (cfg, dt) and "error" not in r
            }
            med = {k: statistics.median(r["times"]) for k, r in ok.items()}
            mem = {k: r["peak_mib"] for k, r in ok.items()}
            mm = 2 * matmul_size(cfg) ** 3 / med["matmul"] / 1e9 if "matmul" in med else None
            for kind in [*backends, *TORCH_KINDS, "matmul"]:
                if kind not in med:
                    continue
                work = 2 * matmul_size(cfg) ** 3 if kind == "matmul" else flops(cfg)
                gf = work / med[kind] / 1e9
                name = {"matmul": f"matmul n={matmul_size(cfg)}", "torch": "torch article"}.get(
                    kind, kind
                )
                if kind == "sdpa":
                    name = f"torch sdpa ({ok[kind].get('sdpa_kernel', '?')})"
                row = dict(config=",".join(map(str, cfg[:5])), Ck=ck, N=N, dtype=dt, backend=name)
                row.update(
                    ms=1e3 * med[kind], gflops=gf, share=None if mm is None else 100 * gf / mm
                )
                if kind != "matmul":
                    row["mib"] = mem[kind]
                    for ref in ("torch", "sdpa", "numpy"):
                        if ref in med and kind != ref:
                            row["t_" + ref] = med[kind] / med[ref]
                    if "torch" in mem and kind != "torch":
                        row["m_torch"] = mem[kind] / max(mem["torch"], 1e-3)
                rows.append(row)
    return rows, notes, torch_threads


def _config(text):
    """ "B,C,H,W,ds" or "B,C,H,W,ds,key_channels" -> a 6-tuple (key_channels C // 8 if absent)."""
    cfg = tuple(int(v) for v in text.split(","))
    if len(cfg) == 5:
        cfg = (*cfg, max(1, cfg[1] // 8))
    if len(cfg) != 6:
        raise ValueError(f"--configs: each entry needs B,C,H,W,ds[,key_channels], got {text!r}")
    return cfg


def build_parser():
    p = argparse.ArgumentParser(
        prog="minattn bench",
        description="Time and peak memory of BAM forward + backward per backend, vs PyTorch.",
    )
    p.add_argument("--quick", action="store_true", help="two small configs, float32, 3 repeats")
    p.add_argument(
        "--configs",
        help='semicolon-separated B,C,H,W,ds[,key_channels], e.g. "2,64,64,128,1;2,64,64,128,1,64"'
        " (default: all 6; key_channels defaults to C // 8)",
    )
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    p.add_argument(
        "--backends", default=",".join(FAST_BACKENDS), help="comma-separated minattn backends"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per worker")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p


def _plan(args, parser):
    """(configs, dtypes, backends, repeats) from the parsed command line."""
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    if args.configs:
        try:
            configs = [_config(c) for c in args.configs.split(";")]
        except ValueError as e:
            parser.error(str(e))
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    if args.quick and args.dtype == "both":
        dtypes = ["float32"]
    repeats = 3 if args.quick else args.repeats
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    return configs, dtypes, backends, repeats


def report(rows, notes, torch_threads, repeats):
    """The printed report: the header, how to read the table, the table, the notes."""
    lines = header(torch_threads)
    lines += [
        f"median of {repeats} runs; peak MiB = peak RSS over the worker's baseline, "
        "each measurement in its own process",
        "FLOPs: B (8 N^2 Ck + 6 N^2 C) attention + 6 B N C (2 Ck + C) 1x1 convs, "
        "forward + backward",
        "% matmul: share of the GFLOP/s of a square NumPy matmul with the same FLOPs, same run; "
        "torch article = the article's module, torch sdpa = steps 3-5 by "
        "F.scaled_dot_product_attention (flash: its fused kernel ran)",
        "",
        table(rows),
    ]
    return "\n".join(lines + [f"note: {note}" for note in notes])


def main(argv=None, torch_worker=None):
    """``minattn bench [--quick] [--configs ...] [--dtype ...] [--repeats R]``; -> exit code.

    torch_worker: path of ``benchmarks/torch_worker.py``; None looks for it under the
    current directory (a checkout's root).
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `minattn bench -- --quick`
    if args.worker:
        print(json.dumps(worker(args.worker, _config(args.config), args.dtype, args.repeats)))
        return 0
    configs, dtypes, backends, repeats = _plan(args, parser)
    if torch_worker is None and TORCH_WORKER.is_file():
        torch_worker = TORCH_WORKER.resolve()
    rows, notes, torch_threads = run(configs, dtypes, backends, repeats, args.timeout, torch_worker)
    print(report(rows, notes, torch_threads, repeats))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(rows=rows, notes=notes), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
