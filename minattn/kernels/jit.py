"""How the kernels are compiled and run: Numba's options, the CPU's schedule, the threads.

Three things every kernel file needs, kept in one place:

- ``kernel``: ``numba.njit`` with the options all kernels share. Compilation is
  lazy, one dtype at a time, on the first call; the first compile in a process
  prints one line on stderr (a student should not think it hangs). The machine
  code goes to Numba's cache when there is a writable place for it; when there
  is none, the kernels compile in memory instead, and the note says so.
- ``WIDE``: whether the code is compiled for 512-bit vectors (AVX-512F), which
  also doubles the vector registers (32 instead of AVX2's 16). The register
  blocks of `minattn.kernels.tiles` are sized from it.
- ``run_threads`` / ``workers_for``: the streaming kernels run on Python threads,
  each calling a compiled, GIL-free kernel on its share of the tiles. That keeps
  the split of the work (and so the memory and the order of every sum) in plain
  sight, and it compiles in a fraction of the time ``parallel=True`` takes.
"""

import concurrent.futures
import sys

import numba
from llvmlite import binding as llvm
from numba.core import config, event, types

# Every fast-math flag except "nnan" and "ninf": reassociation lets LLVM keep several
# SIMD partial sums in a reduction, "contract" fuses a * b + c into one FMA. Without
# nnan/ninf, -inf (the running max before the first key) and NaN keep their meaning.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# The exp needs its operations in the written order (reassociation would merge the
# two halves of ln 2 again), and it has no reduction to speed up: no "reassoc".
EXP_FASTMATH = FASTMATH - {"reassoc"}

# ---------------------------------------------------------------- the CPU's schedule

# LLVM's names of x86 CPUs with AVX-512F, for NUMBA_CPU_NAME=<name> with
# NUMBA_CPU_FEATURES="" (then the name alone decides the instruction set).
AVX512_CPUS = frozenset(
    "skylake-avx512 cascadelake cooperlake cannonlake icelake-client icelake-server "
    "tigerlake rocketlake sapphirerapids emeraldrapids graniterapids graniterapids-d "
    "znver4 znver5 knl knm x86-64-v4".split()
)


def target_cpu():
    """-> (cpu name, feature string): what Numba asks LLVM to compile for.

    The host's own unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES say otherwise. Note
    that NUMBA_CPU_NAME alone keeps the *host's* features (Numba passes them
    along), so AVX2 code on an AVX-512 machine needs both:
    ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=``.
    """
    name = config.CPU_NAME or llvm.get_host_cpu_name()
    if config.CPU_FEATURES is not None:
        return name, config.CPU_FEATURES
    features = llvm.get_host_cpu_features()
    if not config.ENABLE_AVX:
        for k in features:
            if k.startswith("avx"):
                features[k] = False
    return name, features.flatten()


def _wide(name, features):
    """True if code for (name, features) may use AVX-512F."""
    flags = features.split(",")
    if "+avx512f" in flags or "-avx512f" in flags:
        return "+avx512f" in flags
    return name in AVX512_CPUS  # an empty feature string: the CPU name's own set


WIDE = _wide(*target_cpu())
SCHEDULE = "avx512" if WIDE else "avx2 (16 vector registers)"


# ---------------------------------------------------------------- compiling

_notes = {"printed": set(), "cache": None}


def kernel(fn=None, *, fastmath=FASTMATH, parallel=False):
    """``numba.njit`` with the kernels' options: GIL released, cached when possible.

    Used as ``@kernel`` or ``@kernel(fastmath=..., parallel=True)``. Compilation
    happens on the first call for each argument type (float32 and float64 apart).
    """
    if fn is None:
        return lambda f: kernel(f, fastmath=fastmath, parallel=parallel)
    options = dict(nogil=True, fastmath=set(fastmath), parallel=parallel)
    if _notes["cache"] is not False:
        try:
            compiled = numba.njit(cache=True, **options)(fn)
            _notes["cache"] = True
            return compiled
        except RuntimeError as e:  # "cannot cache function ...: no locator available"
            if "locator" not in str(e):
                raise
            _notes["cache"] = False
    return numba.njit(**options)(fn)


def _dtype_of(args):
    """The float dtype a kernel is being compiled for, from its argument types."""
    for t in args:
        t = getattr(t, "dtype", t)
        if isinstance(t, types.Float):
            return str(t)
    return "its arguments"


class _CompileNote(event.Listener):
    """Prints one line on stderr when the kernels start compiling for a new dtype."""

    def on_start(self, ev):
        dispatcher = ev.data["dispatcher"]
        if not getattr(dispatcher.py_func, "__module__", "").startswith(__package__):
            return
        dtype = _dtype_of(ev.data["args"])
        if dtype in _notes["printed"]:
            return
        _notes["printed"].add(dtype)
        if _notes["cache"]:
            where = getattr(getattr(dispatcher, "_cache", None), "_cache_path", "Numba's cache")
            tail = f"once: later runs load it from {where}"
        else:
            tail = (
                "in memory: no writable cache directory, so every new process compiles "
                "again (set NUMBA_CACHE_DIR to a writable directory to keep it)"
            )
        print(
            f"minattn: compiling the numba kernels for {dtype} (about 5 s on 2 cores), {tail}",
            file=sys.stderr,
            flush=True,
        )

    def on_end(self, ev):
        pass


if not config.DISABLE_JIT:
    event.register("numba:compile", _CompileNote())


# ---------------------------------------------------------------- threads

# Below this many multiply-adds (about 10 ms on one core) a kernel runs on one thread:
# handing work to another thread and waiting for it costs more than it saves, and
# much more when another process holds the other core.
SERIAL_WORK = 2**27

_pools = {}


def workers_for(work):
    """How many threads to use for ``work`` multiply-adds: 1 if small, else Numba's count.

    Numba's count is NUMBA_NUM_THREADS (default: the number of cores), or what
    ``numba.set_num_threads`` set for the calling thread.
    """
    return 1 if work < SERIAL_WORK else numba.get_num_threads()


def run_threads(task, workers):
    """Call ``task(w)`` for w = 0 .. workers - 1 at the same time; -> their results, in order.

    The calling thread runs task(0) itself. The tasks call compiled kernels that
    release the GIL, so they really run in parallel. Threads are kept between calls.
    """
    if workers == 1:
        return [task(0)]
    pool = _pools.get(workers)
    if pool is None:
        pool = _pools[workers] = concurrent.futures.ThreadPoolExecutor(workers - 1, "minattn")
    futures = [pool.submit(task, w) for w in range(1, workers)]
    first = task(0)
    return [first] + [f.result() for f in futures]
